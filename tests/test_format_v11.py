"""Format 1.1 (spec/format.md section 10): packed layout, compact header, header dictionary, versioning,
the header-fallback regression, and the size breakdown."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.codecs.zstd_util import compress
from squeezefmt.container import layout
from squeezefmt.container.breakdown import file_breakdown, header_breakdown
from squeezefmt.container.compact import compact_keras, expand_metadata
from squeezefmt.container.header_dict import HEADER_DICT_SHA256, header_dict_bytes

from sqzdev import REPO as ROOT
from sqzdev import VECTORS
from sqzdev.harness import verify_and_decode


def _flags(data: bytes) -> int:
    return struct.unpack_from("<I", data, 12)[0]


@pytest.mark.parametrize("stem", ["v11_mixed", "v11_keras_shorthand"])
def test_v11_vectors_are_what_this_writer_writes(stem):
    from sqzdev.vectors.v11 import raw_align_rule_of_1_1, valid_cases

    arrays, codecs, meta, keras = {c[0]: c[1:] for c in valid_cases()}[stem]
    with raw_align_rule_of_1_1():  # the vectors were frozen when raw streams >= 64 bytes were aligned
        data = squeezefmt.save(arrays, None, codecs=codecs, metadata=meta, format_version=(1, 1),
                               _extra_metadata={"keras": keras} if keras else None)
    with open(os.path.join(VECTORS, "valid", stem + ".sqz"), "rb") as f:
        assert data.replace(squeezefmt.__version__.encode(), b"0.1.0") == f.read()


def test_keras_shorthand_vector_expands_to_the_1_0_records():
    from sqzdev.vectors.v11 import valid_cases

    keras = {c[0]: c[4] for c in valid_cases()}["v11_keras_shorthand"]
    with squeezefmt.open(os.path.join(VECTORS, "valid", "v11_keras_shorthand.sqz")) as f:
        assert f.metadata()["keras"] == keras
        assert json.loads(f.header_json())["metadata"]["keras"]["layers"][0] == \
            ["dense", "Dense", ["kernel:0", "bias:0"]]
        assert f.layer_names() == ["dense", "odd"]


def test_header_dictionary_is_the_frozen_spec_file():
    with open(os.path.join(ROOT, "spec", "header-dict-1.txt"), "rb") as f:
        assert f.read() == header_dict_bytes()
    assert HEADER_DICT_SHA256[1] in open(os.path.join(ROOT, "spec", "format.md")).read()


def test_a_1_0_reader_rejects_1_1_files_cleanly(monkeypatch):
    """A 1.0 reader knows flag bit 0 only: every 1.1 file fails with FormatError, never a wrong decode."""
    monkeypatch.setattr(layout, "KNOWN_FLAGS", layout.FLAG_HEADER_ZSTD)
    for fn in sorted(os.listdir(os.path.join(VECTORS, "valid"))):
        if fn.startswith("v11_") and fn.endswith(".sqz"):
            with pytest.raises(errors.FormatError, match="unknown preamble flags"):
                squeezefmt.open(os.path.join(VECTORS, "valid", fn))


def test_writer_writes_the_oldest_version_that_expresses_the_file(weights):
    big_raw = {"a": np.arange(1024, dtype=np.float32), "b": np.ones((32, 32), np.float64)}
    data = squeezefmt.save(big_raw, preset="raw")                  # every stream needs alignment (>= 4 KiB raw)
    with squeezefmt.open(data) as f:
        assert f.format_version == (1, 0) and _flags(data) & ~layout.FLAG_HEADER_ZSTD == 0
    assert squeezefmt.save({}) [:12] == squeezefmt.save({}, format_version=(1, 0))[:12]
    data = squeezefmt.save(dict(weights, big=np.zeros(1 << 17, np.uint8)), codecs={"big": Raw()})
    with squeezefmt.open(data) as f:                               # entropy-coded streams, > 64 KiB of streams
        assert f.format_version == (1, 1) and _flags(data) & layout.FLAG_COMPACT and not f.preamble.small
    data = squeezefmt.save(weights)                                # entropy-coded streams, <= 64 KiB
    with squeezefmt.open(data) as f:
        assert f.format_version == (1, 2) and _flags(data) & layout.FLAG_SMALL
    with pytest.raises(errors.SqueezeError, match="format version"):
        squeezefmt.save(weights, format_version=(2, 0))


def test_packed_layout_puts_entropy_streams_back_to_back(weights):
    arrays = dict(weights, raw_big=np.arange(1100, dtype=np.float32), raw_small=np.arange(5, dtype=np.int16),
                  raw_bn=np.arange(100, dtype=np.float32))  # raw streams under 4 KiB are not aligned either
    codecs = {"raw_big": Raw(), "raw_small": Raw(), "raw_bn": Raw()}
    data = squeezefmt.save(arrays, codecs=codecs)
    with squeezefmt.open(data) as f:
        pre = f.preamble
        cursor, padding = pre.data_start, 0
        assert pre.data_start == 40 + pre.header_len
        for name in f.keys():
            for s in f.entry(name).streams:
                assert s.offset >= cursor
                if s.offset > cursor:
                    assert s.align == 64 and s.offset % 64 == 0 and s.offset - cursor < 64
                padding += s.offset - cursor
                cursor = s.offset + s.length
            if name.startswith("raw_big"):
                assert f.entry(name).streams[0].offset % 64 == 0 and f.entry(name).streams[0].align == 64
            else:
                assert all(s.align == 1 for s in f.entry(name).streams)
        assert cursor == len(data) == f.file_size
        assert padding == file_breakdown(f)["padding"] < 128
        f.verify()
    one_oh = squeezefmt.save(arrays, codecs=codecs, format_version=(1, 0))
    assert len(data) < len(one_oh)
    assert squeezefmt.load(data).keys() == squeezefmt.load(one_oh).keys()


def test_random_access_reads_only_that_tensor_v11(weights, counting_file):
    data = squeezefmt.save(weights, format_version=(1, 1))  # 1.2 checks one CRC over all streams
    f = counting_file(data)
    with squeezefmt.open(f) as sf:
        header_end = sf.preamble.data_start
        f.ranges.clear()
        np.testing.assert_array_equal(sf.tensor("dense/kernel"), weights["dense/kernel"])
        streams = sf.entry("dense/kernel").streams
        lo, hi = streams[0].offset, streams[-1].offset + streams[-1].length
        assert all(lo <= a and b <= hi for a, b in f.ranges if b > a), f.ranges
        assert lo >= header_end


def _arrays_and_codecs():
    shapes = st.lists(st.integers(0, 9), min_size=0, max_size=3)
    dtypes = st.sampled_from(["float32", "float16", "int32", "uint8", "float64"])
    codec = st.sampled_from(["raw", "zstd", "bytegroup", None])
    return st.lists(st.tuples(shapes, dtypes, codec, st.integers(0, 2**32 - 1)), max_size=6)


@given(_arrays_and_codecs(), st.sampled_from([(1, 0), (1, 1), (1, 2), None]))
def test_round_trip_property(specs, version):
    arrays, codecs = {}, {}
    for i, (shape, dtype, codec, seed) in enumerate(specs):
        rng = np.random.default_rng(seed)
        a = (rng.normal(size=shape) * 100).astype(dtype)
        arrays[f"layer{i % 3}/t{i}"] = a
        if codec:
            codecs[f"layer{i % 3}/t{i}"] = {"raw": Raw(), "zstd": Zstd(level=3), "bytegroup": ByteGroup(level=3)}[codec]
    data = squeezefmt.save(arrays, codecs=codecs, format_version=version)
    assert data == squeezefmt.save(arrays, codecs=codecs, format_version=version)      # deterministic
    with squeezefmt.open(data) as f:
        f.verify()
        for name, a in arrays.items():
            assert f.tensor(name).tobytes() == a.tobytes() and f.tensor(name).shape == a.shape


@given(st.lists(st.tuples(st.text(min_size=1, max_size=6), st.lists(st.text(max_size=5), max_size=3),
                          st.booleans()), max_size=5))
def test_keras_shorthand_round_trips(layers):
    records = []
    for name, weights, follow in layers:
        ws = [{"name": f"{name}/{w}" if follow else w, "tensor": f"{name}/{name}/{w}" if follow else f"x/{w}"}
              for w in weights]
        records.append({"name": name, "class_name": "Dense", "weights": ws})
    meta = {"keras": {"kind": "model", "layers": records}}
    packed = {"keras": compact_keras(meta["keras"])}
    assert expand_metadata(json.loads(json.dumps(packed)), 1 << 20) == meta


def test_shorthand_expansion_is_bounded():
    meta = {"keras": {"layers": [["L" * 4000, None, ["a"] * 100]]}}
    with pytest.raises(errors.LimitError):
        expand_metadata(meta, 10_000)


# -- the header-fallback regression and the header size goal ----------------------------------------

def test_weights_only_dense_bn_model_keeps_a_compressed_header(tmp_path):
    """A 64-tensor weights-only file: 1.0 writers stored this header uncompressed (23,080 B)."""
    pytest.importorskip("h5py")
    from sqzdev import dense_bn_h5
    import squeezefmt.keras as sk

    path = tmp_path / "dense_bn.h5"          # the name is part of the header (metadata.source)
    dense_bn_h5.write(path, 12, 16, 0)
    for version in (None, (1, 0)):
        data = sk.pack(path) if version is None else _pack_v10(path)
        with squeezefmt.open(data) as f:
            json_text = f.header_json()
            if "pad" in json.loads(json_text):
                obj = json.loads(json_text)
                del obj["pad"]
                json_text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            assert _flags(data) & layout.FLAG_HEADER_ZSTD
            assert f.header_size <= 1.2 * len(compress(json_text, 19)), (version, f.header_size)
            assert len(f.keys()) == 64
            f.verify()


def _pack_v10(path):
    from squeezefmt.keras.formats import read_archive

    archive = read_archive(path)
    extra = {"keras": archive.metadata(), "packing": {"preset": "lossless", "include_optimizer": False},
             "source": {"sha256": archive.source_sha256, "file": os.path.basename(path)}}
    return squeezefmt.save(archive.arrays, contexts=archive.contexts(), _extra_metadata=extra,
                           format_version=(1, 0))


@pytest.mark.parametrize("model", ["mnist_cnn.h5", "mnist_cnn_weights.h5", "fashion_cnn.h5"])
@pytest.mark.parametrize("preset", ["lossless", "fast", "deep-compression", "compact"])
def test_default_headers_are_within_1_2x_of_zstd_json(model, preset):
    pytest.importorskip("h5py")
    import squeezefmt.keras as sk

    data = sk.pack(os.path.join(ROOT, "examples", model), preset=preset)
    with squeezefmt.open(data) as f:
        assert f.header_size <= 1.2 * len(compress(f.header_json(), 19))
        parts = header_breakdown(f)
        assert parts["stored header"] == f.header_size and parts["json"] == len(f.header_json())
        layout_ = file_breakdown(f)
        assert sum(layout_[k] for k in ("preamble", "header", "padding", "streams")) == len(data)


# -- corruption: every byte of a 1.1 file is covered by a CRC or must be zero padding ---------------

@pytest.fixture(scope="module")
def container11():
    rng = np.random.default_rng(5)
    arrays = {"w": rng.normal(0, 0.05, (40, 30)).astype(np.float32), "b": rng.normal(0, 0.05, (30,)).astype(np.float32),
              "i": rng.integers(0, 9, (500,), dtype=np.int32), "h": rng.normal(size=(50,)).astype(np.float16),
              "r": np.arange(1030, dtype=np.float32)}  # raw, >= 4 KiB: aligned
    data = squeezefmt.save(arrays, codecs={"r": Raw()}, metadata={"k": "v"}, format_version=(1, 1))
    assert _flags(data) & layout.FLAG_COMPACT and file_breakdown(squeezefmt.open(data))["padding"] > 0
    return arrays, data


@given(st.data())
def test_single_byte_change_is_always_detected_v11(container11, data):
    _, blob = container11
    pos = data.draw(st.integers(0, len(blob) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != blob[pos]))
    with pytest.raises(errors.SqueezeError):
        verify_and_decode(blob[:pos] + bytes([new]) + blob[pos + 1:])


def test_every_truncation_is_detected_v11(container11):
    _, blob = container11
    for n in range(0, len(blob), 5):
        with pytest.raises(errors.SqueezeError):
            verify_and_decode(blob[:n])


@given(st.data())
def test_lying_compact_header_with_fixed_checksums(container11, data):
    """Edit compact header fields (CRCs recomputed): the reader refuses or decodes what is declared."""
    from sqzdev.vectors.v11 import forge11, split11

    arrays, blob = container11
    header, streams = split11(blob)
    t = data.draw(st.integers(0, len(header["tensors"]) - 1))
    entry = header["tensors"][t]
    field = data.draw(st.sampled_from(["shape", "dtype", "codec", "side", "align", "lengths"]))
    if field == "shape":
        entry[2] = data.draw(st.lists(st.integers(0, 2**33), max_size=4))
    elif field == "dtype":
        entry[1] = data.draw(st.sampled_from(["float32", "float16", "int8", "uint64", "bool", "bfloat16"]))
    elif field == "codec":
        entry[3] = data.draw(st.integers(-1, len(header["codecs"])))
    elif field == "side":
        entry[4] = data.draw(st.dictionaries(st.sampled_from(["planes", "x"]),
                                             st.lists(st.sampled_from(["zstd", "raw", "?"]), max_size=9)))
    elif field == "align":
        entry[6] = data.draw(st.integers(0, 2 ** len(entry[5]) - 1))
    lengths = [data.draw(st.integers(0, n + 70)) for n in entry[5]] if field == "lengths" else None
    # forge11 lays the streams out by their true lengths; a lying length goes in after that
    forged = forge11(header, streams, mutate=(lambda h: h["tensors"][t].__setitem__(5, lengths)) if lengths else None)
    name = entry[0]
    try:
        with squeezefmt.open(forged) as f:
            f.verify()
            out = f.tensor(name)
    except errors.SqueezeError:
        return
    assert tuple(out.shape) == tuple(entry[2])
    if out.dtype == arrays[name].dtype and out.shape == arrays[name].shape:
        assert np.array_equal(out.view(np.uint8), arrays[name].view(np.uint8))
