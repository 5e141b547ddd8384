"""Byte-level constants of the .sqz container and the fixed 40-byte preamble.

See spec/format.md (normative). Layout::

    0   8  magic         89 53 51 5A 0D 0A 1A 0A   ("\\x89SQZ\\r\\n\\x1a\\n", PNG's trick)
    8   2  major         uint16 LE
    10  2  minor         uint16 LE
    12  4  flags         uint32 LE; bit 0: the header is stored as one zstd frame; other bits zero
    16  4  header_len    uint32 LE, bytes of the stored header
    20  4  header_crc    uint32 LE, CRC-32 (ISO-HDLC, zlib) of the stored header bytes
    24  8  file_len      uint64 LE, total file length
    32  4  json_len      uint32 LE, bytes of the header JSON (= header_len when not compressed)
    36  4  preamble_crc  uint32 LE, CRC-32 of bytes 0..35
    40  .. stored header, then zero padding to a multiple of ALIGN, then the streams

Format 1.1 (flags bit 1, ``FLAG_COMPACT``; minor >= 1): the streams follow the stored header
directly, each at the next multiple of its own alignment (64 for streams a reader may memory-map,
1 otherwise), and the header uses the compact representation of :mod:`.compact`. Flags bit 2
(``FLAG_HEADER_DICT``, only with bit 0 and bit 1): the header frame was compressed with the
built-in header dictionary (:mod:`.header_dict`). A 1.0 reader rejects both bits as unknown flags.

Format 1.2 (flags bit 3, ``FLAG_SMALL``, with bit 1; minor >= 2), for containers whose streams total
at most ``SMALL_MAX_STREAM_BYTES``: the 4 bytes at offset 32 hold ``data_crc``, the CRC-32 of all
streams concatenated in file order, instead of ``json_len`` (which the stored header states anyway:
its own length, or the zstd frame's content size); tensor records carry no CRC and may leave their
name to the Keras shorthand; a header dictionary flag names dictionary 2. A 1.1 reader rejects bit 3.
"""
from __future__ import annotations

import dataclasses
import struct

from ..checksum import crc32 as _crc32
from ..errors import ChecksumError, FormatError, HeaderError, TruncatedError, VersionError

MAGIC = b"\x89SQZ\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
PREAMBLE_SIZE = 40
ALIGN = 64

#: flags bit 0: the header is one zstd frame whose content is the JSON.
FLAG_HEADER_ZSTD = 1
#: flags bit 1 (format 1.1): streams packed with per-stream alignment, compact header representation.
FLAG_COMPACT = 2
#: flags bit 2 (format 1.1): the zstd header frame uses the built-in raw-content dictionary.
FLAG_HEADER_DICT = 4
#: flags bit 3 (format 1.2): one CRC for all streams (preamble offset 32), tensor names may be derived.
FLAG_SMALL = 8
KNOWN_FLAGS = FLAG_HEADER_ZSTD | FLAG_COMPACT | FLAG_HEADER_DICT | FLAG_SMALL
#: Minor version of files that use FLAG_COMPACT.
COMPACT_MINOR = 1
#: Minor version of files that use FLAG_SMALL.
SMALL_MINOR = 2
#: Writers use format 1.2 only when the streams total at most this many bytes: then checking one
#: tensor means reading all of them, which costs less than a default readahead window (128 KiB).
SMALL_MAX_STREAM_BYTES = 64 << 10

_PREAMBLE = struct.Struct("<8sHHIIIQI")  # everything before preamble_crc (36 bytes)


def align(offset: int, to: int = ALIGN) -> int:
    """``offset`` rounded up to the next multiple of ``to`` (ALIGN by default)."""
    return (offset + to - 1) // to * to


def stream_offset(cursor: int, length: int, alignment: int, compact: bool) -> int:
    """Canonical offset of a stream that follows ``cursor`` (spec/format.md sections 5 and 10).

    1.0: the next multiple of 64, always. 1.1: the next multiple of the stream's alignment (1 or 64);
    an empty stream sits at the cursor.
    """
    if not compact:
        return align(cursor)
    return cursor if length == 0 else align(cursor, alignment)


def crc32(data) -> int:
    return _crc32(data)


@dataclasses.dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    flags: int
    header_len: int
    header_crc: int
    file_len: int
    json_len: int            # format 1.2: 0 until resolved from the stored header (resolve_json_len)
    data_crc: int | None = None  # format 1.2: CRC-32 of all streams concatenated (preamble offset 32)

    def pack(self) -> bytes:
        slot = self.data_crc if self.small else self.json_len
        head = _PREAMBLE.pack(MAGIC, self.major, self.minor, self.flags, self.header_len, self.header_crc,
                              self.file_len, slot)
        return head + struct.pack("<I", crc32(head))

    @property
    def small(self) -> bool:
        """Format 1.2: one CRC over all streams, in the preamble."""
        return bool(self.flags & FLAG_SMALL)

    @property
    def compact(self) -> bool:
        """Format 1.1 layout and header representation."""
        return bool(self.flags & FLAG_COMPACT)

    @property
    def data_start(self) -> int:
        """Where the stream area begins: right after the header (1.1), at the next 64 bytes (1.0)."""
        end = PREAMBLE_SIZE + self.header_len
        return end if self.compact else align(end)


