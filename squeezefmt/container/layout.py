"""Byte-level constants of the .sqz container and the fixed 32-byte preamble.

See spec/format.md (normative). Layout::

    0   8  magic        89 53 51 5A 0D 0A 1A 0A   ("\\x89SQZ\\r\\n\\x1a\\n", PNG's trick)
    8   2  major        uint16 LE
    10  2  minor        uint16 LE
    12  4  header_len   uint32 LE, bytes of UTF-8 JSON header
    16  8  file_len     uint64 LE, total file length
    24  4  header_crc   uint32 LE, CRC-32 (ISO-HDLC, zlib) of the header bytes
    28  4  preamble_crc uint32 LE, CRC-32 of bytes 0..27
    32  .. header JSON, then zero padding to a multiple of ALIGN, then the streams
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

from ..errors import ChecksumError, FormatError, TruncatedError, VersionError

MAGIC = b"\x89SQZ\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
PREAMBLE_SIZE = 32
ALIGN = 64

_PREAMBLE = struct.Struct("<8sHHIQII")


def align(offset: int) -> int:
    """``offset`` rounded up to the next multiple of ALIGN."""
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def crc32(data) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    header_len: int
    file_len: int
    header_crc: int

    def pack(self) -> bytes:
        head = _PREAMBLE.pack(MAGIC, self.major, self.minor, self.header_len, self.file_len, self.header_crc, 0)
        return head[:28] + struct.pack("<I", crc32(head[:28]))

    @property
    def data_start(self) -> int:
        return align(PREAMBLE_SIZE + self.header_len)


def parse_preamble(data: bytes) -> Preamble:
    """Check magic, versions and the preamble checksum; explain text-mode mangling when seen."""
    if len(data) < PREAMBLE_SIZE:
        if MAGIC.startswith(bytes(data[:8])) and len(data) > 0:
            raise TruncatedError(f"file is truncated: {len(data)} bytes, the preamble alone is {PREAMBLE_SIZE}")
        if len(data) == 0:
            raise TruncatedError("file is empty")
        raise FormatError("not a .sqz file (too short and wrong magic)")
    magic = bytes(data[:8])
    if magic != MAGIC:
        raise FormatError(_explain_bad_magic(magic))
    _, major, minor, header_len, file_len, header_crc, stored_crc = _PREAMBLE.unpack(bytes(data[:PREAMBLE_SIZE]))
    if crc32(bytes(data[:28])) != stored_crc:
        raise ChecksumError("preamble checksum mismatch: the first 32 bytes of the file are corrupt")
    if major != FORMAT_MAJOR:
        raise VersionError(
            f"unsupported .sqz format version {major}.{minor}: this reader supports major version "
            f"{FORMAT_MAJOR} (a newer squeezefmt may read it)"
        )
    return Preamble(major, minor, header_len, file_len, header_crc)


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
