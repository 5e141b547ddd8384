"""Keras 3 files in: .keras archives, .weights.h5 and legacy .h5 written by Keras 3, packed with h5py/zipfile only.

The fixtures (tests/fixtures/keras3/, made by tools/make_keras3_fixtures.py under Keras 3.15) are
read here without Keras: every stored weight must equal, bit for bit, the dataset at its recorded
Keras 3 path, and the weight order must match the order Keras itself wrote into the legacy .h5 of
the same model (Keras's ``layer.trainable_weights + layer.non_trainable_weights``).
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt.errors import KerasFormatError  # noqa: E402
from squeezefmt.keras.formats.keras_v3 import layer_paths, read_keras_zip, to_snake_case  # noqa: E402
from squeezefmt.keras.formats import read_archive as read_source  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras3")
KERAS_FILES = ["cnn.keras", "third_party.keras", "seq.keras"]
ALL_FILES = KERAS_FILES + ["third_party.weights.h5", "cnn.h5", "third_party.h5"]


def fixture(name):
    return os.path.join(FIX, name)


def weights_h5(name):
    """The Keras 3 weights file of a fixture, opened with h5py (from inside the zip for .keras)."""
    if name.endswith(".keras"):
        return h5py.File(io.BytesIO(zipfile.ZipFile(fixture(name)).read("model.weights.h5")), "r")
    return h5py.File(fixture(name), "r")


def datasets(f, prefix="layers"):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[f"{prefix}/{name}"] = obj[()]

    if prefix in f:
        f[prefix].visititems(visit)
    return out


@pytest.mark.parametrize("name", KERAS_FILES + ["third_party.weights.h5"])
def test_packed_weights_are_the_files_datasets_bit_exact(name, tmp_path):
    sk.pack(fixture(name), tmp_path / "m.sqz")
    with squeezefmt.open(tmp_path / "m.sqz") as f, weights_h5(name) as h5:
        meta = f.metadata()["keras"]
        source = datasets(h5)
        seen = set()
        for layer in meta["layers"]:
            for w in layer["weights"]:
                got, want = f.tensor(w["tensor"]), source[w["path"]]
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.tobytes() == want.tobytes(), w["tensor"]
                seen.add(w["path"])
        assert seen == set(source)  # every layer variable stored once, nothing else
        assert not any(k.startswith("optimizer") for k in f.keys())  # left out by default


@pytest.mark.parametrize("model", ["cnn", "third_party"])
def test_keras_archive_packs_like_keras3s_own_legacy_h5(model):
    """Same tensor names, same order, same bits as Keras 3's legacy .h5 (written in layer.weights order)."""
    a = read_source(fixture(f"{model}.keras"))
    b = read_source(fixture(f"{model}.h5"))
    assert list(a.arrays) == list(b.arrays)
    for k in a.arrays:
        assert a.arrays[k].dtype == b.arrays[k].dtype and a.arrays[k].tobytes() == b.arrays[k].tobytes(), k
    weighted = lambda arch: [(layer["name"], [w["name"] for w in layer["weights"]]) for arch_l in [arch.layers]
                             for layer in arch_l if layer["weights"]]
    assert weighted(a) == weighted(b)


def test_nested_model_order_puts_non_trainable_last():
    arch = read_keras_zip(fixture("third_party.keras"))
    encoder = next(layer for layer in arch.layers if layer["name"] == "encoder")
    assert [w["name"] for w in encoder["weights"]] == [
        "enc_bn/gamma", "enc_bn/beta", "enc_hidden/kernel", "enc_hidden/bias",
        "enc_bn/moving_mean", "enc_bn/moving_variance", "enc_frozen/kernel", "enc_frozen/bias"]
    bidi = next(layer for layer in arch.layers if layer["name"] == "seq_bidi")
    assert [w["path"].split("/")[2] for w in bidi["weights"]] == ["forward_layer"] * 3 + ["backward_layer"] * 3
    assert arch.layers[0]["class_name"] == "InputLayer" and arch.kind == "model"


def test_weights_only_file_has_all_layers_and_paths():
    arch = read_source(fixture("third_party.weights.h5"))
    assert arch.kind == "weights" and arch.keras_v3["match"] == "path"
    full = read_source(fixture("third_party.keras"))
    assert sorted(arch.arrays) == sorted(full.arrays)
    for k in arch.arrays:
        assert arch.arrays[k].tobytes() == full.arrays[k].tobytes()
    assert {layer["path"] for layer in arch.layers} == {layer["path"] for layer in full.layers}