def encode_header(json_bytes: bytes, compress_header: bool = True, compact: bool = False,
                  small: bool = False) -> tuple[int, bytes]:
    """``(flags, stored bytes)``: the JSON zstd-compressed when allowed and smaller.

    With ``compact`` (format 1.1) the frame compressed with the built-in header dictionary is
    used when it is smaller than the plain frame (ties: the plain frame); ``small`` (format 1.2,
    implies ``compact``) sets flag bit 3, and the dictionary is then dictionary 2.
    """
    from ..codecs.zstd_util import compress  # noqa: PLC0415 - codecs import the container lazily

    compact = compact or small
    base = (FLAG_COMPACT | (FLAG_SMALL if small else 0)) if compact else 0
    flags, stored = base, json_bytes
    if not compress_header:
        return flags, stored
    packed = compress(json_bytes, 19)
    if len(packed) < len(stored):
        flags, stored = base | FLAG_HEADER_ZSTD, packed
    if compact:
        from .header_dict import compress_with_dict  # noqa: PLC0415

        with_dict = compress_with_dict(json_bytes, version=2 if small else 1)
        if len(with_dict) < len(stored):
            flags, stored = base | FLAG_HEADER_ZSTD | FLAG_HEADER_DICT, with_dict
    return flags, stored


def build_preamble(json_bytes: bytes, file_len_of, compress_header: bool = True,
                   compact: bool = False, data_crc: int | None = None) -> tuple[Preamble, bytes]:
    """Preamble and stored header for ``json_bytes``; ``file_len_of(data_start)`` gives file_len.

    ``data_crc`` (format 1.2): the CRC-32 of all streams, stored in the preamble.
    """
    small = data_crc is not None
    flags, stored = encode_header(json_bytes, compress_header, compact, small)
    minor = SMALL_MINOR if small else COMPACT_MINOR if compact else FORMAT_MINOR
    pre = Preamble(FORMAT_MAJOR, minor, flags, len(stored), crc32(stored), 0, len(json_bytes), data_crc)
    return dataclasses.replace(pre, file_len=file_len_of(pre.data_start)), stored


def resolve_json_len(pre: Preamble, stored) -> Preamble:
    """Format 1.2: the preamble with ``json_len`` taken from the stored header (the zstd frame's
    declared content size, or the header's own length when it is not compressed)."""
    if not pre.small:
        return pre
    if not pre.flags & FLAG_HEADER_ZSTD:
        return dataclasses.replace(pre, json_len=pre.header_len)
    import zstandard  # noqa: PLC0415

    try:
        size = zstandard.get_frame_parameters(bytes(stored[:18])).content_size
    except zstandard.ZstdError as exc:
        raise HeaderError(f"compressed header: not a zstd frame ({exc})") from None
    if size == zstandard.CONTENTSIZE_UNKNOWN or size >= 2**32:
        raise HeaderError("compressed header: the zstd frame must declare its content size (below 4 GiB)")
    return dataclasses.replace(pre, json_len=size)


def parse_preamble(data: bytes) -> Preamble:
    """Check magic, versions, flags and the preamble checksum; explain text-mode mangling when seen."""
    if len(data) < PREAMBLE_SIZE:
        if len(data) == 0:
            raise TruncatedError("file is empty")
        if MAGIC.startswith(bytes(data[:8])) or bytes(data[:8]) == MAGIC:
            raise TruncatedError(f"file is truncated: {len(data)} bytes, the preamble alone is {PREAMBLE_SIZE}")
        raise FormatError("not a .sqz file (too short and wrong magic)")
    magic = bytes(data[:8])
    if magic != MAGIC:
        raise FormatError(_explain_bad_magic(magic))
    fields = _PREAMBLE.unpack(bytes(data[:36]))
    (stored_crc,) = struct.unpack("<I", bytes(data[36:40]))
    if crc32(bytes(data[:36])) != stored_crc:
        raise ChecksumError(f"preamble checksum mismatch: the first {PREAMBLE_SIZE} bytes of the file are corrupt")
    _, major, minor, flags, header_len, header_crc, file_len, slot = fields
    if major != FORMAT_MAJOR:
        raise VersionError(
            f"unsupported .sqz format version {major}.{minor}: this reader supports major version "
            f"{FORMAT_MAJOR} (a newer squeezefmt may read it)"
        )
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"unknown preamble flags 0x{flags:08x} (this reader knows 0x{KNOWN_FLAGS:08x})")
    if flags & FLAG_COMPACT and minor < COMPACT_MINOR:
        raise FormatError(f"preamble flag 0x{FLAG_COMPACT:x} (compact layout) needs format 1.{COMPACT_MINOR}, "
                          f"the file says {major}.{minor}")
    if flags & FLAG_HEADER_DICT and flags & (FLAG_COMPACT | FLAG_HEADER_ZSTD) != FLAG_COMPACT | FLAG_HEADER_ZSTD:
        raise FormatError("preamble flag 0x4 (header dictionary) needs flags 0x1 and 0x2")
    if flags & FLAG_SMALL:
        if not flags & FLAG_COMPACT or minor < SMALL_MINOR:
            raise FormatError(f"preamble flag 0x{FLAG_SMALL:x} (one data CRC) needs flag 0x{FLAG_COMPACT:x} "
                              f"and format 1.{SMALL_MINOR}, the file says {major}.{minor}")
        return Preamble(major, minor, flags, header_len, header_crc, file_len, 0, slot)
    return Preamble(major, minor, flags, header_len, header_crc, file_len, slot)


def _explain_bad_magic(magic: bytes) -> str:
    if magic[1:4] == b"SQZ":
        if magic[0] != 0x89:
            return "not a .sqz file: the high-bit byte of the magic was stripped (7-bit transfer?)"
        if b"\r\n" not in magic and b"\n" in magic[4:]:
            return "not a .sqz file: CRLF line endings were converted (file opened or sent in text mode?)"
        return "not a .sqz file: the magic is damaged (text-mode or encoding conversion?)"
    if magic.startswith(b"\x89HDF"):
        return "not a .sqz file: this is an HDF5 file (a Keras .h5?); use `squeezefmt pack` to convert it"
    return f"not a .sqz file (magic {magic.hex()} != {MAGIC.hex()})"
