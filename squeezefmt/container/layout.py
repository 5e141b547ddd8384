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
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

from ..errors import ChecksumError, FormatError, HeaderError, TruncatedError, VersionError

MAGIC = b"\x89SQZ\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
PREAMBLE_SIZE = 40
ALIGN = 64

#: flags bit 0: the header is one zstd frame whose content is the JSON.
FLAG_HEADER_ZSTD = 1
KNOWN_FLAGS = FLAG_HEADER_ZSTD

_PREAMBLE = struct.Struct("<8sHHIIIQI")  # everything before preamble_crc (36 bytes)


def align(offset: int) -> int:
    """``offset`` rounded up to the next multiple of ALIGN."""
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    flags: int
    header_len: int
    header_crc: int
    file_len: int
    json_len: int

    def pack(self) -> bytes:
        head = _PREAMBLE.pack(MAGIC, self.major, self.minor, self.flags, self.header_len, self.header_crc,
                              self.file_len, self.json_len)
        return head + struct.pack("<I", crc32(head))

    @property
    def data_start(self) -> int:
        return align(PREAMBLE_SIZE + self.header_len)


def encode_header(json_bytes: bytes, compress_header: bool = True) -> tuple[int, bytes]:
    """``(flags, stored bytes)``: the JSON zstd-compressed when allowed and smaller."""
    from ..codecs.zstd_util import compress  # noqa: PLC0415 - codecs import the container lazily

    if not compress_header:
        return 0, json_bytes
    packed = compress(json_bytes, 19)
    if len(packed) < len(json_bytes):
        return FLAG_HEADER_ZSTD, packed
    return 0, json_bytes


def decode_header(stored: bytes, pre: Preamble) -> bytes:
    """The header JSON bytes from the stored header (after its CRC was checked)."""
    if not pre.flags & FLAG_HEADER_ZSTD:
        if pre.json_len != pre.header_len:
            raise HeaderError(f"uncompressed header: json_len {pre.json_len} != header_len {pre.header_len}")
        return stored
    from ..codecs.zstd_util import decompress_exact  # noqa: PLC0415
    from ..errors import StreamError  # noqa: PLC0415

    try:
        return decompress_exact(stored, pre.json_len, "compressed header")
    except StreamError as exc:
        raise HeaderError(str(exc)) from None


def build_preamble(json_bytes: bytes, file_len_of, compress_header: bool = True) -> tuple[Preamble, bytes]:
    """Preamble and stored header for ``json_bytes``; ``file_len_of(data_start)`` gives file_len."""
    flags, stored = encode_header(json_bytes, compress_header)
    pre = Preamble(FORMAT_MAJOR, FORMAT_MINOR, flags, len(stored), crc32(stored), 0, len(json_bytes))
    return dataclasses.replace(pre, file_len=file_len_of(pre.data_start)), stored


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
    _, major, minor, flags, header_len, header_crc, file_len, json_len = fields
    if major != FORMAT_MAJOR:
        raise VersionError(
            f"unsupported .sqz format version {major}.{minor}: this reader supports major version "
            f"{FORMAT_MAJOR} (a newer squeezefmt may read it)"
        )
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"unknown preamble flags 0x{flags:08x} (this reader knows 0x{KNOWN_FLAGS:08x})")
    return Preamble(major, minor, flags, header_len, header_crc, file_len, json_len)


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
