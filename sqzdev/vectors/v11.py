"""Format 1.1 test vectors (spec/format.md section 10) for spec/vectors/{valid,broken}/.

Called by :func:`sqzdev.vectors.core.main` (``tools/make_vectors.py``; it only adds missing files and
rewrites the manifest); the vectors are frozen once written. ``forge11`` assembles a 1.1 container from a compact header object
and stream bytes, laying the streams out by the header's *original* lengths and alignment masks, so
a mutated header describes a file it does not match.
"""
from __future__ import annotations

import contextlib
import copy
import json
import struct
import zlib

import numpy as np

import squeezefmt
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.sparse import Sparse
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.codecs.zstd_util import compress
from squeezefmt.container.header_dict import compress_with_dict
from squeezefmt.container.jsonbound import decode_header  # noqa: E402
from squeezefmt.container.layout import (
    FLAG_COMPACT, FLAG_HEADER_DICT, FLAG_HEADER_ZSTD, PREAMBLE_SIZE, Preamble, align, parse_preamble,
)

PLAIN, ZSTD, DICT = FLAG_COMPACT, FLAG_COMPACT | FLAG_HEADER_ZSTD, FLAG_COMPACT | FLAG_HEADER_ZSTD | FLAG_HEADER_DICT


def _crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


def _dumps(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@contextlib.contextmanager
def raw_align_rule_of_1_1():
    """The writer's alignment rule when the 1.1 vectors were frozen: raw streams of >= 64 bytes aligned
    (now >= ``RAW_ALIGN_MIN``); both are valid, the vectors keep the older layout."""
    from squeezefmt.codecs import raw  # noqa: PLC0415

    old, raw.RAW_ALIGN_MIN = raw.RAW_ALIGN_MIN, 64
    try:
        yield
    finally:
        raw.RAW_ALIGN_MIN = old


def split11(data: bytes):
    """(compact header object, stream bytes in file order) of a valid 1.1 container."""
    pre = parse_preamble(data[:PREAMBLE_SIZE])
    header = json.loads(decode_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_len], pre))
    cursor, streams = pre.data_start, []
    for t in header["tensors"]:
        for i, n in enumerate(t[5]):
            off = cursor if n == 0 else (align(cursor) if t[6] >> i & 1 else cursor)
            streams.append(data[off:off + n])
            cursor = off + n
    return header, streams


def lay_out_bodies(header: dict, streams: list[bytes], per_tensor=None) -> list:
    """Give each tensor row of ``header`` the lengths of its next ``streams``; returns ``[(body, aligned)]``.

    ``per_tensor(row, bodies)`` may add per-tensor fields (1.1's CRC) to the row.
    """
    it = iter(streams)
    layout = []
    for t in header["tensors"]:
        bodies = [next(it) for _ in t[5]]
        t[5] = [len(b) for b in bodies]
        if per_tensor:
            per_tensor(t, bodies)
        layout += [(b, t[6] >> i & 1) for i, b in enumerate(bodies)]
    return layout


def assemble(stored: bytes, layout: list, trailing: bytes = b"") -> bytearray:
    """Room for the preamble, the stored header, then the stream bodies (aligned where marked)."""
    out = bytearray(PREAMBLE_SIZE) + stored
    for body, aligned in layout:
        if body and aligned:
            out += bytes(align(len(out)) - len(out))
        out += body
    return out + trailing


def forge11(header: dict, streams: list[bytes], *, mutate=None, flags: int = ZSTD, minor: int = 1,
            file_len_delta: int = 0, trailing: bytes = b"") -> bytes:
    h = copy.deepcopy(header)
    layout = lay_out_bodies(h, streams, per_tensor=lambda t, bodies: t.__setitem__(7, _crc(b"".join(bodies))))
    if mutate:
        mutate(h)
    raw = _dumps(h)
    stored = {PLAIN: raw, ZSTD: compress(raw, 19), DICT: compress_with_dict(raw)}[flags & DICT]
    out = assemble(stored, layout, trailing)
    pre = Preamble(1, minor, flags, len(stored), _crc(stored), len(out) + file_len_delta, len(raw))
    out[:PREAMBLE_SIZE] = pre.pack()
    return bytes(out)


def valid_cases():
    rng = np.random.default_rng(20261201)
    w = rng.normal(0, 0.05, (40, 24)).astype(np.float32)
    sparse = np.where(rng.random((30, 16)) < 0.8, np.float32(0), rng.normal(size=(30, 16)).astype(np.float32))
    sparse[0, :3] = -0.0
    mixed = {
        "dense/kernel": w, "dense/bias": rng.normal(size=(24,)).astype(np.float32),       # bytegroup, raw < 64 B
        "table": rng.normal(size=(16, 4)).astype(np.float16),                              # raw, 128 B: aligned
        "idx": rng.integers(0, 9, size=(300,), dtype=np.int32),                            # zstd
        "empty": np.zeros((0, 3), np.float32), "scalar": np.float64(2.5).reshape(()),
        "pruned": sparse,                                                                  # sparse + raw values
    }
    codecs = {"dense/kernel": ByteGroup(level=19), "dense/bias": Raw(), "table": Raw(), "idx": Zstd(level=19),
              "empty": Raw(), "scalar": Raw(), "pruned": Sparse(values=Raw())}
    keras = {"kind": "weights", "model_config": None, "training_config": None, "keras_version": "2.14.0",
             "backend": "tensorflow", "layers": [
                 {"name": "dense", "class_name": "Dense", "weights": [
                     {"name": "dense/kernel:0", "tensor": "dense/dense/kernel:0"},
                     {"name": "dense/bias:0", "tensor": "dense/dense/bias:0"}]},
                 {"name": "flatten", "class_name": "Flatten", "weights": []},
                 {"name": "odd", "class_name": None, "weights": [{"name": "w:0", "tensor": "odd/w:0"}]}]}
    k_arrays = {"dense/dense/kernel:0": w[:8, :8].copy(), "dense/dense/bias:0": np.arange(8, dtype=np.float32),
                "odd/w:0": np.ones((3,), np.float32)}
    k_codecs = {"dense/dense/kernel:0": ByteGroup(level=3)}
    yield "v11_mixed", mixed, codecs, {"note": "format 1.1: aligned raw, packed entropy streams"}, None
    yield "v11_keras_shorthand", k_arrays, k_codecs, None, keras


