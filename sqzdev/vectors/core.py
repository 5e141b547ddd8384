"""Generate the frozen container test vectors in spec/vectors/ (valid and deliberately broken files).

Run once per new vector: existing files are never overwritten (the vectors are frozen; tests decode
them forever). ``python tools/make_vectors.py`` (which calls :func:`main`) adds whatever is missing and rewrites MANIFEST.json
from the files present.

Broken files are named ``<ErrorClass>__<what>.sqz``: a conforming reader must reject each with that
error class (or a subclass) when opening and verifying it.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib

import numpy as np

import squeezefmt  # noqa: E402
from squeezefmt.codecs.bytegroup import ByteGroup  # noqa: E402
from squeezefmt.codecs.raw import Raw  # noqa: E402
from squeezefmt.codecs.zstd_codec import Zstd  # noqa: E402
from squeezefmt.codecs.zstd_util import compress  # noqa: E402
from squeezefmt.container.jsonbound import decode_header  # noqa: E402
from squeezefmt.container.layout import (  # noqa: E402
    FLAG_HEADER_ZSTD, PREAMBLE_SIZE, Preamble, align, encode_header, parse_preamble,
)

from sqzdev import VECTORS as ROOT  # noqa: E402
VALID = os.path.join(ROOT, "valid")
BROKEN = os.path.join(ROOT, "broken")


def crc(b: bytes) -> int:
    return zlib.crc32(b) & 0xFFFFFFFF


def split(data: bytes):
    """(header object, list of stream bytes) of a valid container."""
    pre = parse_preamble(data[:PREAMBLE_SIZE])
    header = json.loads(decode_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_len], pre))
    streams = [data[s["offset"]: s["offset"] + s["length"]] for t in header["tensors"] for s in t["streams"]]
    return header, streams


def encode(json_bytes: bytes, level: int = 19) -> tuple[int, bytes]:
    """``(flags, stored header)`` as the writer stores it: the zstd frame when it is smaller.

    Level 19 is the writer's; the fuzzer forges with a fast level (the reader does not care which
    level made the frame).
    """
    if level == 19:
        return encode_header(json_bytes)
    packed = compress(json_bytes, level)
    return (FLAG_HEADER_ZSTD, packed) if len(packed) < len(json_bytes) else (0, json_bytes)


def assemble(json_bytes: bytes, streams: list[bytes], data_start: int, end: int, *, major: int = 1,
             minor: int = 0, file_len_delta: int = 0, compress: bool = True,
             encoded: tuple[int, bytes] | None = None) -> bytes:
    """Preamble + (compressed) header + padding + streams at canonical offsets.

    ``encoded``: ``(flags, stored)`` of ``json_bytes`` when the caller already has it.
    """
    if encoded is not None:
        flags, stored = encoded
    else:
        flags, stored = encode_header(json_bytes) if compress else (0, json_bytes)
    pre = Preamble(major, minor, flags, len(stored), crc(stored), end + file_len_delta, len(json_bytes))
    out = bytearray(pre.pack() + stored)
    out += bytes(data_start - len(out))
    cursor = data_start
    for body in streams:
        off = align(cursor)
        out += bytes(off - cursor) + body
        cursor = off + len(body)
    return bytes(out)


def forge(header: dict, streams: list[bytes], mutate=None, major: int = 1, minor: int = 0,
          file_len_delta: int = 0, level: int = 19, copy: bool = True, start: int = 0) -> bytes:
    """Assemble a container with canonical offsets, optionally mutating the final header object.

    ``level``: the zstd level of the header frame (19, the writer's; the fuzzer uses a fast one).
    ``copy=False`` (without ``mutate``) writes the offsets into ``header`` itself, the caller's
    throwaway copy, instead of copying it on every layout pass. ``start``: a guess of where the
    streams begin (a parent's), which usually saves the second layout pass.
    """
    data_start = max(align(PREAMBLE_SIZE), start)
    for attempt in range(32):
        h = json.loads(json.dumps(header)) if copy or mutate else header
        cursor = end = data_start
        it = iter(streams)
        for t in h["tensors"]:
            for s in t["streams"]:
                body = next(it)
                s["offset"] = align(cursor)
                s["length"] = len(body)
                s["crc32"] = crc(body)
                cursor = end = s["offset"] + len(body)
        if mutate:
            mutate(h)
        raw = json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        encoded = encode(raw, level)
        need = align(PREAMBLE_SIZE + len(encoded[1]))
        if need == data_start:
            break
        data_start = need if attempt == 0 else max(need, data_start)  # a guess may be too large
    return assemble(raw, streams, data_start, end, major=major, minor=minor, file_len_delta=file_len_delta,
                    encoded=encoded)


def refix_crc(data: bytes) -> bytes:
    """Recompute the preamble CRC after editing preamble fields."""
    return data[:36] + struct.pack("<I", crc(data[:36])) + data[PREAMBLE_SIZE:]


def valid_cases():
    rng = np.random.default_rng(20261123)
    weights = rng.normal(0, 0.05, (64, 48)).astype(np.float32)
    all_dtypes = {
        "f64": rng.normal(size=(3, 5)), "f32": rng.normal(size=(7,)).astype(np.float32),
        "f16": rng.normal(size=(2, 3, 4)).astype(np.float16),
        "bf16_bits": (rng.normal(size=(9,)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
        "i64": rng.integers(-2**62, 2**62, size=(4,)), "i32": rng.integers(-2**31, 2**31, size=(4, 2), dtype=np.int32),
        "i16": rng.integers(-2**15, 2**15, size=(6,), dtype=np.int16), "i8": rng.integers(-128, 128, size=(5,), dtype=np.int8),
        "u64": rng.integers(0, 2**63, size=(3,), dtype=np.uint64), "u32": rng.integers(0, 2**32, size=(3,), dtype=np.uint32),
        "u16": rng.integers(0, 2**16, size=(3,), dtype=np.uint16), "u8": rng.integers(0, 256, size=(3,), dtype=np.uint8),
        "bool": rng.integers(0, 2, size=(2, 2)).astype(bool), "scalar": np.float32(3.5).reshape(()),
        "empty": np.zeros((0, 4), np.float32),
    }
    yield "v1_empty", {}, {}, None
    yield "v1_raw_all_dtypes", all_dtypes, {k: Raw() for k in all_dtypes}, None
    yield "v1_zstd", {"w": weights, "idx": rng.integers(0, 16, size=(1000,), dtype=np.int32)}, \
        {"w": Zstd(level=19), "idx": Zstd(level=3)}, None
    yield "v1_bytegroup", {"f32": weights, "f16": weights.astype(np.float16), "f64": weights[:8].astype(np.float64),
                           "i32": rng.integers(-1000, 1000, size=(500,), dtype=np.int32)}, \
        {k: ByteGroup(level=19) for k in ("f32", "f16", "f64", "i32")}, None
    yield "v1_metadata", {"x": np.arange(6, dtype=np.int16).reshape(2, 3)}, {"x": Raw()}, \
        {"author": "Zoë", "round": 7, "tags": ["a", "ß"], "nested": {"ok": True}}


def bf16_fix(arrays):
    """Store bfloat16 vectors as bfloat16 (their bits are kept as uint16 in the .npz)."""
    try:
        import ml_dtypes
    except ImportError:
        return arrays
    out = dict(arrays)
    if "bf16_bits" in out:
        out["bf16_bits"] = out["bf16_bits"].view(ml_dtypes.bfloat16)
    return out


def broken_cases(base: bytes):
    header, streams = split(base)
    n = len(base)

    def setter(path, value):
        def m(h):
            obj = h
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value
        return m

    yield "TruncatedError__empty", b""
    yield "TruncatedError__half_preamble", base[:16]
    yield "TruncatedError__in_header", base[:PREAMBLE_SIZE + 10]
    yield "TruncatedError__in_last_stream", base[:n - 5]
    yield "FormatError__bad_magic", b"NOTSQZ!!" + base[8:]
    yield "FormatError__crlf_to_lf", base.replace(b"\r\n", b"\n", 1)
    yield "FormatError__high_bit_stripped", bytes([base[0] & 0x7F]) + base[1:]
    yield "FormatError__hdf5_magic", b"\x89HDF\r\n\x1a\n" + base[8:]
    yield "FormatError__trailing_bytes", base + b"\x00" * 64
    yield "VersionError__major_2", refix_crc(base[:8] + struct.pack("<H", 2) + base[10:])
    yield "FormatError__unknown_flag", refix_crc(base[:12] + struct.pack("<I", 0x80000001) + base[16:])
    bad_json_len = refix_crc(base[:32] + struct.pack("<I", struct.unpack_from("<I", base, 32)[0] + 1) + base[36:])
    yield "HeaderError__json_len_lies", bad_json_len
    yield "ChecksumError__preamble_flip", base[:17] + bytes([base[17] ^ 0x01]) + base[18:]
    flip_h = PREAMBLE_SIZE + 5
    yield "ChecksumError__header_flip", base[:flip_h] + bytes([base[flip_h] ^ 0x20]) + base[flip_h + 1:]
    yield "ChecksumError__stream_flip", base[:n - 3] + bytes([base[n - 3] ^ 0x40]) + base[n - 2:]
    yield "LimitError__header_len_huge", refix_crc(base[:16] + struct.pack("<I", 0xFFFFFFF0) + base[20:])
    yield "LimitError__json_len_huge", refix_crc(base[:32] + struct.pack("<I", 0xFFFFFFF0) + base[36:])
    yield "HeaderError__not_json", _forge_raw_header(b'{"format":"squeezefmt","tensors":[')
    yield "HeaderError__not_object", _forge_raw_header(b"[1,2,3]")
    yield "HeaderError__bad_utf8", _forge_raw_header(b'{"format":"squeezefmt","tensors":[],"metadata":{"x":"\xff\xfe"}}')
    yield "HeaderError__nan_literal", _forge_raw_header(b'{"format":"squeezefmt","tensors":[],"metadata":{"x":NaN}}')
    yield "HeaderError__wrong_format_field", forge(header, streams, mutate=setter(["format"], "safetensors"))
    yield "HeaderError__tensors_not_list", _forge_raw_header(b'{"format":"squeezefmt","tensors":{"a":1},"metadata":{}}')
    yield "HeaderError__duplicate_name", forge(header, streams, mutate=setter(["tensors", 1, "name"], header["tensors"][0]["name"]))
    yield "HeaderError__unknown_dtype", forge(header, streams, mutate=setter(["tensors", 0, "dtype"], "float8"))
    yield "HeaderError__negative_dim", forge(header, streams, mutate=setter(["tensors", 0, "shape"], [-64, 48]))
    yield "HeaderError__float_dim", forge(header, streams, mutate=setter(["tensors", 0, "shape"], [64.0, 48]))
    yield "HeaderError__bool_dim", forge(header, streams, mutate=setter(["tensors", 0, "shape"], [True, 48]))
    yield "HeaderError__empty_name", forge(header, streams, mutate=setter(["tensors", 0, "name"], ""))
    yield "HeaderError__codec_not_object", forge(header, streams, mutate=setter(["tensors", 0, "codec"], "zstd"))

    def shift(delta):
        def m(h):
            h["tensors"][-1]["streams"][0]["offset"] += delta
        return m
    yield "HeaderError__stream_overlap", forge(header, streams, mutate=shift(-64))
    yield "HeaderError__stream_hole", forge(header, streams, mutate=shift(64))
    yield "HeaderError__stream_misaligned", forge(header, streams, mutate=shift(1))

    def grow_last(h):
        h["tensors"][-1]["streams"][-1]["length"] += 10
    yield "HeaderError__length_past_end", forge(header, streams, mutate=grow_last)
    yield "FormatError__file_len_too_small", forge(header, streams, file_len_delta=-1)
    yield "TruncatedError__file_len_too_big", forge(header, streams, file_len_delta=64)
    yield "HeaderError__negative_length", forge(header, streams, mutate=setter(["tensors", 0, "streams", 0, "length"], -1))
    yield "LimitError__huge_shape", forge(header, streams, mutate=setter(["tensors", 0, "shape"], [2**40, 2**40]))
    yield "LimitError__too_many_dims", forge(header, streams, mutate=setter(["tensors", 0, "shape"], [1] * 33))
    plain = _forge_raw_header(b'{"format":"squeezefmt","tensors":[],"metadata":{}}')
    yield "HeaderError__compressed_flag_on_plain_json", refix_crc(plain[:12] + struct.pack("<I", 1) + plain[16:])
    deep = b"[" * 200 + b"]" * 200
    yield "LimitError__deep_json", _forge_raw_header(b'{"format":"squeezefmt","tensors":[],"metadata":{"d":' + deep + b"}}")
    yield "UnknownCodecError__unknown_id", forge(header, streams, mutate=setter(["tensors", 0, "codec", "id"], "lzma9000"))
    yield "UnknownCodecError__future_version", forge(header, streams, mutate=setter(["tensors", 0, "codec", "version"], 99))
    yield "HeaderError__codec_version_zero", forge(header, streams, mutate=setter(["tensors", 0, "codec", "version"], 0))


def _forge_raw_header(raw: bytes, compress: bool = False) -> bytes:
    """A container with no streams whose header JSON is exactly ``raw`` (valid or not)."""
    stored_len = len(encode_header(raw)[1]) if compress else len(raw)
    data_start = align(PREAMBLE_SIZE + stored_len)
    return assemble(raw, [], data_start, data_start, compress=compress)


def codec_broken_cases():
    """Broken files whose header is fine but whose streams lie (CRCs recomputed, so codecs must catch it)."""
    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.05, (32, 16)).astype(np.float32)
    raw_c = squeezefmt.save({"w": w}, None, codecs={"w": Raw()}, format_version=(1, 0))
    h, s = split(raw_c)
    yield "StreamError__raw_shape_lies", forge(h, s, mutate=lambda x: x["tensors"][0].update(shape=[32, 17]))
    yield "StreamError__raw_short_stream", forge(h, [s[0][:-4]])
    z = squeezefmt.save({"w": w}, None, codecs={"w": Zstd(level=3)}, format_version=(1, 0))
    h, s = split(z)
    yield "StreamError__zstd_shape_lies", forge(h, s, mutate=lambda x: x["tensors"][0].update(shape=[32, 1600000]))
    yield "StreamError__zstd_garbage", forge(h, [b"\x00garbage-not-a-zstd-frame" * 4])
    yield "StreamError__zstd_trailing_data", forge(h, [s[0] + b"\x00\x01"])
    yield "StreamError__zstd_truncated_frame", forge(h, [s[0][:-7]])
    g = squeezefmt.save({"w": w}, None, codecs={"w": ByteGroup(level=3)}, format_version=(1, 0))
    h, s = split(g)
    yield "StreamError__bytegroup_bad_side", forge(h, s, mutate=lambda x: x["tensors"][0].update(side={"planes": ["lz4"] * 4}))
    h3 = json.loads(json.dumps(h))
    h3["tensors"][0]["streams"].pop()
    yield "StreamError__bytegroup_missing_stream", forge(h3, s[:3])


def write_new(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless the file exists (vectors are frozen); True when written."""
    if os.path.exists(path):
        return False
    with open(path, "wb") as f:
        f.write(data)
    return True


def write_manifest(root: str) -> dict[str, str]:
    """Rewrite ``root/MANIFEST.json``: the SHA-256 of every file under ``root/valid`` and ``root/broken``."""
    manifest = {}
    for sub in ("valid", "broken"):
        for fn in sorted(os.listdir(os.path.join(root, sub))):
            with open(os.path.join(root, sub, fn), "rb") as f:
                manifest[f"{sub}/{fn}"] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(root, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest


def first_tensor_mutators():
    """``(side, entry)``: wrap ``fn(side dict)`` / ``fn(tensor entry)`` as a ``forge`` mutation of tensor 0."""
    def side(fn):
        return lambda h: fn(h["tensors"][0]["side"])

    def entry(fn):
        return lambda h: fn(h["tensors"][0])
    return side, entry


def main() -> None:
    os.makedirs(VALID, exist_ok=True)
    os.makedirs(BROKEN, exist_ok=True)
    written = []

    def put(path, data):
        if write_new(path, data):
            written.append(os.path.relpath(path, ROOT))

    base = None
    for stem, arrays, codecs, meta in valid_cases():  # format 1.0 files (format 1.1: sqzdev/vectors/v11.py)
        data = squeezefmt.save(bf16_fix(arrays), None, codecs=codecs, metadata=meta, format_version=(1, 0))
        put(os.path.join(VALID, stem + ".sqz"), data)
        npz = os.path.join(VALID, stem + ".npz")
        if not os.path.exists(npz):
            np.savez(npz, **arrays)
            written.append(os.path.relpath(npz, ROOT))
        if stem == "v1_zstd":
            with open(os.path.join(VALID, stem + ".sqz"), "rb") as f:
                base = f.read()
    for name, data in list(broken_cases(base)) + list(codec_broken_cases()):
        put(os.path.join(BROKEN, name + ".sqz"), data)
    from .v11 import v11_files  # noqa: PLC0415 - format 1.1 vectors, same directories

    for rel, data in v11_files():
        put(os.path.join(ROOT, rel), data)
    from .v12 import v12_files  # noqa: PLC0415 - format 1.2 vectors

    for rel, data in v12_files():
        put(os.path.join(ROOT, rel), data)
    manifest = write_manifest(ROOT)
    print(f"wrote {len(written)} new files; manifest lists {len(manifest)}")