def test_snake_case_and_layer_paths_follow_keras():
    assert [to_snake_case(c) for c in ("Dense", "BatchNormalization", "Conv2DTranspose", "LSTM", "GRUCell")] == [
        "dense", "batch_normalization", "conv2d_transpose", "lstm", "gru_cell"]
    assert layer_paths(["InputLayer", "Dense", "BatchNormalization", "Dense", "Dense"]) == [
        "layers/input_layer", "layers/dense", "layers/batch_normalization", "layers/dense_1", "layers/dense_2"]


def test_include_optimizer_keeps_the_optimizer_variables():
    arch = read_keras_zip(fixture("third_party.keras"), include_optimizer=True)
    assert arch.optimizer and all(w["tensor"].startswith("optimizer/vars/") for w in arch.optimizer)
    assert "compile_config" in json.loads(arch.model_config)
    assert "compile_config" not in json.loads(read_keras_zip(fixture("third_party.keras")).model_config)


@pytest.mark.parametrize("name", KERAS_FILES)
def test_unpack_to_keras_round_trips_without_keras(name, tmp_path):
    sk.pack(fixture(name), tmp_path / "m.sqz")
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.keras")
    a, b = read_keras_zip(fixture(name)), read_keras_zip(tmp_path / "back.keras")
    assert a.model_config == b.model_config and a.layers == b.layers
    assert all(a.arrays[k].tobytes() == b.arrays[k].tobytes() for k in a.arrays)
    src, out = zipfile.ZipFile(fixture(name)), zipfile.ZipFile(tmp_path / "back.keras")
    assert src.read("metadata.json") == out.read("metadata.json")
    with weights_h5(name) as h5, h5py.File(io.BytesIO(out.read("model.weights.h5")), "r") as back:
        names = lambda f: {n: dict(f[n].attrs) for n in _groups(f) if not n.startswith("optimizer")}
        assert names(h5) == names(back)  # every vars group, with its layer name, is back


def _groups(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Group) else None)
    return out


def test_unpack_to_keras_needs_a_keras_source(tmp_path):
    sk.pack(fixture("cnn.h5"), tmp_path / "m.sqz")
    with pytest.raises(KerasFormatError, match="not packed from a Keras 3 file"):
        sk.unpack(tmp_path / "m.sqz", tmp_path / "x.keras")
    assert not os.path.exists(tmp_path / "x.keras")


def test_cli_pack_keras_and_info_on_a_keras_file(tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    r = CliRunner().invoke(main, ["pack", fixture("third_party.keras"), str(tmp_path / "t.sqz"), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", fixture("third_party.keras")])
    assert r.exit_code == 1 and "Keras 3 .keras archive" in r.output and "squeezefmt pack" in r.output
    assert "Traceback" not in r.output


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return path


def test_broken_keras_archives_give_clear_errors(tmp_path):
    src = zipfile.ZipFile(fixture("cnn.keras"))
    parts = {k: src.read(k) for k in src.namelist()}
    cases = {
        "no config": ({k: v for k, v in parts.items() if k != "config.json"}, "no config.json"),
        "no weights": ({k: v for k, v in parts.items() if k != "model.weights.h5"}, "no model.weights.h5"),
        "bad json": ({**parts, "config.json": b"{nope"}, "not valid JSON"),
        "weights not hdf5": ({**parts, "model.weights.h5": b"not hdf5"}, "not an HDF5 file"),
    }
    for label, (members, message) in cases.items():
        with pytest.raises(KerasFormatError, match=message):
            sk.pack(_zip(tmp_path / f"{label}.keras", members))
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(open(fixture("cnn.keras"), "rb").read()[:5000])
    with pytest.raises(KerasFormatError):
        sk.pack(truncated)


def test_config_naming_a_missing_layer_group_is_refused(tmp_path):
    src = zipfile.ZipFile(fixture("cnn.keras"))
    parts = {k: src.read(k) for k in src.namelist()}
    config = json.loads(parts["config.json"])
    dense = next(c for c in config["config"]["layers"] if c["class_name"] == "Dense")
    dense["class_name"] = "EinsumDense"  # the file has layers/dense, the config now points at layers/einsum_dense
    parts["config.json"] = json.dumps(config).encode()
    with pytest.raises(KerasFormatError, match="einsum_dense"):
        sk.pack(_zip(tmp_path / "m.keras", parts))