def v11_files():
    """``(relative path under spec/vectors, bytes)`` of every 1.1 vector, valid and broken."""
    files, bases = [], {}
    for stem, arrays, codecs, meta, keras in valid_cases():
        with raw_align_rule_of_1_1():
            data = squeezefmt.save(arrays, None, codecs=codecs, metadata=meta, format_version=(1, 1),
                                   _extra_metadata={"keras": keras} if keras else None)
        data = data.replace(squeezefmt.__version__.encode(), b"0.1.0")
        h, s = split11(data)
        assert forge11(h, s, flags=parse_preamble(data[:PREAMBLE_SIZE]).flags) == data  # forge11 is the writer's layout
        bases[stem] = data
        files.append((f"valid/{stem}.sqz", data))
        buf = __import__("io").BytesIO()
        np.savez(buf, **arrays)
        files.append((f"valid/{stem}.npz", buf.getvalue()))
    h, s = split11(bases["v11_mixed"])
    files.append(("valid/v11_mixed_header_plain.sqz", forge11(h, s, flags=PLAIN)))
    files.append(("valid/v11_mixed_header_dict.sqz", forge11(h, s, flags=DICT)))
    files.append(("valid/v11_mixed_header_zstd.sqz", forge11(h, s, flags=ZSTD)))
    for suffix in ("header_plain", "header_dict", "header_zstd"):
        files.append((f"valid/v11_mixed_{suffix}.npz", dict(files)["valid/v11_mixed.npz"]))
    return files + [(f"broken/{name}.sqz", data) for name, data in broken_cases(h, s, bases)]


def broken_cases(h, s, bases):
    def tensor(i, field, value):
        return lambda x: x["tensors"][i].__setitem__(field, value)

    base = forge11(h, s)
    yield "FormatError__v11_compact_flag_minor_0", forge11(h, s, minor=0)
    yield "FormatError__v11_dict_flag_without_compact", _set_flags(base, FLAG_HEADER_ZSTD | FLAG_HEADER_DICT)
    yield "HeaderError__v11_dict_frame_flag_clear", _set_flags(forge11(h, s, flags=DICT), ZSTD)
    yield "HeaderError__v11_codec_index_out_of_range", forge11(h, s, mutate=tensor(0, 3, len(h["codecs"])))
    yield "HeaderError__v11_codec_index_not_int", forge11(h, s, mutate=tensor(0, 3, "0"))
    yield "HeaderError__v11_align_mask_too_wide", forge11(h, s, mutate=tensor(1, 6, 2))
    yield "HeaderError__v11_tensor_not_array", forge11(h, s, mutate=lambda x: x["tensors"].__setitem__(0, {"name": "a"}))
    yield "HeaderError__v11_tensor_short_array", forge11(h, s, mutate=lambda x: x["tensors"][0].pop())
    yield "HeaderError__v11_negative_length", forge11(h, s, mutate=tensor(0, 5, [-1] + h["tensors"][0][5][1:]))
    yield "HeaderError__v11_crc_not_int", forge11(h, s, mutate=tensor(0, 7, 2**32))
    yield "HeaderError__v11_file_len_past_streams", forge11(h, s, file_len_delta=0, trailing=b"\x00")
    yield "FormatError__v11_align_bit_cleared", forge11(h, s, mutate=tensor(2, 6, 0), trailing=b"")
    yield "TruncatedError__v11_in_last_stream", base[:-3]
    yield "FormatError__v11_trailing_bytes", base + b"\x00"
    flip = len(base) - 2
    yield "ChecksumError__v11_tensor_crc", base[:flip] + bytes([base[flip] ^ 1]) + base[flip + 1:]
    yield "ChecksumError__v11_length_lies", forge11(h, s, mutate=tensor(2, 5, [h["tensors"][2][5][0] - 1]))
    hk, sk = split11(bases["v11_keras_shorthand"])

    def bomb(x):
        name = "L" * 4000
        x["metadata"]["keras"]["layers"].append([name, None, ["a"] * 400])
    yield "LimitError__v11_shorthand_bomb", forge11(hk, sk, mutate=bomb)

    def bad_layer(x):
        x["metadata"]["keras"]["layers"][0] = ["dense", "Dense"]
    yield "HeaderError__v11_layer_array_short", forge11(hk, sk, mutate=bad_layer)


def _set_flags(data: bytes, flags: int) -> bytes:
    out = data[:12] + struct.pack("<I", flags) + data[16:36]
    return out + struct.pack("<I", _crc(out)) + data[PREAMBLE_SIZE:]
