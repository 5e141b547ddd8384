"""``cluster``: a per-tensor codebook of ``2**bits`` shared values (plus exact zero) and Huffman-coded indices.

Two ways to get the codebook:

- **Exact extraction** (always tried first): when the tensor has at most ``2**bits`` distinct
  non-zero values (zeros -- pruned weights -- are extra entries, as in Deep Compression where the
  pruned weights are not part of the ``2**bits`` shared weights) -- a model stripped by tensorflow-model-optimization's ``cluster_weights``, a Deep
  Compression model after centroid fine-tuning, any int8 palette -- the distinct values themselves
  (bit patterns, so ``-0.0`` and NaN payloads survive) become the codebook and the round trip is
  exact. ``Cluster(exact=True)`` insists on this (and is then a lossless codec); it raises
  :class:`~squeezefmt.errors.CodecError` for a tensor with too many distinct values.
- **k-means** (float tensors): 1-D Lloyd iterations from a linear initialisation spanning
  ``[min, max]`` (Deep Compression's finding: it keeps the rare large weights) or from k-means++
  seeding (``init="kmeans++"``, deterministic ``seed``). With ``keep_zero`` (default) exact zeros
  (pruned weights) get their own centroid fixed at exactly 0, the other weights share
  ``2**bits`` centroids and never map to zero. The codebook is stored as
  ``codebook_dtype`` (float16 or float32).

Indices are canonical-Huffman coded (:mod:`squeezefmt.entropy.huffman`), so a skewed cluster
population costs less than ``bits`` per weight::

    >>> import numpy as np
    >>> from squeezefmt.codecs.cluster import Cluster
    >>> w = np.random.default_rng(0).normal(0, 0.05, (300, 100)).astype(np.float32)
    >>> enc = Cluster(bits=4).encode(w)            # 16 shared values, ~3.5 bits per weight

Stream layout: spec/codecs.md, section "cluster".
"""
from __future__ import annotations

import numpy as np

from ..buffers import empty_aligned, gather
from ..dtypes import FLOAT_NAMES, as_storage, dtype_name, from_storage, numpy_dtype
from ..entropy import huffman
from ..entropy.varint import read_uvarint, uvarint
from ..errors import CodecError, StreamError
from .base import Codec, Encoded, TensorSpec, expect_streams, lossy_stats
from .quantize import cast_float
from .index_coding import check_coder, decode_indices, encode_indices, is_huffman
from .registry import register

MAX_BITS = 16
INITS = ("linear", "kmeans++")
CODEBOOK_DTYPES = ("float16", "float32")
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


# -- distinct values ------------------------------------------------------------------------

