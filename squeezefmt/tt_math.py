"""Tensor-Train matrices in numpy: TT-SVD, dense reconstruction, matvec on the cores, error bounds.

A TT-matrix ``W`` of shape ``(N, M)`` with ``N = n_1 ... n_d`` (the input factorisation) and
``M = m_1 ... m_d`` (the output factorisation) is a list of ``d`` cores ``G_k`` of shape
``(r_{k-1}, n_k, m_k, r_k)`` with ``r_0 = r_d = 1``::

    W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] @ G_2[:, i_2, j_2, :] @ ... @ G_d[:, i_d, j_d, :]

where the row index ``(i_1..i_d)`` and the column index ``(j_1..j_d)`` are read in C order
(``i_1`` most significant). This is t3f's convention for ``KerasDense`` (``y = x @ W``) and the
layout of Keras ``Dense`` kernels (``(input, units)``).

TT-SVD (Oseledets 2011, "Tensor-Train Decomposition", Algorithm 1) of such a matrix permutes it to
the ``d``-way tensor with modes ``n_k m_k`` and peels off one truncated SVD per bond. With
``tol = eps`` every bond is truncated at ``eps * ||W||_F / sqrt(d - 1)``, so the relative Frobenius
error is at most ``eps`` (Theorem 2.2); :func:`unfolding_bounds` gives, from numpy's SVD of the
unfoldings of the original matrix, the lower and upper bounds any reconstruction must respect.

Only numpy is imported here.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from .errors import CodecError

#: Most cores a TT-matrix may have (a decoder refuses more).
MAX_CORES = 32
#: Default number of cores chosen by :func:`auto_dims`.
DEFAULT_CORES = 4


# -- shapes -------------------------------------------------------------------------------------------

def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n >= 1`` in ascending order (``[]`` for 1)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise CodecError(f"cannot factor {n!r}: need a positive integer")
    n = int(n)
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1 if p == 2 else 2
    if n > 1:
        out.append(n)
    return out


def balanced_factors(n: int, d: int) -> list[int]:
    """``d`` integers whose product is ``n``, as equal as the prime factors allow.

    Largest primes go first into the currently smallest bin; the bins are then ordered large, small,
    large, small... (784, 4 -> [7, 4, 7, 4]; 625, 4 -> [5, 5, 5, 5]; 10, 4 -> [5, 1, 2, 1]), which keeps
    the products on both sides of every bond similar and so the attainable TT ranks balanced.
    """
    if d < 1:
        raise CodecError(f"need at least one factor, got d={d}")
    bins = [1] * d
    for p in sorted(prime_factors(n), reverse=True):
        i = min(range(d), key=lambda j: bins[j])
        bins[i] *= p
    ordered = sorted(bins, reverse=True)
    out, lo, hi = [], 0, d - 1
    while lo <= hi:
        out.append(ordered[lo])
        lo += 1
        if lo <= hi:
            out.append(ordered[hi])
            hi -= 1
    return out


def auto_dims(n_in: int, n_out: int, d: int | None = None) -> tuple[list[int], list[int]]:
    """A default factorisation ``(input_dims, output_dims)`` of an ``(n_in, n_out)`` matrix.

    ``d`` defaults to the larger count of prime factors of the two sizes, clipped to
    ``[2, DEFAULT_CORES]``; sizes with fewer prime factors than ``d`` are padded with 1s.
    (784, 625) -> ([7, 4, 7, 4], [5, 5, 5, 5]), the factorisation of the t3f MNIST example.
    """
    if d is None:
        d = max(2, min(DEFAULT_CORES, max(len(prime_factors(n_in)), len(prime_factors(n_out)))))
    if not 1 <= d <= MAX_CORES:
        raise CodecError(f"number of TT cores must be in [1, {MAX_CORES}], got {d}")
    ins = balanced_factors(n_in, d)
    # pair the largest output factors with the smallest input factors so that every core's
    # n_k * m_k, and with it every bond's rank bound, stays balanced (13x17 -> [13, 1] x [1, 17])
    outs = sorted(balanced_factors(n_out, d), reverse=True)
    order = sorted(range(d), key=lambda k: (ins[k], k))
    paired = [1] * d
    for k, v in zip(order, outs):
        paired[k] = v
    return ins, paired


def rank_bounds(input_dims: Sequence[int], output_dims: Sequence[int]) -> list[int]:
    """The largest useful rank at every bond: ``[1, b_1, ..., b_{d-1}, 1]`` with
    ``b_k = min(prod_{i<=k} n_i m_i, prod_{i>k} n_i m_i)`` (exact Python integers)."""
    sizes = [int(n) * int(m) for n, m in zip(input_dims, output_dims)]
    total = math.prod(sizes)
    out, left = [1], 1
    for s in sizes[:-1]:
        left *= s
        out.append(min(left, total // left))
    out.append(1)
    return out


def check_dims(input_dims: Sequence[int], output_dims: Sequence[int], shape: Sequence[int] | None = None) -> None:
    """Raise CodecError unless the factorisation is valid (and matches ``shape`` when given)."""
    if len(input_dims) != len(output_dims) or not 1 <= len(input_dims) <= MAX_CORES:
        raise CodecError(f"input_dims and output_dims must have the same length in [1, {MAX_CORES}], "
                         f"got {list(input_dims)} and {list(output_dims)}")
    for v in list(input_dims) + list(output_dims):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise CodecError(f"TT dims must be positive integers, got {v!r}")
    if shape is not None:
        want = (math.prod(int(v) for v in input_dims), math.prod(int(v) for v in output_dims))
        if tuple(int(s) for s in shape) != want:
            raise CodecError(f"TT factorisation {list(input_dims)} x {list(output_dims)} gives a {want[0]}x{want[1]} "
                             f"matrix, not {tuple(shape)}")


def core_shapes(input_dims: Sequence[int], output_dims: Sequence[int], ranks: Sequence[int]) -> list[tuple[int, ...]]:
    return [(int(ranks[k]), int(input_dims[k]), int(output_dims[k]), int(ranks[k + 1])) for k in range(len(input_dims))]


def tt_params(input_dims: Sequence[int], output_dims: Sequence[int], ranks: Sequence[int]) -> int:
    """Number of elements in all cores."""
    return sum(math.prod(s) for s in core_shapes(input_dims, output_dims, ranks))


def normalize_ranks(tt_rank, d: int) -> list[int]:
    """t3f's ``tt_rank`` argument (an int, or ``d + 1`` / ``d - 1`` ints) as the full list ``[1, ..., 1]``."""
    if isinstance(tt_rank, (int, np.integer)) and not isinstance(tt_rank, bool):
        ranks = [1] + [int(tt_rank)] * (d - 1) + [1]
    else:
        ranks = [int(r) for r in np.asarray(tt_rank).reshape(-1)]
        if len(ranks) == d - 1:
            ranks = [1] + ranks + [1]
        if len(ranks) != d + 1:
            raise CodecError(f"tt_rank must be an int or a list of {d + 1} ints, got {tt_rank!r}")
    if ranks[0] != 1 or ranks[-1] != 1 or any(r < 1 for r in ranks):
        raise CodecError(f"TT ranks must be positive with r_0 = r_d = 1, got {ranks}")
    return ranks


