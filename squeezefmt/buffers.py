"""Output buffers for decoded tensors: 64-byte aligned, and returned to the OS as soon as they die.

Decoders allocate their final arrays here. Two reasons:

* **Alignment.** TensorFlow wraps a numpy array without copying only when its data is aligned to
  64 bytes (Eigen's alignment with AVX-512); ``np.empty`` gives 16. An aligned buffer saves lazy
  inference one copy of every layer.
* **Memory that goes back.** Large buffers (``MMAP_MIN_BYTES`` and up) are anonymous memory maps: when
  the array dies the pages are unmapped at once. glibc's malloc raises its mmap threshold after the
  first large free, so later multi-megabyte ``np.empty`` blocks come from the heap and stay in the
  resident set after they are freed; a process that decodes one layer after another would keep a
  growing heap.
"""
from __future__ import annotations

import math
import mmap
from typing import Sequence

import numpy as np

from .errors import DecodeMemoryError

ALIGN = 64
#: Arrays at least this large get their own anonymous memory map.
MMAP_MIN_BYTES = 1 << 18


def empty_aligned(shape: Sequence[int] | int, dtype) -> np.ndarray:
    """An uninitialised, writeable, C-contiguous, ``ALIGN``-aligned array.

    When the memory cannot be had (``mmap`` fails with ENOMEM, numpy raises MemoryError) it raises
    :class:`~squeezefmt.errors.DecodeMemoryError` (a LimitError and a MemoryError) with the size;
    the reader adds the tensor name.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        if nbytes >= MMAP_MIN_BYTES:
            buf = mmap.mmap(-1, nbytes)  # page aligned, zero filled, unmapped when the array dies
            return np.frombuffer(buf, dtype=dtype).reshape(shape)
        raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    except (OSError, MemoryError, OverflowError) as exc:  # ENOMEM from mmap, or numpy's own
        raise DecodeMemoryError(f"cannot allocate {nbytes} bytes for the decoded tensor "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def zeros_aligned(shape: Sequence[int] | int, dtype) -> np.ndarray:
    """Like :func:`empty_aligned`, filled with zeros (free for memory-mapped buffers)."""
    out = empty_aligned(shape, dtype)
    if out.nbytes < MMAP_MIN_BYTES:
        out.fill(0)
    return out


#: Elements per step of :func:`gather` (numpy converts the indices of each step to intp).
GATHER_CHUNK = 1 << 16


def gather(table: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = table[idx]`` for indices already checked to lie in ``table``, in small steps.

    ``np.take`` converts all of ``idx`` to int64 first: 8 bytes per element of scratch, twice the
    float32 output. Steps of :data:`GATHER_CHUNK` keep that scratch at half a megabyte.
    """
    flat_idx, flat_out = idx.reshape(-1), out.reshape(-1)
    for start in range(0, flat_idx.size, GATHER_CHUNK):
        part = slice(start, start + GATHER_CHUNK)
        np.take(table, flat_idx[part], out=flat_out[part], mode="clip")
    return out


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """``a`` copied into an :func:`empty_aligned` buffer."""
    out = empty_aligned(a.shape, a.dtype)
    np.copyto(out, a, casting="no")
    return out