def distinct_bits(array: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted distinct storage values, inverse indices) when at most ``limit`` exist, else None.

    Distinctness is by bit pattern (``-0.0`` differs from ``0.0``; every NaN payload is its own
    value). Floats are ordered by value (then bit pattern; NaNs last) so that neighbouring
    codebook entries are neighbouring weights. A sample is looked at first so that a dense float
    tensor is rejected without sorting all of it.
    """
    storage = as_storage(array).reshape(-1)
    width = storage.dtype.itemsize
    u = storage.view(_UINT[width]) if storage.dtype.kind != "b" else storage.view(np.uint8)
    if u.size > 8192 and np.unique(u[:4096]).size > limit:
        return None
    values, inverse = np.unique(u, return_inverse=True)
    if values.size > limit:
        return None
    name = dtype_name(array.dtype)
    if name in FLOAT_NAMES and values.size > 1:
        as_float = from_storage(values.view(storage.dtype), name).astype(np.float64)
        order = np.lexsort((values, np.isnan(as_float), np.nan_to_num(as_float)))
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        values, inverse = values[order], rank[inverse]
    return values.view(storage.dtype), inverse.reshape(-1)


def zero_patterns(array: np.ndarray) -> int:
    """How many zero bit patterns the tensor holds: 0 or 1 (``0``; ``+0.0`` / ``-0.0``), 2 for both zeros."""
    storage = as_storage(array).reshape(-1)
    width = storage.dtype.itemsize
    u = storage.view(_UINT[width]) if storage.dtype.kind != "b" else storage.view(np.uint8)
    count = int(np.any(u == 0))
    if dtype_name(array.dtype) in FLOAT_NAMES:
        count += int(np.any(u == _UINT[width](1 << (8 * width - 1))))
    return count


def distinct_count(array: np.ndarray, limit: int) -> int | None:
    """Number of distinct values (by bit pattern) if at most ``limit``, else None."""
    found = distinct_bits(array, limit)
    return None if found is None else int(found[0].size)


# -- 1-D k-means ----------------------------------------------------------------------------

def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", iterations: int = 100,
              seed: int = 0) -> np.ndarray:
    """Sorted centroids (float64, at most ``k``) of 1-D Lloyd k-means.

    The data are sorted once; each iteration finds the cluster boundaries with a binary search and
    the new means from prefix sums, O(k log n). Clusters that end up empty (a linear
    initialisation puts centroids in the gap that pruning leaves around zero) are re-seeded by
    splitting the clusters with the largest squared error at their means, and Lloyd runs again.
    Deterministic for a given ``seed``.
    """
    xs = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    n = xs.size
    if n == 0 or k <= 0:
        return np.zeros(0)
    uniq = np.unique(xs)
    if uniq.size <= k:
        return uniq
    if init == "linear":
        c = np.linspace(xs[0], xs[-1], k)
    elif init == "kmeans++":
        c = _kmeanspp(xs, k, seed)
    else:
        raise CodecError(f"cluster: unknown init {init!r}")
    csum = np.concatenate([[0.0], np.cumsum(xs)])
    csq = np.concatenate([[0.0], np.cumsum(xs * xs)])
    for _ in range(8):
        for _ in range(iterations):
            cuts = _cuts(xs, c)
            counts = np.diff(cuts)
            keep = counts > 0
            new = (csum[cuts[1:]] - csum[cuts[:-1]])[keep] / counts[keep]
            if new.size == c.size and np.array_equal(new, c):
                break
            c = new
        c = np.unique(c)
        if c.size >= k:
            break
        cuts = _cuts(xs, c)
        counts = np.diff(cuts)
        sums = csum[cuts[1:]] - csum[cuts[:-1]]
        sse = (csq[cuts[1:]] - csq[cuts[:-1]]) - sums * sums / np.maximum(counts, 1)
        spread = xs[np.maximum(cuts[1:] - 1, 0)] > xs[cuts[:-1].clip(max=n - 1)]
        order = [i for i in np.argsort(-sse, kind="stable") if spread[i]][: k - c.size]
        if not order:
            break
        extra = []
        for i in order:  # split cluster i at its mean into two halves; their means are new seeds
            lo, hi = cuts[i], cuts[i + 1]
            mid = int(np.searchsorted(xs[lo:hi], c[i], side="right")) + lo
            mid = min(max(mid, lo + 1), hi - 1)
            c[i] = (csum[mid] - csum[lo]) / (mid - lo)
            extra.append((csum[hi] - csum[mid]) / (hi - mid))
        c = np.unique(np.concatenate([c, extra]))
    return c


def _cuts(xs: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Segment boundaries of sorted ``xs`` for nearest-centroid assignment to sorted ``c``."""
    bounds = (c[1:] + c[:-1]) / 2
    return np.concatenate([[0], np.searchsorted(xs, bounds, side="left"), [xs.size]])


