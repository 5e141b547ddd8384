"""Decoding layers on demand with a bounded LRU cache, and accounting for every decoded byte.

:class:`LayerCache` is what lazy inference (``squeezefmt.keras.load(path, lazy=True)``) decodes
through, and is usable on its own with numpy alone::

    with squeezefmt.open("model.sqz") as f:
        cache = LayerCache(f, max_bytes=64 << 20)   # keep up to 64 MiB of decoded layers
        w = cache.get("dense_3")                    # list of arrays, the layer's weight order
        cache.stats()                               # decodes, hits, live/peak decoded bytes

Policy: each decoded layer is kept (least recently used first out) while the total of kept layers
fits in ``max_bytes``; a layer larger than the budget is never kept. ``max_bytes=0`` (the default)
keeps nothing: every ``get`` decodes, and a layer's memory is gone as soon as its last user drops it.

Accounting: every array handed out is tracked with a finalizer, so ``stats()["live_bytes"]`` is the
decoded bytes still alive anywhere in the process (in the cache, in a caller, or aliased by a
TensorFlow tensor) and ``peak_live_bytes`` its maximum. Arrays are 64-byte aligned so that
TensorFlow can alias them instead of copying (it copies unaligned numpy buffers).

Treat returned arrays as read-only: with a cache, the same arrays are returned again.
"""
from __future__ import annotations

import collections
import threading
import weakref
from typing import Callable, Sequence

import numpy as np

from ..buffers import ALIGN, aligned_copy


def aligned(a: np.ndarray, align: int = ALIGN) -> np.ndarray:
    """``a`` itself when it is C-contiguous, writeable and ``align``-byte aligned, else an aligned copy."""
    if a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % align == 0:
        return a
    return aligned_copy(a)


class LayerCache:
    """Decode layers (or any named group of tensors) of an open :class:`~squeezefmt.SqzFile` on demand.

    ``max_bytes``: decoded bytes to keep between calls (LRU by layer); 0 keeps nothing.
    ``fetch(key)``: how one tensor is decoded (default ``f.tensor``); a key that is not a tensor of
    ``f`` names a derived array, e.g. a TT core ``"<tensor>#core_0"`` (its pages are released
    under the tensor before the ``"#"``).
    ``release_pages``: after decoding, tell the OS the layer's file pages are not needed (for a
    memory-mapped path this keeps the compressed file out of the resident set, see
    :meth:`SqzFile.release`). ``on_decode(key, nbytes)`` is called after every decode (not on hits).
    Thread-safe; decodes are serialised, so concurrent callers never hold two decodes in flight.
    """

    def __init__(self, f, max_bytes: int = 0, *, fetch: Callable[[str], np.ndarray] | None = None,
                 release_pages: bool = True, on_decode: Callable[[str, int], None] | None = None):
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
        self._f = f
        self._fetch = fetch if fetch is not None else f.tensor
        self.max_bytes = max_bytes
        self.release_pages = release_pages
        self.on_decode = on_decode
        self._lock = threading.RLock()
        self._lru: collections.OrderedDict[str, tuple[list[np.ndarray], int]] = collections.OrderedDict()
        self._cached_bytes = 0
        self._live_bytes = 0
        self._peak_live_bytes = 0
        self._decodes = 0
        self._hits = 0
        self._decoded_bytes = 0

    # -- decoding ----------------------------------------------------------------------------------
    def get(self, layer: str) -> list[np.ndarray]:
        """The decoded tensors of layer ``layer`` (see ``SqzFile.layer_names``), in its weight order."""
        return self.get_tensors(layer, self._f.layer_info(layer).tensors)

    def get_tensors(self, key: str, tensors: Sequence[str]) -> list[np.ndarray]:
        """The decoded ``tensors`` (in that order), cached under ``key``."""
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                self._hits += 1
                return list(hit[0])
            arrays, nbytes = [], 0
            for name in tensors:
                a = aligned(self._fetch(name))
                self._track(a)
                arrays.append(a)
                nbytes += a.nbytes
            if self.release_pages:
                for name in {n if n in self._f else n.split("#", 1)[0] for n in tensors}:
                    if name in self._f:
                        self._f.release(name)
            self._decodes += 1
            self._decoded_bytes += nbytes
            if 0 < nbytes <= self.max_bytes:
                self._lru[key] = (arrays, nbytes)
                self._cached_bytes += nbytes
                while self._cached_bytes > self.max_bytes:
                    _, (_, old) = self._lru.popitem(last=False)
                    self._cached_bytes -= old
            if self.on_decode is not None:
                self.on_decode(key, nbytes)
            return list(arrays)

    def _track(self, a: np.ndarray) -> None:
        n = a.nbytes
        with self._lock:
            self._live_bytes += n
            self._peak_live_bytes = max(self._peak_live_bytes, self._live_bytes)
        weakref.finalize(a, self._untrack, n)

    def _untrack(self, n: int) -> None:
        with self._lock:
            self._live_bytes -= n

    # -- policy and statistics ---------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every cached layer."""
        with self._lock:
            self._lru.clear()
            self._cached_bytes = 0

    def cached(self) -> list[str]:
        """Keys currently cached, least recently used first."""
        with self._lock:
            return list(self._lru)

    def reset_peak(self) -> None:
        with self._lock:
            self._peak_live_bytes = self._live_bytes

    def stats(self) -> dict[str, int]:
        """``decodes``, ``hits``, ``decoded_bytes`` (total ever), ``cached_bytes``, ``live_bytes``, ``peak_live_bytes``."""
        with self._lock:
            return {
                "decodes": self._decodes, "hits": self._hits, "decoded_bytes": self._decoded_bytes,
                "cached_bytes": self._cached_bytes, "live_bytes": self._live_bytes,
                "peak_live_bytes": self._peak_live_bytes, "max_bytes": self.max_bytes,
            }
