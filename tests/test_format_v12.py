"""Format 1.2 (spec/format.md section 10.6): one data CRC in the preamble, tensor names from the Keras
shorthand, header dictionary 2, the 64 KiB writer rule, corruption and hostile-header checks."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.container import layout
from squeezefmt.container.compact import derived_name_flags, shorthand_tensor_names
from squeezefmt.container.header_dict import HEADER_DICT_SHA256, header_dict_bytes

from sqzdev import REPO as ROOT
from sqzdev import VECTORS
from sqzdev.harness import verify_and_decode


def _keras(layers):
    """Keras metadata whose layer ``name`` owns weights ``name/w`` stored as tensors ``name/name/w``."""
    return {"kind": "weights", "model_config": None, "layers": [
        {"name": n, "class_name": "Dense", "weights": [{"name": f"{n}/{w}", "tensor": f"{n}/{n}/{w}"} for w in ws]}
        for n, ws in layers]}


def test_v12_vector_is_what_this_writer_writes():
    from sqzdev.vectors.v12 import valid_cases

    stem, arrays, codecs, meta, keras = next(valid_cases())
    data = squeezefmt.save(arrays, None, codecs=codecs, metadata=meta, _extra_metadata={"keras": keras})
    with open(os.path.join(VECTORS, "valid", stem + ".sqz"), "rb") as f:
        assert data.replace(squeezefmt.__version__.encode(), b"0.1.0") == f.read()  # the default writes 1.2


def test_a_1_1_reader_rejects_1_2_files_cleanly(monkeypatch):
    monkeypatch.setattr(layout, "KNOWN_FLAGS", layout.FLAG_HEADER_ZSTD | layout.FLAG_COMPACT | layout.FLAG_HEADER_DICT)
    names = [fn for fn in sorted(os.listdir(os.path.join(VECTORS, "valid"))) if fn.startswith("v12_") and fn.endswith(".sqz")]
    assert len(names) == 3
    for fn in names:
        with pytest.raises(errors.FormatError, match="unknown preamble flags"):
            squeezefmt.open(os.path.join(VECTORS, "valid", fn))


def test_header_dictionary_2_is_dictionary_1_in_the_1_2_representation():
    spec = open(os.path.join(ROOT, "spec", "header-dict-2.txt"), "rb").read()
    assert spec == header_dict_bytes(2) and hashlib.sha256(spec).hexdigest() == HEADER_DICT_SHA256[2]
    assert HEADER_DICT_SHA256[2] in open(os.path.join(ROOT, "spec", "format.md")).read()
    module_spec = importlib.util.spec_from_file_location("make_header_dict", os.path.join(ROOT, "tools", "make_header_dict.py"))
    tool = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(tool)
    assert tool.dict2_from_dict1(header_dict_bytes(1)) == spec


def test_writer_uses_1_2_up_to_64_kib_of_streams():
    limit = layout.SMALL_MAX_STREAM_BYTES
    for n, version in ((limit, (1, 2)), (limit + 1, (1, 1))):
        arrays = {"big": np.zeros(n - 100, np.uint8), "small": np.arange(25, dtype=np.float32)}
        data = squeezefmt.save(arrays, codecs={"big": Raw(), "small": Raw()})
        with squeezefmt.open(data) as f:
            assert f.format_version == version
            assert sum(f.entry(k).stored_bytes for k in f.keys()) == n
    for version in ((1, 0), (1, 1), (1, 2)):  # forcing any version round-trips
        data = squeezefmt.save({"w": np.arange(30, dtype=np.float32)}, codecs={"w": Zstd(level=3)}, format_version=version)
        with squeezefmt.open(data) as f:
            assert f.format_version == version and f.preamble.small == (version == (1, 2))
            assert f.tensor("w").tolist() == list(range(30))


def test_names_follow_the_shorthand_and_stay_explicit_otherwise():
    keras = _keras([("d", ["kernel:0", "bias:0"]), ("e", ["w:0"])])
    arrays = {"d/d/bias:0": np.ones(3, np.float32), "d/d/kernel:0": np.ones((2, 3), np.float32),
              "e/e/w:0": np.zeros(4, np.float32), "other": np.zeros(2, np.int8)}
    data = squeezefmt.save(arrays, _extra_metadata={"keras": keras})
    with squeezefmt.open(data) as f:
        assert f.format_version == (1, 2) and f.keys() == list(arrays)
        import json

        names = [t[0] for t in json.loads(f.header_json())["tensors"]]
    # bias comes before kernel in the file: only the names that are the next shorthand name are null
    assert names == ["d/d/bias:0", None, "e/e/w:0", "other"]  # e/e/w:0 is not the next one (d/d/bias:0 is)
    compact = json.loads(f.header_json())["metadata"]
    assert shorthand_tensor_names(compact) == ["d/d/kernel:0", "d/d/bias:0", "e/e/w:0"]
    assert derived_name_flags(list(arrays), compact) == [False, True, False, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(st.sampled_from(["k:0", "b:0", "g:0"]),
                                                                       unique=True, max_size=3)),
                unique_by=lambda x: x[0], max_size=3), st.randoms(use_true_random=False))
def test_derived_names_round_trip_in_any_file_order(layers, rnd):
    keras = _keras(layers)
    names = [f"{n}/{n}/{w}" for n, ws in layers for w in ws] + ["x/y"]
    rnd.shuffle(names)
    arrays = {n: np.full(i + 1, i, np.int16) for i, n in enumerate(names)}
    data = squeezefmt.save(arrays, _extra_metadata={"keras": keras}, format_version=(1, 2))
    with squeezefmt.open(data) as f:
        assert f.keys() == names
        f.verify()
        assert all(np.array_equal(f.tensor(n), a) for n, a in arrays.items())


def test_one_tensor_reads_all_streams_once(counting_file):
    arrays = {f"t{i}": np.arange(50 * (i + 1), dtype=np.int32) for i in range(4)}
    f = counting_file(squeezefmt.save(arrays))
    with squeezefmt.open(f) as sf:
        assert sf.preamble.small
        spans = [(s.offset, s.offset + s.length) for k in sf.keys() for s in sf.entry(k).streams]
        f.ranges.clear()
        sf.tensor("t2")
        assert set(spans) <= set(f.ranges)          # the data CRC covers every stream
        f.ranges.clear()
        sf.tensor("t0")
        own = [(s.offset, s.offset + s.length) for s in sf.entry("t0").streams]
        assert f.ranges == own                      # checked once per open file


@pytest.fixture(scope="module")
def container12():
    rng = np.random.default_rng(12)
    arrays = {"d/d/kernel:0": rng.normal(0, 0.05, (30, 20)).astype(np.float32),
              "d/d/bias:0": rng.normal(0, 0.05, (20,)).astype(np.float32),
              "i": rng.integers(0, 9, (300,), dtype=np.int32), "r": np.arange(1030, dtype=np.float32)}
    data = squeezefmt.save(arrays, codecs={"r": Raw(), "d/d/bias:0": Raw()},
                           _extra_metadata={"keras": _keras([("d", ["kernel:0", "bias:0"])])})
    assert struct.unpack_from("<I", data, 12)[0] & layout.FLAG_SMALL
    with squeezefmt.open(data) as f:
        assert any(s.align == 64 and s.offset > 0 for k in f.keys() for s in f.entry(k).streams)
    return arrays, data


@given(st.data())
def test_single_byte_change_is_always_detected_v12(container12, data):
    _, blob = container12
    pos = data.draw(st.integers(0, len(blob) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[pos]))
    with pytest.raises(errors.SqueezeError):
        verify_and_decode(blob[:pos] + bytes([new]) + blob[pos + 1:])


def test_every_truncation_is_detected_v12(container12):
    _, blob = container12
    for n in range(0, len(blob), 7):
        with pytest.raises(errors.SqueezeError):
            verify_and_decode(blob[:n])


def test_json_length_comes_from_the_frame_and_is_limited(container12):
    _, blob = container12
    with squeezefmt.open(blob) as f:
        assert f.preamble.json_len == len(f.header_json()) > f.header_size
        stored = f.header_size
    with pytest.raises(errors.LimitError, match="header JSON"):  # the stored header fits, its JSON does not
        squeezefmt.open(blob, limits=squeezefmt.Limits(max_header_bytes=stored))
