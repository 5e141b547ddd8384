"""The built-in zstd dictionaries for format 1.1 and 1.2 headers (preamble flag ``FLAG_HEADER_DICT``).

Headers of small models are mostly Keras boilerplate (layer configs with their default
initializers, regularizers, dtypes) that zstd cannot learn from one short header. A raw-content
dictionary holding typical header text lets the frame refer to it instead. The dictionary is frozen:
``header_dict_1.txt`` beside this module is byte-identical to ``spec/header-dict-1.txt``, whose
SHA-256 spec/format.md states (``tools/make_header_dict.py`` made it once; it is never regenerated).
Dictionary 2 (``header_dict_2.txt``, ``spec/header-dict-2.txt``, format 1.2 headers) is the same
reference header text in the 1.2 representation (derived names, no tensor CRCs), made from
dictionary 1 by ``tools/make_header_dict.py --dict 2``; frozen the same way.
A frame is compressed with it as a zstd *raw content* dictionary (``ZSTD_dct_rawContent``: no
dictionary id in the frame; C API ``ZSTD_CCtx_refPrefix`` / ``ZSTD_DCtx_refPrefix`` or a raw-content
``ZSTD_CDict``/``ZSTD_DDict``).
"""
from __future__ import annotations

import functools
import hashlib
import os

import zstandard

#: SHA-256 of the dictionary bytes, by dictionary number (also in spec/format.md).
HEADER_DICT_SHA256 = {
    1: "6590c5a2f6f4de7afa0013825c7c80ca678f71956e3bae0f48d4791f60b69a2e",
    2: "368f15f98c270f2403ac603e9c1efff0c56e45bce3155df9ac5116aee59e0f26",
}
_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=2)
def header_dict_bytes(version: int = 1) -> bytes:
    """The frozen dictionary ``version``: 1 for format 1.1 headers, 2 for format 1.2 headers."""
    path = os.path.join(_DIR, f"header_dict_{version}.txt")
    with open(path, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != HEADER_DICT_SHA256[version]:
        raise RuntimeError(f"{path} is damaged: its SHA-256 is not the frozen one")
    return data


@functools.lru_cache(maxsize=2)
def header_dict(version: int = 1) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(header_dict_bytes(version), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def compress_with_dict(json_bytes: bytes, level: int = 19, version: int = 1) -> bytes:
    """One zstd frame (content size recorded, no checksum, no dictionary id) using header dictionary ``version``."""
    cctx = zstandard.ZstdCompressor(level=level, dict_data=header_dict(version), write_content_size=True,
                                    write_checksum=False, write_dict_id=False, threads=0)
    return cctx.compress(json_bytes)
