"""Allocating steps across tensors: the Lagrangian path, its bisection, a monotone scan, a greedy refinement.

The model: the file costs the sum of the tensors' rates, and the distortion of quantizing several
tensors is about the sum of their distortions alone (the usual additive model of post-training
quantization noise). For a multiplier ``lam`` every tensor independently takes the candidate that
minimises ``rate + lam * distortion``; sweeping ``lam`` gives the rate-distortion-optimal
allocations (:func:`lagrangian_path`), ordered from the smallest file to the largest.

The additive model only orders the allocations; the budget is checked on the real objective:
:func:`bisect_path` finds the smallest allocation on the path whose measured drop is within the
budget, and :func:`refine` then tries coarser steps tensor by tensor (largest saving per unit of
modelled distortion first), keeping each change only when the measured drop stays within budget.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .sensitivity import TensorTable

Allocation = tuple  # one candidate index per table

#: Multipliers swept by :func:`lagrangian_path` (rate in bytes, distortion in the objective's units).
LAMBDAS = np.logspace(-6, 14, 401)


def total_rate(tables: Sequence[TensorTable], alloc: Allocation) -> float:
    return float(sum(t.rate[k] for t, k in zip(tables, alloc)))


def modelled_distortion(tables: Sequence[TensorTable], alloc: Allocation) -> float:
    return float(sum(t.distortion[k] for t, k in zip(tables, alloc)))


def lagrangian_path(tables: Sequence[TensorTable], lambdas: np.ndarray = LAMBDAS) -> list:
    """Distinct optimal allocations over ``lambdas``, smallest total rate first."""
    seen = {}
    for lam in lambdas:
        alloc = []
        for t in tables:
            cost = t.rate + lam * np.where(np.isfinite(t.distortion), t.distortion, np.inf)
            alloc.append(int(np.argmin(cost)))
        alloc = tuple(alloc)
        seen.setdefault(alloc, total_rate(tables, alloc))
    return sorted(seen, key=lambda a: (seen[a], modelled_distortion(tables, a)))


def isotonic_increasing(values: Sequence[float]) -> list:
    """Least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list = []  # [sum, count]
    for v in values:
        blocks.append([float(v), 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    out: list = []
    for total, count in blocks:
        out += [total / count] * count
    return out


#: :func:`scan_path` stops after this many allocations in a row measured over ``STOP_FACTOR x`` the budget.
STOP_RUN, STOP_FACTOR = 3, 3.0


def scan_path(path: Sequence[Allocation], drop_of: Callable[[Allocation], float], max_drop: float):
    """``(index, drops)`` like :func:`bisect_path`, from a scan instead of a bisection.

    Evaluates the path from its largest allocation down (until :data:`STOP_RUN` in a row are far over
    budget), fits the measured drops with a non-decreasing curve (:func:`isotonic_increasing`) and
    returns the smallest allocation whose fitted *and* measured drops are within ``max_drop``. The fit
    pools each measurement with its neighbours, so one lucky allocation among worse ones (or one
    unlucky among better ones) does not decide the result, as it can in a bisection.
    """
    drops: dict = {}
    order = list(range(len(path) - 1, -1, -1))   # largest allocation first
    far = 0
    for i in order:
        drops[i] = drop_of(path[i])
        far = far + 1 if drops[i] > STOP_FACTOR * max(max_drop, 1e-12) else 0
        if far >= STOP_RUN:
            break
    scanned = [i for i in order if i in drops]
    fitted = isotonic_increasing([drops[i] for i in scanned])
    best = None
    for i, f in zip(scanned, fitted):
        if f <= max_drop and drops[i] <= max_drop:
            best = i
    return best, drops


def bisect_path(path: Sequence[Allocation], drop_of: Callable[[Allocation], float], max_drop: float):
    """``(index, drops)``: the smallest-rate allocation on ``path`` within ``max_drop``, or ``None``.

    Assumes the drop falls along the path (it does up to noise); ``drops`` maps the evaluated
    indices to their measured drops. If even the last (largest) allocation is over budget, the index
    is ``None``.
    """
    drops = {}

    def ok(i: int) -> bool:
        if i not in drops:
            drops[i] = drop_of(path[i])
        return drops[i] <= max_drop

    hi = len(path) - 1
    if not ok(hi):
        return None, drops
    lo = -1  # invariant: ok(hi); everything at or below lo is known (or assumed) to fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, drops


def refine(tables: Sequence[TensorTable], alloc: Allocation, drop_of: Callable[[Allocation], float],
           max_drop: float, max_evaluations: int) -> tuple:
    """Greedy coarsening of ``alloc`` within the budget; returns ``(allocation, its drop, evaluations)``."""
    alloc = list(alloc)
    current_drop = None
    evaluations = 0
    rejected = set()
    while evaluations < max_evaluations:
        moves = []
        for i, (t, k) in enumerate(zip(tables, alloc)):
            j = k + 1
            if j >= len(t.candidates) or not np.isfinite(t.distortion[j]) or (i, j) in rejected:
                continue
            saving = t.rate[k] - t.rate[j]
            if saving <= 0:
                continue
            cost = max(t.distortion[j] - t.distortion[k], 1e-30)
            moves.append((saving / cost, i, j))
        if not moves:
            break
        _, i, j = max(moves)
        trial = list(alloc)
        trial[i] = j
        drop = drop_of(tuple(trial))
        evaluations += 1
        if drop <= max_drop:
            alloc, current_drop = trial, drop
        else:
            rejected.add((i, j))
    return tuple(alloc), current_drop, evaluations
