"""Parsing the untrusted header JSON with bounded time and memory (spec/format.md, "Limits").

``json.loads`` alone bounds nothing but the input length: 60 MiB of ``[[],[],...]`` becomes
millions of Python objects and takes tens of seconds. :func:`header_json` counts the structural
bytes (``,`` ``:`` ``[`` ``{``, an upper bound of the number of values) while it decompresses the
header, so an oversized structure is refused before it is even fully decompressed, let alone
parsed. :func:`loads_bounded` then rejects duplicate member names, integers
outside [-2**63, 2**64 - 1], numbers that overflow a double and the non-JSON constants; a final
walk checks nesting depth, container lengths and string lengths.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..errors import HeaderError, LimitError
from .limits import INT_MAX, INT_MIN, Limits

#: Bytes of a compressed header decompressed (and counted) per step.
_CHUNK = 1 << 20
#: Longest integer literal that can be in range ("-9223372036854775808", 20 digits for 2**64 - 1).
_MAX_INT_CHARS = 20
#: Longest number literal with a fraction or exponent accepted (a double needs at most 17 digits
#: to round-trip; 1024 characters leaves room for any sane writer while keeping parsing linear).
_MAX_FLOAT_CHARS = 1024


def structure_count(chunk) -> int:
    """Bytes ``,`` ``:`` ``[`` ``{`` in ``chunk``: summed over the JSON text, one less than an upper
    bound of its number of values (member names included; such bytes inside strings count too)."""
    return chunk.count(b",") + chunk.count(b":") + chunk.count(b"[") + chunk.count(b"{")


def header_json(stored, pre, limits: Limits):
    """The header JSON bytes of a stored header (CRC already checked), its structure counted.

    A compressed header is decompressed a megabyte at a time and refused (``LimitError``) as soon as
    the structure count passes ``limits.max_json_values``: a few kilobytes that expand to tens of
    megabytes of ``[[],[],...]`` cost milliseconds, not the full expansion.
    """
    from ..codecs import zstd_util  # noqa: PLC0415 - codecs import the container lazily
    from ..errors import StreamError  # noqa: PLC0415
    from .header_dict import header_dict  # noqa: PLC0415
    from .layout import FLAG_HEADER_DICT, FLAG_HEADER_ZSTD, FLAG_SMALL  # noqa: PLC0415

    budget = limits.max_json_values - 1
    if not pre.flags & FLAG_HEADER_ZSTD:
        if pre.json_len != pre.header_len:
            raise HeaderError(f"uncompressed header: json_len {pre.json_len} != header_len {pre.header_len}")
        _spend(budget, structure_count(stored), limits)
        return stored
    chunks, used, left = [], 0, pre.json_len
    try:
        version = 2 if pre.flags & FLAG_SMALL else 1  # format 1.2 headers use dictionary 2
        reader = zstd_util.FrameReader(stored, pre.json_len, "compressed header",
                                       dict_data=header_dict(version) if pre.flags & FLAG_HEADER_DICT else None)
        while left:
            chunk = bytearray(min(left, _CHUNK))
            reader.readinto(chunk)
            used = _spend(budget, used + structure_count(chunk), limits)
            chunks.append(chunk)
            left -= len(chunk)
        reader.finish()
    except StreamError as exc:
        raise HeaderError(str(exc)) from None
    return b"".join(chunks)


def decode_header(stored, pre, limits: Limits | None = None) -> bytes:
    """The header JSON bytes of a stored header whose CRC was checked (tools and vector forging)."""
    from .layout import resolve_json_len  # noqa: PLC0415

    return bytes(header_json(stored, resolve_json_len(pre, stored), limits or Limits()))


def _spend(budget: int, used: int, limits: Limits) -> int:
    if used > budget:
        raise LimitError(f"header JSON holds more than {limits.max_json_values} values "
                         f"(counted as 1 + its ',' ':' '[' '{{' bytes); the limit is {limits.max_json_values}")
    return used


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_CHARS:
        raise HeaderError(f"header integer {text[:24]}... is outside [-2**63, 2**64 - 1]")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise HeaderError(f"header integer {value} is outside [-2**63, 2**64 - 1]")
    return value


def _parse_float(text: str) -> float:
    if len(text) > _MAX_FLOAT_CHARS:
        raise HeaderError(f"header number {text[:24]}... is longer than {_MAX_FLOAT_CHARS} characters")
    value = float(text)
    if not math.isfinite(value):
        raise HeaderError(f"header number {text[:24]} overflows a double")
    return value


def _reject_constant(name: str):
    raise HeaderError(f"header contains {name}, which strict JSON does not allow")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise HeaderError(f"header JSON object has the member name {dup[:64]!r} twice")
    return obj


def _walk(obj: Any, limits: Limits) -> None:
    """Depth, container lengths and string lengths of a parsed header (one pass over the containers)."""
    max_depth, max_len = limits.max_json_depth, limits.max_json_container
    max_str = limits.max_json_string_bytes
    short = max_str // 4  # a str of at most this many characters cannot exceed max_str UTF-8 bytes

    def check_str(s: str) -> None:
        if len(s) > short and len(s.encode("utf-8", "surrogatepass")) > max_str:
            raise LimitError(f"header JSON string of {len(s)} characters; the limit is {max_str} bytes")

    if isinstance(obj, str):
        check_str(obj)
    if not isinstance(obj, (dict, list)):
        return
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if len(item) > max_len:
            raise LimitError(f"header JSON container with {len(item)} entries; the limit is {max_len}")
        if type(item) is dict:
            for k in item:
                if len(k) > short:
                    check_str(k)
            values = item.values()
        else:
            values = item
        for v in values:
            t = type(v)
            if t is dict or t is list:
                if depth >= max_depth:
                    raise LimitError(f"header JSON nests deeper than {max_depth} levels")
                stack.append((v, depth + 1))
            elif t is str and len(v) > short:
                check_str(v)


def loads_bounded(raw: bytes, limits: Limits) -> Any:
    """The header JSON ``raw`` parsed within ``limits`` (HeaderError / LimitError otherwise)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderError(f"header is not valid UTF-8: {exc}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float,
                         object_pairs_hook=_object)
    except (json.JSONDecodeError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise LimitError(f"header JSON nests deeper than {limits.max_json_depth} levels") from None
        raise HeaderError(f"header is not valid JSON: {exc}") from None
    _walk(obj, limits)
    return obj
