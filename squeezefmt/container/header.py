"""The JSON header: serialising it deterministically and validating an untrusted one.

The header is UTF-8 JSON with sorted keys and no insignificant white space, so equal inputs give
byte-identical files. :func:`parse_header` checks every field a reader relies on (types, ranges,
limits, the canonical stream layout and the file length) before any stream is touched; fields it
does not know are ignored so that newer minor versions still read.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from ..dtypes import DTYPE_NAMES, itemsize
from ..errors import HeaderError, LimitError
from .jsonbound import loads_bounded
from .layout import Preamble, stream_offset
from .limits import Limits


@dataclasses.dataclass(frozen=True)
class StreamRef:
    offset: int
    length: int
    crc32: int | None       # None in format 1.1: the tensor's crc32 covers its streams
    align: int = 64         # 1.1: the stream's declared alignment (1 or 64)


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One validated tensor record of the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    codec: dict[str, Any]
    side: dict[str, Any]
    streams: tuple[StreamRef, ...]
    stats: dict[str, Any]
    crc32: int | None = None  # format 1.1: CRC-32 of the tensor's streams concatenated (1.2: None, one data CRC)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded tensor."""
        return self.size * itemsize(self.dtype)

    @property
    def stored_bytes(self) -> int:
        """Bytes of its streams in the file (without alignment padding)."""
        return sum(s.length for s in self.streams)


def dumps(obj: Any) -> bytes:
    """Deterministic JSON encoding used for the header."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (from a "\\ud800" escape or a Python str)
        raise HeaderError("header text holds a lone UTF-16 surrogate, which UTF-8 cannot encode") from None
    except ValueError as exc:  # NaN/inf in metadata or stats
        raise HeaderError(f"header is not representable as strict JSON: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_header(raw: bytes, preamble: Preamble, limits: Limits) -> tuple[list[TensorEntry], dict[str, Any]]:
    """Validate header bytes; return the tensor entries (in file order) and the metadata object."""
    obj = loads_bounded(raw, limits)
    if not isinstance(obj, dict):
        raise HeaderError("header must be a JSON object")
    if obj.get("format") != "squeezefmt":
        raise HeaderError(f"header 'format' must be \"squeezefmt\", got {obj.get('format')!r}")
    metadata = obj.get("metadata", {})
    if preamble.compact:  # format 1.1: expand the compact representation, then validate as usual
        from .compact import expand_metadata, expand_tensors  # noqa: PLC0415

        if preamble.small:  # 1.2: null tensor names come from the shorthand, bounded by expand_metadata
            expanded = expand_metadata(metadata, 2 * len(raw) + (64 << 10))
            obj = {**obj, "tensors": expand_tensors(obj, limits, small=True)}
            metadata = expanded
        else:
            obj = {**obj, "tensors": expand_tensors(obj, limits)}
            metadata = expand_metadata(metadata, 2 * len(raw) + (64 << 10))
    tensors_raw = obj.get("tensors")
    if not isinstance(tensors_raw, list):
        raise HeaderError("header 'tensors' must be a list")
    if len(tensors_raw) > limits.max_tensors:
        raise LimitError(f"header lists {len(tensors_raw)} tensors; the limit is {limits.max_tensors}")
    if not isinstance(metadata, dict):
        raise HeaderError("header 'metadata' must be an object")
    if metadata and len(dumps(metadata)) > limits.max_metadata_bytes:
        raise LimitError(f"header metadata is larger than the {limits.max_metadata_bytes}-byte limit")

    entries: list[TensorEntry] = []
    names: set[str] = set()
    cursor = preamble.data_start
    last_end = preamble.data_start
    total = 0
    for index, t in enumerate(tensors_raw):
        entry = _parse_tensor(t, index, limits, preamble.compact)
        if entry.name in names:
            raise HeaderError(f"tensor name {entry.name!r} appears twice")
        names.add(entry.name)
        placed = []
        for s in entry.streams:
            expected = stream_offset(cursor, s.length, s.align, preamble.compact)
            if preamble.compact:  # 1.1 lists no offsets: the layout rule gives them
                s = dataclasses.replace(s, offset=expected)
            elif s.offset != expected:
                raise HeaderError(
                    f"tensor {entry.name!r}: stream at offset {s.offset}, the canonical layout puts it at "
                    f"{expected} (streams must follow each other with only alignment padding)"
                )
            placed.append(s)
            cursor = last_end = s.offset + s.length
        entries.append(dataclasses.replace(entry, streams=tuple(placed)) if preamble.compact else entry)
        total += entry.nbytes
        if total > limits.max_decoded_bytes:
            raise LimitError(f"the tensors decode to more than the {limits.max_decoded_bytes}-byte limit "
                             "(Limits.max_decoded_bytes, --max-decoded-bytes)")
    if preamble.file_len != last_end:
        raise HeaderError(f"preamble says the file has {preamble.file_len} bytes, the streams end at {last_end}")
    return entries, metadata


def _parse_tensor(t: Any, index: int, limits: Limits, compact: bool = False) -> TensorEntry:
    if not isinstance(t, dict):
        raise HeaderError(f"tensor #{index} must be an object")
    name = t.get("name")
    if not isinstance(name, str) or not name or len(name) > limits.max_name_length or "\x00" in name:
        raise HeaderError(f"tensor #{index}: name must be a non-empty string without NUL, "
                          f"at most {limits.max_name_length} characters")
    where = f"tensor {name!r}"
    dtype = t.get("dtype")
    if dtype not in DTYPE_NAMES:
        raise HeaderError(f"{where}: unknown dtype {dtype!r}")
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise HeaderError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > limits.max_ndim:
        raise LimitError(f"{where}: {len(shape)} dimensions; the limit is {limits.max_ndim}")
    nbytes = itemsize(dtype)
    for d in shape:  # zero dimensions count as 1 here, so that [0, 2**62] is refused too
        nbytes *= max(d, 1)
        if nbytes > limits.max_tensor_bytes:
            raise LimitError(f"{where}: shape {shape} needs more than the {limits.max_tensor_bytes}-byte limit")
    codec = t.get("codec")
    if not isinstance(codec, dict):
        raise HeaderError(f"{where}: 'codec' must be an object")
    side = t.get("side", {})
    stats = t.get("stats", {})
    if not isinstance(side, dict) or not isinstance(stats, dict):
        raise HeaderError(f"{where}: 'side' and 'stats' must be objects")
    streams_raw = t.get("streams")
    if not isinstance(streams_raw, list):
        raise HeaderError(f"{where}: 'streams' must be a list")
    if len(streams_raw) > limits.max_streams_per_tensor:
        raise LimitError(f"{where}: {len(streams_raw)} streams; the limit is {limits.max_streams_per_tensor}")
    if compact:  # lengths, alignments and the tensor CRC were type-checked by compact.expand_tensors
        streams = tuple(StreamRef(0, s["length"], None, s["align"]) for s in streams_raw)
        return TensorEntry(name, dtype, tuple(shape), codec, side, streams, stats, t["crc32"])
    streams = []
    for s in streams_raw:
        if not isinstance(s, dict):
            raise HeaderError(f"{where}: every stream must be an object")
        off, length, crc = s.get("offset"), s.get("length"), s.get("crc32")
        if not (_is_int(off) and _is_int(length) and _is_int(crc)) or off < 0 or length < 0 or not 0 <= crc < 2**32:
            raise HeaderError(f"{where}: stream needs non-negative integer offset/length and a 32-bit crc32, got {s!r}")
        streams.append(StreamRef(off, length, crc))
    return TensorEntry(name, dtype, tuple(shape), codec, side, tuple(streams), stats)
