"""Bounded zstd helpers shared by the codecs.

``decompress_exact`` is the only way codecs decompress: it checks that the stream is exactly one
zstd frame that declares its content size, that the size is the one the header implies, and that
nothing follows the frame, before and after decompressing. A lying frame therefore cannot make
the reader allocate more than the declared tensor.
"""
from __future__ import annotations

import struct

import zstandard

from ..errors import StreamError

MAX_LEVEL = 22
_MAGIC = 0xFD2FB528
_BLOCK_MAX = 1 << 17
#: Compressed bytes handed to zstd per read when decompressing into a caller's buffer.
READ_SIZE = 1 << 17


def compress(data, level: int) -> bytes:
    """One zstd frame with its content size recorded, no dictionary, single-threaded (deterministic)."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, threads=0)
    return cctx.compress(data)


def decompress_exact(data, expected_size: int, what: str) -> bytes:
    """Decompress one zstd frame that must expand to exactly ``expected_size`` bytes."""
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise StreamError(f"{what}: not a zstd frame ({exc})") from None
    if params.content_size != expected_size:
        raise StreamError(
            f"{what}: zstd frame declares {params.content_size} bytes, the header implies {expected_size}"
        )
    dobj = zstandard.ZstdDecompressor().decompressobj()
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


def frame_extent(data, what: str) -> tuple[int, int]:
    """(compressed length, upper bound of the decompressed size) of the zstd frame at the start of ``data``.

    Walks the frame header and block headers (RFC 8878 section 3.1.1) without decompressing, so a
    frame that is truncated, followed by other bytes, or too short for the size it declares is
    rejected before any output is written.
    """
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < 6 or struct.unpack_from("<I", mv, 0)[0] != _MAGIC:
        raise StreamError(f"{what}: not a zstd frame")
    fhd = mv[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    if fhd & 0x08:
        raise StreamError(f"{what}: zstd frame header has its reserved bit set")
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
    bound = 0
    while True:
        if pos + 3 > n:
            raise StreamError(f"{what}: zstd frame is truncated")
        header = mv[pos] | (mv[pos + 1] << 8) | (mv[pos + 2] << 16)
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        pos += 3
        if kind == 3 or size > _BLOCK_MAX:
            raise StreamError(f"{what}: corrupt zstd block header")
        pos += 1 if kind == 1 else size
        bound += _BLOCK_MAX if kind == 2 else size
        if last:
            break
    pos += 4 * checksum
    if pos > n:
        raise StreamError(f"{what}: zstd frame is truncated")
    return pos, bound


class FrameReader:
    """Decompress one zstd frame of exactly ``expected_size`` bytes into caller buffers, piece by piece.

    The frame is checked first (content size declared and equal to ``expected_size``, no trailing
    bytes, blocks that can hold that much); :meth:`readinto` then fills a buffer completely and
    :meth:`finish` checks that the frame ended exactly there.
    """

    def __init__(self, data, expected_size: int, what: str):
        self.what, self.expected = what, expected_size
        length, bound = frame_extent(data, what)
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as exc:
            raise StreamError(f"{what}: not a zstd frame ({exc})") from None
        if params.content_size != expected_size:
            raise StreamError(
                f"{what}: zstd frame declares {params.content_size} bytes, the header implies {expected_size}")
        if length != len(data):
            raise StreamError(f"{what}: {len(data) - length} bytes of trailing data after the zstd frame")
        if bound < expected_size:
            raise StreamError(f"{what}: zstd frame is too short for the {expected_size} bytes it declares")
        self._reader = zstandard.ZstdDecompressor().stream_reader(data, read_size=READ_SIZE, read_across_frames=False)
        self.done = 0

    def readinto(self, buf) -> None:
        """Fill the writable buffer ``buf`` with the next ``len(buf)`` decompressed bytes."""
        view = memoryview(buf).cast("B")
        pos = 0
        try:
            while pos < len(view):
                got = self._reader.readinto(view[pos:])
                if not got:
                    raise StreamError(f"{self.what}: zstd frame is truncated")
                pos += got
        except zstandard.ZstdError as exc:
            raise StreamError(f"{self.what}: corrupt zstd frame ({exc})") from None
        self.done += pos

    def finish(self) -> None:
        try:
            extra = self._reader.read(1)
        except zstandard.ZstdError as exc:
            raise StreamError(f"{self.what}: corrupt zstd frame ({exc})") from None
        if extra or self.done != self.expected:
            raise StreamError(f"{self.what}: zstd frame does not expand to exactly {self.expected} bytes")
        self._reader.close()


def decompress_into(data, out, what: str) -> None:
    """Decompress one zstd frame into the writable buffer ``out``, which it must fill exactly."""
    view = memoryview(out).cast("B")
    reader = FrameReader(data, len(view), what)
    reader.readinto(view)
    reader.finish()


def check_level(level) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= MAX_LEVEL:
        raise StreamError(f"zstd level must be an integer in [-7, {MAX_LEVEL}], got {level!r}")
    return level