# -- the TT-matrix object -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class TTMatrix:
    """A TT-matrix given by its cores ``(r_{k-1}, n_k, m_k, r_k)``.

    It stands for the ``(N, M)`` matrix without forming it: ``shape``, ``dtype`` and ``nbytes`` are
    those of the dense matrix, ``full()`` forms it, ``rmatmul(x)`` computes ``x @ W`` on the cores.
    Wrapped in :class:`~squeezefmt.codecs.tt.TTCores`, it is stored as its cores (never densified).
    """

    cores: tuple[np.ndarray, ...]

    def __post_init__(self):
        cores = tuple(np.asarray(c) for c in self.cores)
        object.__setattr__(self, "cores", cores)
        if not 1 <= len(cores) <= MAX_CORES:
            raise CodecError(f"a TT-matrix needs 1..{MAX_CORES} cores, got {len(cores)}")
        dt = cores[0].dtype
        prev = 1
        for k, c in enumerate(cores):
            if c.ndim != 4 or c.dtype != dt or c.dtype.kind != "f":
                raise CodecError(f"TT core {k} must be a 4-D float array of one dtype, got {c.dtype} {c.shape}")
            if c.shape[0] != prev or min(c.shape) < 1:
                raise CodecError(f"TT core {k} has shape {c.shape}; its left rank must be {prev}")
            prev = c.shape[3]
        if prev != 1:
            raise CodecError(f"the last TT core must have right rank 1, got {prev}")

    @classmethod
    def from_dense(cls, matrix, input_dims=None, output_dims=None, *, max_rank=None, tol=None) -> "TTMatrix":
        return tt_svd(matrix, input_dims, output_dims, max_rank=max_rank, tol=tol).tt

    @property
    def input_dims(self) -> list[int]:
        return [int(c.shape[1]) for c in self.cores]

    @property
    def output_dims(self) -> list[int]:
        return [int(c.shape[2]) for c in self.cores]

    @property
    def ranks(self) -> list[int]:
        return [1] + [int(c.shape[3]) for c in self.cores]

    @property
    def shape(self) -> tuple[int, int]:
        return (math.prod(self.input_dims), math.prod(self.output_dims))

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return self.cores[0].dtype

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the dense matrix it stands for."""
        return self.size * self.dtype.itemsize

    @property
    def params(self) -> int:
        """Elements in all cores."""
        return sum(c.size for c in self.cores)

    def full(self, dtype=None) -> np.ndarray:
        return tt_full(self.cores, dtype=dtype)

    def rmatmul(self, x: np.ndarray) -> np.ndarray:
        """``x @ W`` for ``x`` of shape ``(..., N)``, computed on the cores."""
        return tt_rmatmul(x, self.cores)

    def __repr__(self) -> str:
        return (f"TTMatrix({self.input_dims} x {self.output_dims}, ranks={self.ranks}, "
                f"{self.params} params for a {self.shape[0]}x{self.shape[1]} {self.dtype} matrix)")


def _compute_dtype(dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def tt_full(cores: Sequence[np.ndarray], dtype=None) -> np.ndarray:
    """The dense ``(N, M)`` matrix of a TT-matrix.

    Contracts left to right in float32 (float64 for float64 cores). Every intermediate has at most
    ``N * M`` elements when each rank respects :func:`rank_bounds`.
    """
    cores = [np.asarray(c) for c in cores]
    out_dtype = np.dtype(dtype) if dtype is not None else cores[0].dtype
    work = _compute_dtype(cores[0].dtype)
    n = [c.shape[1] for c in cores]
    m = [c.shape[2] for c in cores]
    d = len(cores)
    res = cores[0].astype(work, copy=False).reshape(-1, cores[0].shape[3])
    for k in range(1, d):
        c = cores[k].astype(work, copy=False)
        res = (res @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[3])
    res = res.reshape([v for pair in zip(n, m) for v in pair])
    res = res.transpose(list(range(0, 2 * d, 2)) + list(range(1, 2 * d, 2)))
    return np.ascontiguousarray(res.reshape(math.prod(n), math.prod(m)), dtype=out_dtype)


def tt_rmatmul(x: np.ndarray, cores: Sequence[np.ndarray]) -> np.ndarray:
    """``x @ W`` for ``x`` of shape ``(..., N)`` without forming ``W`` (numpy reference of the TT layer)."""
    x = np.asarray(x)
    n = [c.shape[1] for c in cores]
    m = [c.shape[2] for c in cores]
    big_n = math.prod(n)
    if x.shape[-1] != big_n:
        raise CodecError(f"x has {x.shape[-1]} features, the TT-matrix has {big_n} rows")
    lead = x.shape[:-1]
    work = np.result_type(x.dtype, cores[0].dtype)
    # t: (P, r_{k-1}, n_k, rest): P runs over (batch, j_1..j_{k-1}), rest over (i_{k+1}..i_d)
    t = x.reshape(-1, 1, n[0], big_n // n[0]).astype(work, copy=False)
    for k, core in enumerate(cores):
        p, _, _, rest = t.shape
        out = np.tensordot(t, core.astype(work, copy=False), axes=([1, 2], [0, 1]))  # (P, rest, m, r)
        out = out.transpose(0, 2, 3, 1)                                                 # (P, m, r, rest)
        if k + 1 < len(cores):
            t = out.reshape(p * m[k], core.shape[3], n[k + 1], rest // n[k + 1])
        else:
            t = out
    return t.reshape(*lead, math.prod(m))


# -- TT-SVD -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class TTSVDResult:
    """A TT-SVD: the TT-matrix and what was discarded at every bond."""

    tt: TTMatrix
    norm: float                   # ||W||_F of the input
    discarded: list[float]        # Frobenius norm of the singular values dropped at each of the d-1 bonds

    @property
    def error(self) -> float:
        """||W - TT||_F (exact in exact arithmetic: the dropped parts are orthogonal)."""
        return math.sqrt(sum(e * e for e in self.discarded))

    @property
    def rel_error(self) -> float:
        return self.error / self.norm if self.norm > 0 else 0.0


def to_tt_tensor(matrix: np.ndarray, input_dims: Sequence[int], output_dims: Sequence[int]) -> np.ndarray:
    """The ``d``-way tensor with modes ``n_k m_k`` whose TT decomposition is the TT-matrix of ``matrix``."""
    d = len(input_dims)
    a = np.asarray(matrix).reshape(list(input_dims) + list(output_dims))
    perm = [p for k in range(d) for p in (k, d + k)]
    return a.transpose(perm).reshape([int(n) * int(m) for n, m in zip(input_dims, output_dims)])


def _keep(s: np.ndarray, delta: float, max_rank: int | None, bound: int) -> int:
    """Smallest rank whose discarded tail has norm <= delta, capped by max_rank and bound."""
    tail = np.sqrt(np.cumsum((s * s)[::-1])[::-1])  # tail[r] = ||s[r:]||
    r = len(s)
    if delta > 0:
        below = np.nonzero(tail <= delta)[0]
        r = int(below[0]) if below.size else len(s)
    r = max(1, r)
    if max_rank is not None:
        r = min(r, max_rank)
    return max(1, min(r, bound, len(s)))


def tt_svd(matrix, input_dims=None, output_dims=None, *, max_rank: int | None = None,
           tol: float | None = None) -> TTSVDResult:
    """TT-SVD of a dense ``(N, M)`` matrix (Oseledets 2011, Algorithm 1), in float64.

    ``max_rank`` caps every bond rank; ``tol`` is the target relative Frobenius error (each of the
    ``d - 1`` bonds drops at most ``tol * ||W||_F / sqrt(d - 1)``). With neither, the decomposition is
    exact (full ranks). Dims default to :func:`auto_dims`. Cores come back in the matrix's float dtype;
    they are left-orthonormal except the last, which carries the norm.
    """
    w = np.asarray(matrix)
    if w.ndim != 2 or w.dtype.kind != "f" or w.size == 0:
        raise CodecError(f"TT-SVD needs a non-empty 2-D float matrix, got {w.dtype} {w.shape}")
    if not np.all(np.isfinite(w)):
        raise CodecError("TT-SVD needs finite values (the matrix has NaN or inf)")
    if input_dims is None and output_dims is None:
        input_dims, output_dims = auto_dims(*w.shape)
    elif input_dims is None or output_dims is None:
        raise CodecError("give both input_dims and output_dims, or neither")
    input_dims, output_dims = [int(v) for v in input_dims], [int(v) for v in output_dims]
    check_dims(input_dims, output_dims, w.shape)
    if max_rank is not None and (not isinstance(max_rank, (int, np.integer)) or max_rank < 1):
        raise CodecError(f"max_rank must be a positive integer, got {max_rank!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 <= tol < 1 and math.isfinite(tol)):
        raise CodecError(f"tol must be a relative error in [0, 1), got {tol!r}")
    d = len(input_dims)
    bounds = rank_bounds(input_dims, output_dims)
    sizes = [n * m for n, m in zip(input_dims, output_dims)]
    c = to_tt_tensor(w.astype(np.float64), input_dims, output_dims)
    norm = float(np.linalg.norm(c))
    delta = (tol or 0.0) * norm / math.sqrt(d - 1) if d > 1 else 0.0
    cores, discarded, r_prev = [], [], 1
    for k in range(d - 1):
        c = c.reshape(r_prev * sizes[k], -1)
        u, s, vt = np.linalg.svd(c, full_matrices=False)
        r = _keep(s, delta, max_rank, bounds[k + 1])
        discarded.append(float(np.sqrt(np.sum(s[r:] ** 2))))
        cores.append(u[:, :r].reshape(r_prev, input_dims[k], output_dims[k], r))
        c = s[:r, None] * vt[:r]
        r_prev = r
    cores.append(c.reshape(r_prev, input_dims[-1], output_dims[-1], 1))
    out_dtype = w.dtype
    tt = TTMatrix(tuple(np.ascontiguousarray(core, dtype=out_dtype) for core in cores))
    return TTSVDResult(tt=tt, norm=norm, discarded=discarded)


def unfolding_bounds(matrix, input_dims: Sequence[int], output_dims: Sequence[int],
                     ranks: Sequence[int]) -> tuple[float, float, list[float]]:
    """Error bounds for any TT approximation of ``matrix`` with the given ``ranks``, from numpy's SVD.

    ``eps_k`` is the best rank-``r_k`` approximation error of the k-th unfolding of the original
    tensor (Eckart-Young, ``numpy.linalg.svd``). Any TT-matrix with these ranks has error
    ``>= max_k eps_k``; the TT-SVD's error is ``<= sqrt(sum_k eps_k^2)`` (Oseledets 2011, Thm 2.2).
    Returns ``(lower, upper, [eps_k])`` as absolute Frobenius norms.
    """
    t = to_tt_tensor(np.asarray(matrix, dtype=np.float64), input_dims, output_dims)
    sizes = [int(n) * int(m) for n, m in zip(input_dims, output_dims)]
    eps, left = [], 1
    for k in range(len(sizes) - 1):
        left *= sizes[k]
        s = np.linalg.svd(t.reshape(left, -1), compute_uv=False)
        eps.append(float(np.sqrt(np.sum(s[int(ranks[k + 1]):] ** 2))))
    if not eps:
        return 0.0, 0.0, []
    return max(eps), math.sqrt(sum(e * e for e in eps)), eps


def glorot_core_stddev(input_dims: Sequence[int], output_dims: Sequence[int], ranks: Sequence[int],
                       initializer: str = "glorot") -> float:
    """Std-dev of i.i.d. normal cores giving dense entries the variance of a Keras-style initializer.

    A dense entry is a sum of ``prod(ranks)`` products of ``d`` core entries, so with core std-dev
    ``s`` its variance is ``s^(2d) * prod(r_k)``; t3f picks ``s`` for the target std-dev
    ``sqrt(2 / (N + M))`` (glorot), ``sqrt(2 / N)`` (he) or ``sqrt(1 / N)`` (lecun).
    """
    n_in, n_out = math.prod(input_dims), math.prod(output_dims)
    target = {"glorot": 2.0 / (n_in + n_out), "he": 2.0 / n_in, "lecun": 1.0 / n_in}.get(initializer)
    if target is None:
        raise CodecError(f"unknown TT initializer {initializer!r}: choose glorot, he or lecun")
    d = len(input_dims)
    scale = float(np.prod(np.asarray(ranks, dtype=np.float64) ** (-1.0 / (2 * d))))
    return math.sqrt(target) ** (1.0 / d) * scale
