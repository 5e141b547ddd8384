"""Bounded zstd helpers shared by the codecs.

``decompress_exact`` is the only way codecs decompress: it checks that the stream is exactly one
zstd frame that declares its content size, that the size is the one the header implies, and that
nothing follows the frame, before and after decompressing. A lying frame therefore cannot make
the reader allocate more than the declared tensor.
"""
from __future__ import annotations

import zstandard

from ..errors import StreamError

MAX_LEVEL = 22


def compress(data, level: int) -> bytes:
    """One zstd frame with its content size recorded, no dictionary, single-threaded (deterministic)."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, threads=0)
    return cctx.compress(data)


def decompress_exact(data, expected_size: int, what: str, dict_data=None) -> bytes:
    """Decompress one zstd frame that must expand to exactly ``expected_size`` bytes.

    ``dict_data``: a ``zstandard.ZstdCompressionDict`` the frame was compressed with (the container's
    header dictionary); codecs never use one.
    """
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise StreamError(f"{what}: not a zstd frame ({exc})") from None
    if params.content_size != expected_size:
        raise StreamError(
            f"{what}: zstd frame declares {params.content_size} bytes, the header implies {expected_size}"
        )
    dctx = zstandard.ZstdDecompressor(dict_data=dict_data) if dict_data is not None else zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    try:
        out = dobj.decompress(data)
    except zstandard.ZstdError as exc:
        raise StreamError(f"{what}: corrupt zstd frame ({exc})") from None
    if not dobj.eof:
        raise StreamError(f"{what}: zstd frame is truncated")
    if dobj.unused_data:
        raise StreamError(f"{what}: {len(dobj.unused_data)} bytes of trailing data after the zstd frame")
    if len(out) != expected_size:
        raise StreamError(f"{what}: zstd frame expanded to {len(out)} bytes, expected {expected_size}")
    return out


def check_level(level) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= MAX_LEVEL:
        raise StreamError(f"zstd level must be an integer in [-7, {MAX_LEVEL}], got {level!r}")
    return level
