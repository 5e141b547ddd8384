"""The built-in zstd dictionary for format 1.1 headers (preamble flag ``FLAG_HEADER_DICT``).

Headers of small models are mostly Keras boilerplate (layer configs with their default
initializers, regularizers, dtypes) that zstd cannot learn from one short header. A raw-content
dictionary holding typical header text lets the frame refer to it instead. The dictionary is frozen:
``header_dict_1.txt`` beside this module is byte-identical to ``spec/header-dict-1.txt``, whose
SHA-256 spec/format.md states (``tools/make_header_dict.py`` made it once; it is never regenerated).
A frame is compressed with it as a zstd *raw content* dictionary (``ZSTD_dct_rawContent``: no
dictionary id in the frame; C API ``ZSTD_CCtx_refPrefix`` / ``ZSTD_DCtx_refPrefix`` or a raw-content
``ZSTD_CDict``/``ZSTD_DDict``).
"""
from __future__ import annotations

import functools
import hashlib
import os

import zstandard

#: SHA-256 of the dictionary bytes (also in spec/format.md).
HEADER_DICT_SHA256 = "6590c5a2f6f4de7afa0013825c7c80ca678f71956e3bae0f48d4791f60b69a2e"
_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "header_dict_1.txt")


@functools.lru_cache(maxsize=1)
def header_dict_bytes() -> bytes:
    with open(_PATH, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != HEADER_DICT_SHA256:
        raise RuntimeError(f"{_PATH} is damaged: its SHA-256 is not the frozen one")
    return data


@functools.lru_cache(maxsize=1)
def header_dict() -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(header_dict_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def compress_with_dict(json_bytes: bytes, level: int = 19) -> bytes:
    """One zstd frame (content size recorded, no checksum, no dictionary id) using the header dictionary."""
    cctx = zstandard.ZstdCompressor(level=level, dict_data=header_dict(), write_content_size=True,
                                    write_checksum=False, write_dict_id=False, threads=0)
    return cctx.compress(json_bytes)
