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
import sys
import threading
from typing import Sequence

import numpy as np

try:  # optional C fast path for gathers (squeezefmt/_decodec.c); gather_reference is the reference
    import squeezefmt._decodec as _decodec  # type: ignore[import-not-found]  # compiled: no import edge
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
        buf = _pool.take(nbytes) if populate else None
        if buf is None and populate and _POPULATE is not None:
            buf = mmap.mmap(-1, nbytes, flags=_POPULATE)
            _pool.offer(buf)
        elif buf is None:
            buf = mmap.mmap(-1, nbytes)  # page aligned, zero filled, unmapped when the array dies
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class _Pool:
    """Mapped buffers kept for reuse (off unless :func:`keep_buffers` gives it a budget).

    A fresh anonymous map costs a page fault (or, populated, a kernel zero-fill) per 4 KiB: on a
    virtual machine that is slower than decoding into it. Lazy inference decodes the same layers on
    every call, so it keeps its buffers: a kept map is handed out again (only to callers that
    overwrite every byte) once nothing references it any more: no array, view or TensorFlow tensor
    (CPython's reference count of the map object tells). Kept bytes never exceed the budget.
    """

    def __init__(self):
        self.max_bytes = 0
        self._maps: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @staticmethod
    def _idle(m: mmap.mmap) -> bool:
        # references: the list, this parameter, getrefcount's argument (callers index the list, so
        # they hold none); any array, view or DLPack tensor on the map adds one
        return sys.getrefcount(m) <= 3

    def take(self, nbytes: int) -> mmap.mmap | None:
        with self._lock:
            for i in range(len(self._maps)):
                if len(self._maps[i]) == nbytes and self._idle(self._maps[i]):
                    found = self._maps.pop(i)
                    self._maps.append(found)  # most recently used last
                    return found
        return None

    def offer(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(buf) > self.max_bytes:
                return
            kept = sum(len(m) for m in self._maps)
            i = 0
            while kept + len(buf) > self.max_bytes and i < len(self._maps):  # evict idle maps, LRU first
                if self._idle(self._maps[i]):
                    kept -= len(self._maps.pop(i))
                else:
                    i += 1
            if kept + len(buf) <= self.max_bytes:
                self._maps.append(buf)

    def kept_bytes(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._maps)


_pool = _Pool()


def keep_buffers(max_bytes: int) -> int:
    """Let decoders reuse up to ``max_bytes`` of mapped output buffers (process-wide; 0 turns reuse off,
    a smaller budget than the current one is ignored). Returns the budget in force."""
    with _pool._lock:
        _pool.max_bytes = max(_pool.max_bytes, int(max_bytes)) if max_bytes else 0
        if not _pool.max_bytes:
            _pool._maps.clear()
        return _pool.max_bytes


def kept_buffer_bytes() -> int:
    """Bytes of mapped buffers currently kept for reuse (see :func:`keep_buffers`)."""
    return _pool.kept_bytes()


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
