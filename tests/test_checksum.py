"""The fast CRC-32 (squeezefmt._crcfast) against zlib.crc32, the reference the format's checksum is defined by."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squeezefmt import checksum

_c = pytest.importorskip("squeezefmt._crcfast", reason="C extension _crcfast not built")


@settings(max_examples=400, deadline=None)
@given(data=st.binary(min_size=0, max_size=5000), offset=st.integers(0, 63), value=st.integers(0, 2**32 - 1))
def test_equals_zlib_at_every_length_and_alignment(data, offset, value):
    buf = memoryview(bytes(offset) + data)[offset:]   # the same bytes at another address alignment
    want = zlib.crc32(data, value)
    assert _c.crc32(buf, value) == want
    assert _c.crc32_tables(buf, value) == want
    assert checksum.crc32(buf, value) == want == checksum.reference_crc32(buf, value)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 191, 192, 255, 256, 1000, 65535, 65536,
                               65537, 1 << 20, (1 << 20) + 13])
def test_lengths_around_the_block_sizes(n):
    rng = np.random.default_rng(n)
    raw = rng.integers(0, 256, n + 32, dtype=np.uint8).tobytes()
    for start in (0, 1, 7, 8, 15, 16, 31):
        part = memoryview(raw)[start:start + n]
        assert _c.crc32(part) == zlib.crc32(part)
        assert _c.crc32(part, 0xFFFFFFFF) == zlib.crc32(part, 0xFFFFFFFF)


def test_chained_and_special_inputs():
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 256, k, dtype=np.uint8).tobytes() for k in (3, 200, 0, 4096, 77)]
    crc = 0
    for p in parts:
        crc = checksum.crc32(p, crc)
    assert crc == zlib.crc32(b"".join(parts))
    assert checksum.crc32(b"123456789") == 0xCBF43926       # the catalogue check value of CRC-32/ISO-HDLC
    assert checksum.crc32(bytes(1 << 16)) == zlib.crc32(bytes(1 << 16))
    assert checksum.crc32(b"\xff" * 1000) == zlib.crc32(b"\xff" * 1000)
    assert checksum.crc32(np.arange(1000, dtype=np.float32)) == zlib.crc32(np.arange(1000, dtype=np.float32))
