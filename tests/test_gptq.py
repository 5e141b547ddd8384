"""GPTQ rounding (squeezefmt.search.gptq) and its step backend: invariants, a naive reference, the container."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import squeezefmt
from squeezefmt.errors import SqueezeError
from squeezefmt.search.backend import CabacStepBackend, GPTQStepBackend
from squeezefmt.search.gptq import (gptq_indices, hessian_order, inverse_factor, output_error, round_dead_zone,
                                    row_dead_zones)


def _problem(seed, d=48, n=12, rows=600):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    X = np.maximum(rng.normal(size=(rows, d)) @ mix, 0.0)   # correlated, non-negative (post-ReLU) inputs
    return rng.normal(0, 0.05, (d, n)), X.T @ X


def _naive(W, H, step, zones_of=lambda U: None, damp=0.01):
    """GPTQ written out from its definition: no blocks, no lazy updates (the reference)."""
    order = hessian_order(H)
    U = inverse_factor(H[np.ix_(order, order)], damp)
    zones = row_dead_zones(U, 0.0, 0.0) if zones_of(U) is None else zones_of(U)
    work = np.asarray(W, np.float64)[order] / step
    q = np.zeros(work.shape, np.int64)
    for i in range(work.shape[0]):
        q[i] = round_dead_zone(work[i], zones[i])
        err = (work[i] - q[i]) / U[i, i]
        for j in range(i + 1, work.shape[0]):
            work[j] -= U[i, j] * err
    out = np.empty_like(q)
    out[order] = q
    return out


@pytest.mark.parametrize("seed", range(4))
def test_gptq_beats_plain_rounding_in_output_error(seed):
    W, H = _problem(seed)
    for step in (0.01, 0.04, 0.1):
        q = gptq_indices(W, H, step)
        rtn = round_dead_zone(W / step, 0.0)
        assert output_error(W, q * step, H) < 0.8 * output_error(W, rtn * step, H)


@pytest.mark.parametrize("block", [1, 5, 128])
def test_blocked_lazy_updates_equal_the_naive_reference(block):
    W, H = _problem(7)
    assert np.array_equal(gptq_indices(W, H, 0.03, block=block), _naive(W, H, 0.03))


def test_uncorrelated_inputs_reduce_to_plain_rounding():
    rng = np.random.default_rng(1)
    W = rng.normal(0, 0.05, (30, 7))
    H = np.diag(rng.uniform(0.5, 2.0, 30))
    assert np.array_equal(gptq_indices(W, H, 0.02), round_dead_zone(W / 0.02, 0.0))


def test_rate_trade_off_zeroes_unimportant_inputs_first():
    W, H = _problem(3)
    H[:8, :] *= 1e-3                               # inputs 0..7 are almost never active
    H[:, :8] *= 1e-3
    plain = gptq_indices(W, H, 0.03)
    rated = gptq_indices(W, H, 0.03, lam=0.2)
    assert np.mean(rated == 0) > np.mean(plain == 0)
    assert np.mean(rated[:8] == 0) > np.mean(rated[8:] == 0)
    U = inverse_factor(H[np.ix_(hessian_order(H), hessian_order(H))])
    assert np.allclose(row_dead_zones(U, 0.1, 0.0), 0.1)


def test_round_dead_zone():
    v = np.array([-1.6, -1.5, -0.6, -0.5, 0.49, 0.5, 0.74, 0.76, 2.5])
    assert round_dead_zone(v, 0.0).tolist() == [-2, -2, -1, -1, 0, 1, 1, 1, 3]
    assert round_dead_zone(v, 0.25).tolist() == [-1, -1, 0, 0, 0, 0, 0, 1, 2]


def test_bad_arguments_are_squeeze_errors():
    W, H = _problem(0)
    with pytest.raises(SqueezeError):
        gptq_indices(W, H[:-1, :-1], 0.1)
    with pytest.raises(SqueezeError):
        gptq_indices(W, H, 0.0)
    with pytest.raises(SqueezeError):
        gptq_indices(W, H, 1e-12)                # indices beyond the coder's range


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), step=st.floats(0.005, 0.2), lam=st.sampled_from([0.0, 0.05, 0.3]))
def test_backend_candidate_is_exactly_what_the_container_stores(seed, step, lam):
    W, H = _problem(seed, d=36, n=10)
    kernel = W.reshape(3, 3, 4, 10).astype(np.float32)   # a conv kernel seen as (kh*kw*cin, cout)
    backend = GPTQStepBackend({"k": H}, lam=lam)
    cand = backend.candidate(kernel, step, name="k")
    assert cand.codec.codec_id == "cabac"
    blob = squeezefmt.save({"k": kernel, "other": kernel}, codecs={"k": cand.codec})
    with squeezefmt.open(blob) as f:
        assert np.array_equal(f.tensor("k"), cand.decoded)
        assert np.array_equal(f.tensor("other"), kernel)
        entry = f.entry("k")
    assert entry.nbytes == kernel.nbytes
    stored = np.float16(step)
    assert np.allclose(cand.decoded / np.float32(stored), np.round(cand.decoded / np.float32(stored)), atol=1e-3)


def test_backend_falls_back_for_tensors_without_moments():
    W, H = _problem(2)
    other = np.random.default_rng(0).normal(0, 0.1, (20, 5)).astype(np.float32)
    backend = GPTQStepBackend({"k": H})
    got = backend.candidate(other, 0.05, name="b")
    want = CabacStepBackend().candidate(other, 0.05)
    assert np.array_equal(got.decoded, want.decoded) and got.nbytes == want.nbytes
    # a tensor whose shape does not fit its matrix is not rounded with it
    assert np.array_equal(backend.candidate(other, 0.05, name="k").decoded, want.decoded)
