"""CRC-32 of container bytes: the checksum spec/format.md fixes (CRC-32/ISO-HDLC, zlib's value).

``crc32(data, value=0)`` returns exactly ``zlib.crc32(data, value)``. Every tensor decode checks
the CRC of its stored streams first, so it is on the decode's critical path: the C module
``squeezefmt._crcfast`` (PCLMULQDQ folding where the CPU has it, slice-by-8 tables elsewhere) is
about ten times faster than zlib's here. ``zlib.crc32`` is the reference the tests compare it
against and the fallback when the extension is not built.
"""
from __future__ import annotations

import zlib

try:  # optional C fast path (squeezefmt/_crcfast.c); zlib.crc32 is the reference
    import squeezefmt._crcfast as _crcfast  # type: ignore[import-not-found]  # compiled: no import edge
    _fast_crc32 = _crcfast.crc32
except ImportError:  # pragma: no cover - depends on the build
    _fast_crc32 = None

__all__ = ["crc32", "reference_crc32", "FAST"]

#: True when the C path is in use.
FAST = _fast_crc32 is not None


def reference_crc32(data, value: int = 0) -> int:
    """zlib's CRC-32 (the reference)."""
    return zlib.crc32(data, value) & 0xFFFFFFFF


crc32 = _fast_crc32 if _fast_crc32 is not None else reference_crc32
