"""Data-aware rounding of a layer's weights (GPTQ): quantization errors compensated through the inputs.

Plain rounding makes each weight's error independently. For a linear map ``y = x @ W`` (a Dense
kernel, or a convolution kernel seen as ``(kh * kw * cin, cout)`` over image patches) what matters
is the output error ``E[(x @ (W - Wq))**2]``, whose matrix is the input second moment
``H = X.T @ X``. GPTQ (Frantar et al., 2023, after Optimal Brain Surgeon) rounds the rows of ``W``
(one input dimension at a time) and moves each row's rounding error onto the rows not yet rounded,
in proportion to how the inputs correlate, so the output error stays small even at a coarse step:

    for each row i (in the order of descending H_ii):
        q_i   = round(W_i / step)
        err_i = (W_i - q_i * step) / U_ii          U: upper Cholesky factor of inv(H + damp)
        W_j  -= U_ij * err_i   for every later row j

The integers it returns sit on the same uniform grid as the ``cabac`` codec's (one step per tensor),
so they are stored with that codec at ``lam = 0``: the decoder is unchanged and knows nothing of
GPTQ. ``dead_zone`` rounds ``|W_i / step| < 0.5 + dead_zone`` to 0 (fewer non-zero indices, a
cheaper stream; the compensation absorbs part of the extra error). Numpy only.
"""
from __future__ import annotations

import numpy as np

from ..errors import SqueezeError

#: Rows rounded between two lazy updates of the rest of the matrix.
BLOCK = 128
#: Damping added to H's diagonal, relative to its mean (keeps the Cholesky factor well conditioned).
DAMP = 0.01
#: Bits a +-1 index costs over a 0 in the rate model of :func:`row_dead_zones`; the largest dead zone.
DELTA_BITS, MAX_DEAD_ZONE = 4.0, 8.0


def round_dead_zone(v: np.ndarray, dead_zone: float) -> np.ndarray:
    """Round half away from zero, with ``|v| < 0.5 + dead_zone`` going to 0 (int64)."""
    a = np.floor(np.abs(v) + (0.5 - dead_zone))
    return (np.sign(v) * np.maximum(a, 0.0)).astype(np.int64)


def inverse_factor(H: np.ndarray, damp: float = DAMP) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``inv(H + damp * mean(diag H) * I)`` (``inv = U.T @ U``)."""
    H = np.array(H, dtype=np.float64)
    d = H.shape[0]
    diag = np.diag(H).copy()
    dead = diag <= 0
    H[dead, dead] = 1.0                       # an input that is always 0: any weight is as good
    mean = float(np.mean(np.diag(H))) if d else 1.0
    H[np.diag_indices(d)] += damp * (mean if mean > 0 else 1.0)
    try:
        L = np.linalg.cholesky(H)
        inv = np.linalg.inv(L)
        return np.linalg.cholesky(inv.T @ inv).T
    except np.linalg.LinAlgError as exc:
        raise SqueezeError(f"gptq: the input second-moment matrix is not positive definite ({exc})") from None


def row_dead_zones(U: np.ndarray, dead_zone: float, lam: float, delta_bits: float = DELTA_BITS) -> np.ndarray:
    """Per-row dead zones (rows in rounding order): ``dead_zone + lam * delta_bits / (2 * w_i)``.

    ``w_i = (1 / U_ii**2) / mean(1 / U_jj**2)`` is how much an error in row i costs after the
    compensation, relative to the average row. Rounding ``v`` to 0 instead of +-1 saves about
    ``delta_bits`` bits and costs ``w_i * (2 |v| - 1)``: with the trade-off ``lam`` (squared steps per
    bit, as the ``cabac`` codec's RDO), 0 wins below ``0.5 + lam * delta_bits / (2 w_i)``.
    """
    inv = 1.0 / np.square(np.diag(U))
    w = inv / float(np.mean(inv)) if inv.size else inv
    return np.clip(dead_zone + lam * delta_bits / (2.0 * np.maximum(w, 1e-12)), 0.0, MAX_DEAD_ZONE)


def gptq_indices(W: np.ndarray, H: np.ndarray, step: float, *, dead_zone: float = 0.0, lam: float = 0.0,
                 damp: float = DAMP, act_order: bool = True, block: int = BLOCK,
                 factor: np.ndarray | None = None) -> np.ndarray:
    """Integers ``q`` (shape of ``W``, int32) with ``q * step`` close to ``W`` in the output-error sense.

    ``W``: ``(d_in, d_out)``; ``H``: ``(d_in, d_in)``, the inputs' second moment (symmetric, PSD).
    ``act_order``: round the inputs with the largest ``H_ii`` first. ``factor``: a precomputed
    :func:`inverse_factor` of the permuted ``H`` (for many steps of one tensor).
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or H.shape != (W.shape[0], W.shape[0]):
        raise SqueezeError(f"gptq: weights {W.shape} and input moments {H.shape} do not match")
    if not (np.isfinite(step) and step > 0):
        raise SqueezeError(f"gptq: step must be a positive number, got {step!r}")
    order = hessian_order(H, act_order)
    U = inverse_factor(H[np.ix_(order, order)], damp) if factor is None else factor
    work = W[order] / step                    # in units of the step
    zones = row_dead_zones(U, dead_zone, lam)
    q = np.zeros(work.shape, dtype=np.int64)
    d = work.shape[0]
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        blk = work[i1:i2].copy()
        errs = np.zeros_like(blk)
        Ub = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            row = blk[i]
            qi = round_dead_zone(row, zones[i1 + i])
            q[i1 + i] = qi
            err = (row - qi) / Ub[i, i]
            blk[i + 1:] -= np.outer(Ub[i, i + 1:], err)
            errs[i] = err
        if i2 < d:
            work[i2:] -= U[i1:i2, i2:].T @ errs
    out = np.empty_like(q)
    out[order] = q
    if np.any(np.abs(out) > 2**30):
        raise SqueezeError("gptq: indices out of range (the step is too small for these weights)")
    return out.astype(np.int32)


def hessian_order(H: np.ndarray, act_order: bool = True) -> np.ndarray:
    """The row order GPTQ rounds in: descending ``H_ii`` (stable), or the natural order."""
    d = H.shape[0]
    return np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(d)


def output_error(W: np.ndarray, Wq: np.ndarray, H: np.ndarray) -> float:
    """``trace((W - Wq).T @ H @ (W - Wq))``: the summed squared output error over the inputs of ``H``."""
    D = np.asarray(W, np.float64) - np.asarray(Wq, np.float64)
    return float(np.sum(D * (H @ D)))
