"""The Keras adapter's TensorFlow-free parts: metadata schema version, file sniffing, the config walk."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import squeezefmt
from squeezefmt import errors
from squeezefmt.keras.archive import METADATA_VERSION, keras_metadata, layer_entries, weight_role
from squeezefmt.keras.formats import read_archive

from conftest import EXAMPLES


def container(keras_meta):
    return squeezefmt.save({"d/k:0": np.ones(3, np.float32)}, _extra_metadata={"keras": keras_meta})


def test_metadata_schema_version():
    layers = [{"name": "d", "class_name": "Dense", "weights": [{"name": "k:0", "tensor": "d/k:0"}]}]
    with squeezefmt.open(container({"kind": "weights", "layers": layers})) as f:
        assert keras_metadata(f)["layers"] == layers  # no "version": schema 1
    with squeezefmt.open(container({"kind": "weights", "layers": layers, "version": METADATA_VERSION})) as f:
        keras_metadata(f)
    with squeezefmt.open(container({"kind": "weights", "layers": layers, "version": METADATA_VERSION + 1})) as f:
        with pytest.raises(errors.KerasFormatError, match="schema version"):
            keras_metadata(f)
    with squeezefmt.open(squeezefmt.save({"x": np.ones(2)})) as f:
        with pytest.raises(errors.KerasFormatError, match="no 'keras' metadata"):
            keras_metadata(f)


def test_packed_containers_keep_the_version_1_bytes(tmp_path):
    """Schema 1 writes no version field, so containers stay byte-identical with squeezefmt 0.1."""
    import squeezefmt.keras as sk

    data = sk.pack(f"{EXAMPLES}/mnist_cnn.h5")
    with squeezefmt.open(data) as f:
        assert "version" not in f.metadata()["keras"]


def test_read_archive_sniffs_the_file_kind(tmp_path):
    archive = read_archive(f"{EXAMPLES}/mnist_cnn.h5")
    assert archive.kind == "model" and archive.layers
    z = tmp_path / "m.keras"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(errors.KerasFormatError, match=r"\.keras archive has no model.weights.h5"):
        read_archive(z)  # a zip is read as a Keras 3 .keras archive (formats/keras_v3.py)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a keras file at all")
    with pytest.raises(errors.KerasFormatError):
        read_archive(junk)
    with pytest.raises(FileNotFoundError):
        read_archive(tmp_path / "missing.h5")


def test_one_config_walk_finds_nested_layers():
    config = {"class_name": "Sequential", "config": {"name": "outer", "layers": [
        {"class_name": "Dense", "config": {"name": "a"}},
        {"class_name": "Functional", "config": {"name": "inner", "layers": [
            {"class_name": "Conv2D", "config": {"name": "b"}}]}}]}}
    found = layer_entries(json.loads(json.dumps(config)))
    assert {k: [e["class_name"] for e in v] for k, v in found.items()} == {
        "outer": ["Sequential"], "a": ["Dense"], "inner": ["Functional"], "b": ["Conv2D"]}
    assert weight_role("dense/kernel:0") == "kernel" and weight_role("bias:0") == "bias"
