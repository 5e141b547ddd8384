"""Decoder output buffers: aligned, writeable, memory-mapped when large; decoders return them."""
from __future__ import annotations

import mmap

import numpy as np
import pytest

import squeezefmt
from squeezefmt.buffers import ALIGN, MMAP_MIN_BYTES, aligned_copy, empty_aligned, zeros_aligned


@pytest.mark.parametrize("shape, dtype", [((), np.float32), (0, np.uint8), (7, np.float64), ((3, 5), np.int16),
                                          ((MMAP_MIN_BYTES // 4 + 1,), np.float32)])
def test_buffers_are_aligned_writeable_and_shaped(shape, dtype):
    a = empty_aligned(shape, dtype)
    assert (a.size == 0 or a.ctypes.data % ALIGN == 0) and a.flags.writeable and a.flags.c_contiguous
    assert a.shape == ((shape,) if isinstance(shape, int) else shape) and a.dtype == dtype
    z = zeros_aligned(shape, dtype)
    assert not z.any()
    src = np.arange(a.size, dtype=dtype).reshape(a.shape)
    c = aligned_copy(src)
    assert np.array_equal(c, src) and (c.size == 0 or c.ctypes.data % ALIGN == 0)


def owner(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


def test_large_buffers_are_their_own_memory_map():
    assert isinstance(owner(empty_aligned((MMAP_MIN_BYTES // 8, 2), np.float32)), mmap.mmap)
    assert not isinstance(owner(empty_aligned(16, np.uint8)), mmap.mmap)


def test_gather_matches_take_across_chunks():
    from squeezefmt.buffers import GATHER_CHUNK, gather

    rng = np.random.default_rng(1)
    table = rng.normal(size=37).astype(np.float32)
    idx = rng.integers(0, 37, size=(3, GATHER_CHUNK + 5)).astype(np.uint8)
    out = empty_aligned(idx.shape, np.float32)
    assert gather(table, idx, out) is out and np.array_equal(out, table[idx])


@pytest.mark.parametrize("preset", ["lossless", "raw", "fast", "deep-compression", "epr"])
def test_decoded_tensors_are_aligned(preset):
    rng = np.random.default_rng(0)
    big = rng.normal(size=(300, 300)).astype(np.float32)
    big[rng.random(big.shape) < 0.9] = 0  # the lossless preset picks the sparse codec for this one
    arrays = {"dense/kernel": rng.normal(size=(256, 300)).astype(np.float32), "sparse/kernel": big}
    with squeezefmt.open(squeezefmt.save(arrays, preset=preset)) as f:
        for name in arrays:
            a = f.tensor(name)
            assert a.ctypes.data % ALIGN == 0 and a.flags.writeable, (preset, name, f.info(name).codec)
