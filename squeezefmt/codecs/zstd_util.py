"""Bounded zstd helpers shared by the codecs.

Decompression always goes through :func:`check_frame` first: the stream must be exactly one zstd
frame (its length computed from the block headers, without decompressing) that declares its
content size, and that size must be the one the header implies. :func:`decompress_into` then
decompresses straight into the caller's output buffer in steps, so a lying or corrupt frame makes
the reader touch no more memory than it has actually decoded, and never more than the declared
tensor; :class:`ChunkReader` hands out the content in pieces of bounded size.
"""
from __future__ import annotations

import zstandard

from ..errors import StreamError

MAX_LEVEL = 22
#: Bytes decompressed per step (bounds the scratch of chunked decoders).
CHUNK = 1 << 20
_MAGIC = 0xFD2FB528


def compress(data, level: int) -> bytes:
    """One zstd frame with its content size recorded, no dictionary, single-threaded (deterministic)."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, threads=0)
    return cctx.compress(data)


def frame_length(data, what: str) -> int:
    """Length in bytes of the zstd frame at the start of ``data``, from its block headers (RFC 8878)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < 5 or int.from_bytes(mv[:4], "little") != _MAGIC:
        raise StreamError(f"{what}: not a zstd frame")
    fhd = mv[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    if fhd & 0x08:
        raise StreamError(f"{what}: zstd frame header sets a reserved bit")
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
    while True:
        if pos + 3 > n:
            raise StreamError(f"{what}: zstd frame is truncated")
        header = int.from_bytes(mv[pos:pos + 3], "little")
        last, btype, size = header & 1, (header >> 1) & 3, header >> 3
        if btype == 3:
            raise StreamError(f"{what}: corrupt zstd frame (reserved block type)")
        pos += 3 + (1 if btype == 1 else size)
        if last:
            break
    pos += 4 * checksum
    if pos > n:
        raise StreamError(f"{what}: zstd frame is truncated")
    return pos


def check_frame(data, expected_size: int, what: str) -> None:
    """``data`` is exactly one zstd frame declaring ``expected_size`` content bytes, else StreamError."""
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise StreamError(f"{what}: not a zstd frame ({exc})") from None
    if params.content_size != expected_size:
        raise StreamError(
            f"{what}: zstd frame declares {params.content_size} bytes, the header implies {expected_size}"
        )
    if params.dict_id:
        raise StreamError(f"{what}: zstd frame needs a dictionary")
    end = frame_length(data, what)
    if end != len(data):
        raise StreamError(f"{what}: {len(data) - end} bytes of trailing data after the zstd frame")


class ChunkReader:
    """The content of one checked zstd frame, read in pieces (``read_into``); StreamError on corruption."""

    def __init__(self, data, expected_size: int, what: str):
        check_frame(data, expected_size, what)
        self._reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False)
        self._left = expected_size
        self._what = what

    def read_into(self, out) -> None:
        """Fill the writable byte buffer ``out`` completely with the next ``len(out)`` content bytes."""
        view = memoryview(out).cast("B")
        pos, n = 0, len(view)
        try:
            while pos < n:
                got = self._reader.readinto(view[pos:min(n, pos + CHUNK)])
                if got <= 0:
                    raise StreamError(f"{self._what}: zstd frame ended after {pos} of {n} bytes")
                pos += got
        except zstandard.ZstdError as exc:
            raise StreamError(f"{self._what}: corrupt zstd frame ({exc})") from None
        self._left -= n

    def finish(self) -> None:
        """Check that the frame holds nothing beyond what was read."""
        try:
            extra = self._reader.read(1)
        except zstandard.ZstdError as exc:
            raise StreamError(f"{self._what}: corrupt zstd frame ({exc})") from None
        if self._left or extra:
            raise StreamError(f"{self._what}: zstd frame size differs from the declared size")


def decompress_into(data, out, what: str) -> None:
    """Decompress one zstd frame that must expand to exactly ``len(out)`` bytes into ``out``."""
    reader = ChunkReader(data, memoryview(out).nbytes, what)
    reader.read_into(out)
    reader.finish()


def decompress_exact(data, expected_size: int, what: str) -> bytes:
    """Decompress one zstd frame that must expand to exactly ``expected_size`` bytes."""
    check_frame(data, expected_size, what)  # before allocating what the frame claims
    out = bytearray(expected_size)
    decompress_into(data, out, what)
    return out


def check_level(level) -> int:
    if not isinstance(level, int) or isinstance(level, bool) or not -7 <= level <= MAX_LEVEL:
        raise StreamError(f"zstd level must be an integer in [-7, {MAX_LEVEL}], got {level!r}")
    return level