def _kmeanspp(xs: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding (D^2 sampling) on at most 65536 evenly spaced points of the sorted data."""
    rng = np.random.default_rng(seed)
    sample = xs if xs.size <= 65536 else xs[np.linspace(0, xs.size - 1, 65536).astype(np.int64)]
    centers = [sample[rng.integers(sample.size)]]
    d2 = (sample - centers[0]) ** 2
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            break
        nxt = sample[min(int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right")), sample.size - 1)]
        centers.append(nxt)
        d2 = np.minimum(d2, (sample - nxt) ** 2)
    return np.unique(np.array(centers))


def assign_nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest sorted centroid (ties go to the larger one)."""
    bounds = (centroids[1:].astype(np.float64) + centroids[:-1].astype(np.float64)) / 2
    return np.searchsorted(bounds, np.asarray(values, dtype=np.float64), side="right")


# -- the codec ------------------------------------------------------------------------------

@register
class Cluster(Codec):
    """Codebook (exact or k-means, ``2**bits`` shared values + exact zeros) + Huffman-coded indices."""

    codec_id = "cluster"
    version = 1
    lossless = False

    def __init__(self, bits: int = 4, init: str = "linear", codebook_dtype: str = "float32",
                 keep_zero: bool = True, exact: bool = False, iterations: int = 100, seed: int = 0,
                 coder: str = "huffman"):
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
            raise StreamError(f"cluster: bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
        if init not in INITS:
            raise StreamError(f"cluster: init must be one of {list(INITS)}, got {init!r}")
        if codebook_dtype not in CODEBOOK_DTYPES:
            raise StreamError(f"cluster: codebook_dtype must be one of {list(CODEBOOK_DTYPES)}, got {codebook_dtype!r}")
        for key, val in (("keep_zero", keep_zero), ("exact", exact)):
            if not isinstance(val, bool):
                raise StreamError(f"cluster: {key} must be a boolean, got {val!r}")
        for key, val, hi in (("iterations", iterations, 10_000), ("seed", seed, 2**32 - 1)):
            if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val <= hi:
                raise StreamError(f"cluster: {key} must be an integer in 0..{hi}, got {val!r}")
        self.bits, self.init, self.codebook_dtype = bits, init, codebook_dtype
        self.keep_zero, self.exact, self.iterations, self.seed = keep_zero, exact, iterations, seed
        self.lossless = exact  # instance attribute: the planner's never-expand rule applies when exact
        self.coder = check_coder(coder, "cluster")   # index coder (codecs/index_coding.py)

    def get_config(self):
        cfg = {"bits": self.bits, "init": self.init, "codebook_dtype": self.codebook_dtype}
        if not self.keep_zero:
            cfg["keep_zero"] = False
        if self.exact:
            cfg["exact"] = True
        if self.iterations != 100:
            cfg["iterations"] = self.iterations
        if self.coder != "huffman":      # absent for Huffman: files from before the option are unchanged
            cfg["coder"] = self.coder
        if self.seed:
            cfg["seed"] = self.seed
        return cfg

    # -- encoding ---------------------------------------------------------------------------

    def codebook(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """(codebook, flat indices, codebook dtype name) for ``array``, exact when possible.

        When the codebook dtype is the tensor's own, the codebook holds storage values (bit
        patterns); otherwise it is a float16/float32 array of centroids.
        """
        name = dtype_name(array.dtype)
        limit = min((1 << self.bits) + zero_patterns(array), 1 << MAX_BITS)
        found = distinct_bits(array, limit)
        if found is not None:
            values, inverse = found
            return values, inverse, name
        if self.exact:
            raise CodecError(f"cluster: exact=True but the tensor has more than {1 << self.bits} distinct non-zero values")
        if name not in FLOAT_NAMES:
            raise CodecError(f"cluster: a {name} tensor with more than {1 << self.bits} distinct values "
                             "cannot be clustered (k-means needs floats)")
        x = np.asarray(array, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise CodecError("cluster: k-means needs finite values (the tensor has NaN or inf)")
        book_name = "float16" if name == "float16" else self.codebook_dtype
        zero = (x == 0) if self.keep_zero else np.zeros(x.size, bool)
        has_zero = bool(zero.any())
        nz = x[~zero]
        centroids = kmeans_1d(nz, min(1 << self.bits, (1 << MAX_BITS) - int(has_zero)), self.init, self.iterations,
                              self.seed)
        for book_name in dict.fromkeys([book_name, "float32"]):   # float16 overflow/underflow: use float32
            with np.errstate(over="ignore"):
                book = centroids.astype(numpy_dtype(book_name))
            book = np.unique(book[book != 0] if has_zero else book)   # rounding may merge centroids
            if np.all(np.isfinite(book)) and (book.size or not nz.size):
                break
        else:
            raise CodecError("cluster: the centroids are not representable as float32")
        if not nz.size:
            return np.zeros(1, numpy_dtype(book_name)), np.zeros(x.size, np.int64), book_name
        idx = assign_nearest(nz, book)
        used = np.bincount(idx, minlength=book.size) > 0           # drop centroids nobody chose
        book, idx = book[used], (np.cumsum(used) - 1)[idx]
        if has_zero:
            zpos = int(np.searchsorted(book, 0.0))
            book = np.insert(book, zpos, 0)
            full = np.full(x.size, zpos, dtype=np.int64)
            full[~zero] = np.where(idx >= zpos, idx + 1, idx)
            idx = full
        if book_name == name:
            book = as_storage(book)
        return book, idx, book_name

    def encode(self, array: np.ndarray) -> Encoded:
        array = np.asarray(array)
        name = dtype_name(array.dtype)
        if array.size == 0:
            return Encoded(streams=[uvarint(0)], side={"codebook": name})
        book, idx, book_name = self.codebook(array)
        k = int(book.size)
        book_bytes = book.astype(book.dtype.newbyteorder("<")).tobytes()
        payload, coder_side = encode_indices(idx.astype(np.uint16 if k > 256 else np.uint8), k, self.coder)
        enc = Encoded(streams=[uvarint(k) + book_bytes + payload], side={"codebook": book_name, **coder_side})
        decoded = _gather(book, idx.reshape(array.shape), book_name, name)
        if not np.array_equal(as_storage(decoded).view(np.uint8), as_storage(array).view(np.uint8)):
            if self.exact:  # pragma: no cover - distinct_bits guarantees this
                raise CodecError("cluster: exact codebook did not reproduce the tensor")
            enc.stats = lossy_stats(array, decoded)
        elif not self.exact:
            enc.stats = {"max_abs_err": 0.0, "rel_rms_err": 0.0}
        return enc

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        book_name = side.get("codebook") if isinstance(side, dict) else None
        allowed = {spec.dtype} | (set(CODEBOOK_DTYPES) if spec.dtype in FLOAT_NAMES else set())
        if not isinstance(book_name, str) or book_name not in allowed:
            raise StreamError(f"cluster: side 'codebook' must be one of {sorted(allowed)}, got {book_name!r}")
        data = memoryview(streams[0])
        n = spec.size
        k, pos = read_uvarint(data, 0, "cluster codebook size", min(n, 1 << MAX_BITS))
        if n and k == 0:
            raise StreamError("cluster: empty codebook for a non-empty tensor")
        storage = numpy_dtype(book_name, storage=True)
        end = pos + k * storage.itemsize
        if len(data) < end:
            raise StreamError(f"cluster: stream too short for a codebook of {k} entries")
        book = np.frombuffer(data[pos:end], dtype=storage.newbyteorder("<")).astype(storage)
        if n == 0:
            if end != len(data):
                raise StreamError("cluster: trailing bytes after the codebook of an empty tensor")
            return from_storage(np.zeros(spec.shape, numpy_dtype(spec.dtype, storage=True)), spec.dtype)
        if book_name != spec.dtype:
            book = from_storage(book, book_name)
        if is_huffman(side) and (book_name == spec.dtype or spec.dtype == "float32"):
            values = np.ascontiguousarray(book, dtype=np.float32) if book_name != spec.dtype else book
            out = empty_aligned(spec.shape, values.dtype, populate=True)
            if huffman.decode_gather(data[end:], values, out):  # one pass, no index array (C)
                return from_storage(out, spec.dtype) if book_name == spec.dtype else out
        idx = decode_indices(data[end:], n, k, side, np.uint8 if k <= 256 else np.uint16)
        if int(idx.max()) >= k:
            raise StreamError(f"cluster: index {int(idx.max())} outside the codebook of {k} entries")
        return _gather(book, idx.reshape(spec.shape), book_name, spec.dtype)


def _gather(book: np.ndarray, idx: np.ndarray, book_name: str, out_name: str) -> np.ndarray:
    """``book[idx]`` as the tensor's dtype: bit patterns when the codebook has the tensor's dtype
    (``book`` then holds storage values), else float centroids cast through float32."""
    if book_name != out_name:
        if out_name != "float32":
            return cast_float(np.asarray(book, dtype=np.float32)[idx], out_name)
        book = np.asarray(book, dtype=np.float32)
    out = empty_aligned(idx.shape, book.dtype, populate=True)
    gather(book, idx, out)  # indices checked by the caller; straight into an aligned buffer
    return from_storage(out, out_name) if book_name == out_name else out


def bits_per_weight(encoded: Encoded, count: int) -> float:
    """Stream bits per tensor element (codebook and table included)."""
    return 8.0 * sum(len(s) for s in encoded.streams) / max(count, 1)


def index_entropy(indices: np.ndarray) -> float:
    """Empirical order-0 entropy of ``indices`` in bits per symbol."""
    counts = np.bincount(np.asarray(indices).reshape(-1))
    p = counts[counts > 0] / max(int(counts.sum()), 1)
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


__all__ = ["Cluster", "kmeans_1d", "distinct_bits", "distinct_count", "assign_nearest", "uvarint",
           "read_uvarint", "bits_per_weight", "index_entropy"]
