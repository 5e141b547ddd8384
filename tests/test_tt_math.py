"""Tensor-Train maths (numpy only): index convention, TT-SVD against numpy's SVD bounds, matvec on cores."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from squeezefmt import tt_math
from squeezefmt.errors import CodecError
from squeezefmt.tt_math import TTMatrix


def random_tt(rng, n, m, ranks, dtype=np.float64):
    return TTMatrix(tuple(rng.normal(size=(ranks[k], n[k], m[k], ranks[k + 1])).astype(dtype) for k in range(len(n))))


def test_auto_dims_reproduces_the_t3f_example_and_balances():
    assert tt_math.auto_dims(784, 625) == ([7, 4, 7, 4], [5, 5, 5, 5])
    assert tt_math.auto_dims(1024, 1024) == ([8, 4, 8, 4], [4, 8, 4, 8])
    assert tt_math.auto_dims(13, 17) == ([13, 1], [1, 17])  # primes: a plain low-rank product U V
    n, m = tt_math.auto_dims(784, 10)
    assert math.prod(n) == 784 and math.prod(m) == 10 and len(n) == len(m) == 4
    assert tt_math.auto_dims(784, 625, d=2) == ([28, 28], [25, 25])
    with pytest.raises(CodecError):
        tt_math.auto_dims(10, 10, d=0)


def test_full_matches_the_definition_elementwise(rng):
    n, m, ranks = [2, 3, 2], [3, 1, 2], [1, 2, 3, 1]
    tt = random_tt(rng, n, m, ranks)
    w = tt.full()
    assert w.shape == (12, 6)
    for i in itertools.product(*map(range, n)):
        for j in itertools.product(*map(range, m)):
            prod = np.eye(1)
            for k, core in enumerate(tt.cores):
                prod = prod @ core[:, i[k], j[k], :]
            row = np.ravel_multi_index(i, n)
            col = np.ravel_multi_index(j, m)
            assert np.isclose(w[row, col], prod[0, 0])


def test_rmatmul_on_cores_equals_dense_product(rng):
    tt = random_tt(rng, [7, 4, 7, 4], [5, 5, 5, 5], [1, 4, 4, 4, 1], np.float32)
    x = rng.normal(size=(3, 2, 784)).astype(np.float32)
    want = x @ tt.full()
    # float32 sums of 784 terms with cancellation: the error scales with the largest outputs, and
    # its last bits depend on the BLAS kernel (numpy 2.x's OpenBLAS orders the sums differently)
    np.testing.assert_allclose(tt.rmatmul(x), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert tt.rmatmul(x).shape == (3, 2, 625)
    with pytest.raises(CodecError):
        tt.rmatmul(np.ones((2, 783), np.float32))


def test_exact_tt_svd_reconstructs(rng):
    w = rng.normal(size=(24, 30))
    res = tt_math.tt_svd(w, [2, 3, 4], [3, 5, 2])
    np.testing.assert_allclose(res.tt.full(), w, atol=1e-10)
    assert res.rel_error < 1e-12
    assert res.tt.ranks == tt_math.rank_bounds([2, 3, 4], [3, 5, 2])


def test_two_cores_is_eckart_young(rng):
    """d = 2: TT-SVD is the truncated SVD of the permuted matrix; its error is numpy's SVD bound exactly."""
    w = rng.normal(size=(20, 12))
    dims = ([4, 5], [3, 4])
    s = np.linalg.svd(tt_math.to_tt_tensor(w, *dims), compute_uv=False)
    for r in (1, 3, 7):
        res = tt_math.tt_svd(w, *dims, max_rank=r)
        assert res.tt.ranks == [1, r, 1]
        actual = np.linalg.norm(res.tt.full() - w)
        assert actual == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-9)
        lo, hi, _ = tt_math.unfolding_bounds(w, *dims, res.tt.ranks)
        assert lo == pytest.approx(hi) and actual == pytest.approx(lo, rel=1e-9)


