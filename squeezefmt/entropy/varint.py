"""Unsigned LEB128 numbers (minimal encoding) used inside codec streams; see spec/codecs.md."""
from __future__ import annotations

from ..errors import StreamError


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 (minimal)."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(data, pos: int, what: str, limit: int) -> tuple[int, int]:
    """(value, next position) of a minimal LEB128 number ``<= limit`` at ``data[pos]``."""
    value = shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise StreamError(f"{what}: truncated number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
        if shift > 63:
            raise StreamError(f"{what}: number longer than 9 bytes")
    if pos - start > 1 and byte == 0:
        raise StreamError(f"{what}: number is not minimally encoded")
    if value > limit:
        raise StreamError(f"{what}: {value} exceeds {limit}")
    return value, pos
