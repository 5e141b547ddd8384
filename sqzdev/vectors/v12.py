"""Format 1.2 test vectors (spec/format.md section 10.6) for spec/vectors/{valid,broken}/.

Called by :func:`sqzdev.vectors.core.main` (``tools/make_vectors.py``; it only adds missing files); the
vectors are frozen once written. ``forge12`` assembles a 1.2 container from a compact header object
and stream bytes, laying the streams out by the header's *original* lengths and alignment masks and
storing the CRC of the original streams, so a mutated header describes a file it does not match.
"""
from __future__ import annotations

import copy
import io

import numpy as np

import squeezefmt
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.codecs.zstd_util import compress
from squeezefmt.container.header_dict import compress_with_dict
from squeezefmt.container.layout import (
    FLAG_COMPACT, FLAG_HEADER_DICT, FLAG_HEADER_ZSTD, FLAG_SMALL, PREAMBLE_SIZE, Preamble, parse_preamble,
)

from .v11 import _crc, _dumps, assemble, lay_out_bodies, split11

PLAIN = FLAG_COMPACT | FLAG_SMALL
ZSTD = PLAIN | FLAG_HEADER_ZSTD
DICT = ZSTD | FLAG_HEADER_DICT


# The 1.2 header keeps 1.1's tensor rows and stream layout, so a 1.2 file splits as a 1.1 file does.
split12 = split11


def forge12(header: dict, streams: list[bytes], *, mutate=None, flags: int = DICT, minor: int = 2,
            crc_delta: int = 0, trailing: bytes = b"", frame=None) -> bytes:
    h = copy.deepcopy(header)
    layout = lay_out_bodies(h, streams)
    data_crc = _crc(b"".join(b for b, _ in layout))
    if mutate:
        mutate(h)
    raw = _dumps(h)
    stored = frame(raw) if frame else {PLAIN: raw, ZSTD: compress(raw, 19),
                                       DICT: compress_with_dict(raw, version=2)}[flags & DICT]
    out = assemble(stored, layout, trailing)
    pre = Preamble(1, minor, flags, len(stored), _crc(stored), len(out), 0, (data_crc + crc_delta) & 0xFFFFFFFF)
    out[:PREAMBLE_SIZE] = pre.pack()
    return bytes(out)


def valid_cases():
    rng = np.random.default_rng(20261202)
    w = rng.normal(0, 0.05, (24, 16)).astype(np.float32)
    keras = {"kind": "weights", "model_config": None, "training_config": None, "keras_version": "2.14.0",
             "backend": "tensorflow", "layers": [
                 {"name": "dense", "class_name": "Dense", "weights": [
                     {"name": "dense/kernel:0", "tensor": "dense/dense/kernel:0"},
                     {"name": "dense/bias:0", "tensor": "dense/dense/bias:0"}]},
                 {"name": "bn", "class_name": "BatchNormalization", "weights": [
                     {"name": "bn/gamma:0", "tensor": "bn/bn/gamma:0"},
                     {"name": "bn/beta:0", "tensor": "bn/bn/beta:0"}]},
                 {"name": "odd", "class_name": None, "weights": [{"name": "w:0", "tensor": "odd/w:0"}]}]}
    arrays = {  # file order differs from layer order for bn: beta keeps its name, gamma is derived
        "dense/dense/kernel:0": w, "dense/dense/bias:0": rng.normal(size=(16,)).astype(np.float32),
        "bn/bn/beta:0": np.linspace(-1, 1, 40, dtype=np.float32), "bn/bn/gamma:0": np.ones(40, np.float32),
        "odd/w:0": rng.integers(0, 7, (300,), dtype=np.int32), "big": np.arange(1100, dtype=np.float32),
        "empty": np.zeros((0, 2), np.float16),
    }
    codecs = {"dense/dense/kernel:0": ByteGroup(level=19), "dense/dense/bias:0": Raw(), "bn/bn/beta:0": Raw(),
              "bn/bn/gamma:0": Zstd(level=3), "odd/w:0": Zstd(level=19), "big": Raw(), "empty": Raw()}
    yield "v12_keras_shorthand", arrays, codecs, {"note": "format 1.2: one data CRC, derived names"}, keras


def v12_files():
    """``(relative path under spec/vectors, bytes)`` of every 1.2 vector, valid and broken."""
    files, bases = [], {}
    for stem, arrays, codecs, meta, keras in valid_cases():
        data = squeezefmt.save(arrays, None, codecs=codecs, metadata=meta, format_version=(1, 2),
                               _extra_metadata={"keras": keras})
        data = data.replace(squeezefmt.__version__.encode(), b"0.1.0")
        h, s = split12(data)
        assert forge12(h, s, flags=parse_preamble(data[:PREAMBLE_SIZE]).flags) == data  # the writer's layout
        bases[stem] = data
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        files += [(f"valid/{stem}.sqz", data), (f"valid/{stem}.npz", buf.getvalue())]
    h, s = split12(bases["v12_keras_shorthand"])
    for suffix, flags in (("header_plain", PLAIN), ("header_zstd", ZSTD)):
        files.append((f"valid/v12_keras_shorthand_{suffix}.sqz", forge12(h, s, flags=flags)))
        files.append((f"valid/v12_keras_shorthand_{suffix}.npz", dict(files)["valid/v12_keras_shorthand.npz"]))
    return files + [(f"broken/{name}.sqz", data) for name, data in broken_cases(h, s)]


def broken_cases(h, s):
    def tensor(i, field, value):
        return lambda x: x["tensors"][i].__setitem__(field, value)

    base = forge12(h, s)
    yield "FormatError__v12_small_flag_minor_1", forge12(h, s, minor=1)
    yield "FormatError__v12_small_flag_without_compact", forge12(
        h, s, flags=FLAG_SMALL | FLAG_HEADER_ZSTD, frame=lambda raw: compress(raw, 19))
    yield "ChecksumError__v12_data_crc", forge12(h, s, crc_delta=1)
    flip = len(base) - 2
    yield "ChecksumError__v12_stream_byte", base[:flip] + bytes([base[flip] ^ 1]) + base[flip + 1:]
    def shift(x):  # one byte moves from tensor 0 to tensor 1: the data CRC cannot see it, the codecs do
        x["tensors"][0][5][-1] -= 1
        x["tensors"][1][5][0] += 1
    yield "StreamError__v12_boundary_moved", forge12(h, s, mutate=shift)
    yield "HeaderError__v12_tensor_array_with_crc", forge12(h, s, mutate=lambda x: [t.insert(7, 0) for t in x["tensors"]])
    yield "HeaderError__v12_null_name_past_shorthand", forge12(
        h, s, mutate=lambda x: [x["tensors"][i].__setitem__(0, None) for i in (4, 5)])
    yield "HeaderError__v12_derived_name_twice", forge12(h, s, mutate=tensor(2, 0, "dense/dense/kernel:0"))
    yield "HeaderError__v12_frame_without_content_size", forge12(
        h, s, flags=ZSTD, frame=lambda raw: __import__("zstandard").ZstdCompressor(write_content_size=False).compress(raw))
    yield "HeaderError__v12_dict_1_frame", forge12(h, s, frame=lambda raw: compress_with_dict(raw, version=1))
    yield "TruncatedError__v12_in_last_stream", base[:-3]
    yield "FormatError__v12_trailing_bytes", base + b"\x00"
