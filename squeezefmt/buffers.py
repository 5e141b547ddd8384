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

import mmap
from typing import Sequence

import numpy as np

try:  # optional C fast path for gathers (squeezefmt/_decodec.c); gather_reference is the reference
    from . import _decodec  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _decodec = None

ALIGN = 64
#: Arrays at least this large get their own anonymous memory map.
MMAP_MIN_BYTES = 1 << 18


#: mmap flags of a buffer the caller fills completely at once (pages faulted in by one system call).
_POPULATE = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE) if hasattr(mmap, "MAP_POPULATE") else None


def empty_aligned(shape: Sequence[int] | int, dtype, *, populate: bool = False) -> np.ndarray:
    """An uninitialised, writeable, C-contiguous, ``ALIGN``-aligned array.

    ``populate=True``: the caller is about to write every byte (its input has been checked to fill
    the array), so a large buffer's pages are mapped in one system call (Linux ``MAP_POPULATE``)
    instead of one page fault per 4 KiB, which costs as much as the decode itself here.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes >= MMAP_MIN_BYTES:
        if populate and _POPULATE is not None:
            buf = mmap.mmap(-1, nbytes, flags=_POPULATE)
        else:
            buf = mmap.mmap(-1, nbytes)  # page aligned, zero filled, unmapped when the array dies
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
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
    """``out[...] = table[idx]`` for indices already checked to lie in ``table``.

    The C loop (uint8/uint16 indices, 1-8 byte items) writes straight into ``out`` with no scratch;
    otherwise :func:`gather_reference`.
    """
    if (_decodec is not None and idx.dtype in (np.uint8, np.uint16) and table.dtype.itemsize == out.dtype.itemsize
            and table.flags.c_contiguous and idx.flags.c_contiguous and out.flags.c_contiguous
            and out.dtype.itemsize in (1, 2, 4, 8)):
        bad = _decodec.gather(table.view(_UINT_OF[out.dtype.itemsize]), idx.reshape(-1),
                              out.reshape(-1).view(_UINT_OF[out.dtype.itemsize]))
        if bad:
            raise IndexError(f"gather: {bad} indices outside a table of {table.size} entries")
        return out
    return gather_reference(table, idx, out)


_UINT_OF = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def gather_reference(table: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`gather`, in steps of :data:`GATHER_CHUNK` elements.

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
    out = empty_aligned(a.shape, a.dtype, populate=True)
    np.copyto(out, a, casting="no")
    return out