@given(st.data())
def test_tt_svd_error_between_the_unfolding_bounds(data):
    """Oseledets 2011 Thm 2.2: max_k eps_k <= ||W - TT|| <= sqrt(sum_k eps_k^2), eps_k from numpy's SVD."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    d = data.draw(st.integers(2, 4))
    n = data.draw(st.lists(st.integers(1, 4), min_size=d, max_size=d))
    m = data.draw(st.lists(st.integers(1, 4), min_size=d, max_size=d))
    r = data.draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(math.prod(n), math.prod(m)))
    res = tt_math.tt_svd(w, n, m, max_rank=r)
    actual = float(np.linalg.norm(res.tt.full() - w))
    lo, hi, _ = tt_math.unfolding_bounds(w, n, m, res.tt.ranks)
    assert lo - 1e-9 * (1 + lo) <= actual <= hi + 1e-9 * (1 + hi)
    assert actual == pytest.approx(res.error, rel=1e-7, abs=1e-9)
    assert max(res.tt.ranks) <= r


@given(st.integers(0, 2**32 - 1), st.floats(0.01, 0.9))
def test_tolerance_is_guaranteed(seed, tol):
    rng = np.random.default_rng(seed)
    # a matrix with decaying spectrum in every unfolding
    w = random_tt(rng, [4, 3, 4], [3, 4, 2], [1, 6, 6, 1]).full() + 0.01 * rng.normal(size=(48, 24))
    res = tt_math.tt_svd(w, [4, 3, 4], [3, 4, 2], tol=tol)
    assert np.linalg.norm(res.tt.full() - w) <= tol * np.linalg.norm(w) * (1 + 1e-9)


def test_low_tt_rank_matrix_is_recovered_at_its_rank(rng):
    tt = random_tt(rng, [7, 4, 7, 4], [5, 5, 5, 5], [1, 3, 3, 3, 1])
    w = tt.full()
    res = tt_math.tt_svd(w, max_rank=3)
    assert res.tt.ranks == [1, 3, 3, 3, 1] and res.rel_error < 1e-10
    np.testing.assert_allclose(res.tt.full(), w, atol=1e-9 * np.abs(w).max())


def test_tt_svd_keeps_dtype_and_rejects_bad_input(rng):
    w = rng.normal(size=(16, 16)).astype(np.float32)
    assert tt_math.tt_svd(w, max_rank=2).tt.dtype == np.float32
    for bad in (np.ones(5), np.ones((4, 4), np.int32), np.full((4, 4), np.nan), np.ones((0, 3))):
        with pytest.raises(CodecError):
            tt_math.tt_svd(bad, max_rank=2)
    with pytest.raises(CodecError):
        tt_math.tt_svd(w, [4, 4], [4, 5], max_rank=2)
    with pytest.raises(CodecError):
        tt_math.tt_svd(w, max_rank=0)
    with pytest.raises(CodecError):
        tt_math.tt_svd(w, tol=1.5)


def test_ttmatrix_validates_the_chain():
    ok = (np.ones((1, 2, 2, 3), np.float32), np.ones((3, 2, 2, 1), np.float32))
    assert TTMatrix(ok).shape == (4, 4) and TTMatrix(ok).params == 24
    for bad in [(np.ones((2, 2, 2, 1), np.float32),), (np.ones((1, 2, 2, 3), np.float32),),
                (ok[0], np.ones((2, 2, 2, 1), np.float32)), (ok[0], ok[1].astype(np.float64)),
                (np.ones((1, 2, 2, 1), np.int32),), ()]:
        with pytest.raises(CodecError):
            TTMatrix(bad)


def test_glorot_core_stddev_gives_glorot_variance(rng):
    n, m, ranks = [7, 4, 7, 4], [5, 5, 5, 5], [1, 4, 4, 4, 1]
    std = tt_math.glorot_core_stddev(n, m, ranks)
    w = TTMatrix(tuple(rng.normal(0, std, (ranks[k], n[k], m[k], ranks[k + 1])) for k in range(4))).full()
    assert w.var() == pytest.approx(2.0 / (784 + 625), rel=0.35)  # heavy-tailed product: loose bound
    assert tt_math.glorot_core_stddev(n, m, ranks, "he") > std
    with pytest.raises(CodecError):
        tt_math.glorot_core_stddev(n, m, ranks, "orthogonal")


def test_normalize_ranks():
    assert tt_math.normalize_ranks(4, 4) == [1, 4, 4, 4, 1]
    assert tt_math.normalize_ranks([1, 2, 3, 1], 3) == [1, 2, 3, 1]
    assert tt_math.normalize_ranks([2, 3], 3) == [1, 2, 3, 1]
    for bad in ([2, 2, 2, 2], [1, 2, 3, 4, 1], [1, 0, 3, 1], 0):
        with pytest.raises(CodecError):
            tt_math.normalize_ranks(bad, 3)
