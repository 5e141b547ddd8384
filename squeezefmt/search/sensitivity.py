"""Per-tensor rate and sensitivity tables: what each step costs in bytes and in the metric.

For every tensor the search may quantize, :func:`build_tables` tries a geometric grid of steps
(relative to the tensor's RMS, a quarter octave apart) and records the exact bytes of each
candidate (:mod:`squeezefmt.search.backend`). :func:`measure` then quantizes one tensor at a time,
leaving the others exact, and records how much that alone changes the objective: the distortion
(for Keras classifiers, the KL divergence of the outputs from the exact model's) and the metric drop.
To halve the evaluations, only every other grid step (half an octave apart) is measured; the steps
between are interpolated (geometrically) from their measured neighbours -- their rates are exact.
Where the rate falls steeply between two grid steps (the RDO quantizer zeroing most of a large
kernel), intermediate steps are added the same way, so the allocation has sizes to choose between.
Walking from fine to coarse steps, a tensor stops being measured once its drop alone exceeds
``stop_drop``; coarser steps are then marked unusable (infinite distortion).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from .backend import Candidate, StepBackend

#: Default step grid, in quarter octaves of the tensor's RMS: RMS/16 ... 16 x RMS. The coarse end
#: matters for large budgets (a few points): there most of a big kernel rounds to zero.
GRID_LO, GRID_HI, PER_OCTAVE = -16, 16, 4
#: Every MEASURE_EVERY-th grid step is measured, the others interpolated.
MEASURE_EVERY = 2
#: Between neighbours whose rates differ by more than RATE_GAP (and MIN_GAP_BYTES), up to
#: REFINE_LEVELS rounds of intermediate steps are added (rates exact, distortions interpolated).
RATE_GAP, MIN_GAP_BYTES, REFINE_LEVELS = 1.25, 256, 3

Score = Callable[[Mapping[str, np.ndarray]], "tuple[float, float]"]


@dataclasses.dataclass
class TensorTable:
    """Candidates of one tensor, ordered from the finest step to the coarsest.

    ``rate[k]`` is the byte cost of candidate ``k``; ``distortion[k]`` and ``drop[k]`` the objective's
    distortion and metric drop with only this tensor at candidate ``k`` (``inf`` when unusable).
    Candidate 0 is the tensor stored exactly (``candidates[0] is None``) at ``exact_bytes``.
    """

    name: str
    size: int
    candidates: list           # [None, Candidate, Candidate, ...]
    rate: np.ndarray
    distortion: np.ndarray
    drop: np.ndarray
    measured: np.ndarray = None  # bool per candidate: measured (True) or interpolated

    def __post_init__(self):
        if self.measured is None:
            self.measured = np.ones(len(self.candidates), bool)

    def decoded(self, k: int, original: np.ndarray) -> np.ndarray:
        return original if k == 0 else self.candidates[k].decoded

    def step(self, k: int) -> float:
        return 0.0 if k == 0 else self.candidates[k].step


def step_grid(array: np.ndarray, lo: int = GRID_LO, hi: int = GRID_HI, per_octave: int = PER_OCTAVE) -> list:
    """Candidate steps for ``array``: its RMS times ``2**(k / per_octave)`` for k in ``lo..hi``."""
    rms = float(np.sqrt(np.mean(np.square(np.asarray(array, np.float64)))))
    if not np.isfinite(rms) or rms <= 0:
        return []
    return [rms * 2.0 ** (k / per_octave) for k in range(lo, hi + 1)]


def build_tables(arrays: Mapping[str, np.ndarray], names: Sequence[str], backend: StepBackend,
                 exact_bytes: Mapping[str, int], grid: Callable[[np.ndarray], list] = step_grid) -> list:
    """One :class:`TensorTable` per name, with rates filled in and distortions still unknown (nan)."""
    tables = []
    for name in names:
        array = arrays[name]
        steps = grid(array)
        points = [(st, backend.candidate(array, st, name=name), i % MEASURE_EVERY == 0 or i == len(steps) - 1)
                  for i, st in enumerate(steps)]
        for _ in range(REFINE_LEVELS):  # where the rate falls steeply, add steps between (interpolated)
            finer = []
            for (s0, c0, m0), (s1, c1, _m1) in zip(points, points[1:]):
                finer.append((s0, c0, m0))
                if c0.nbytes > RATE_GAP * c1.nbytes and c0.nbytes - c1.nbytes > MIN_GAP_BYTES:
                    mid = float(np.sqrt(s0 * s1))
                    finer.append((mid, backend.candidate(array, mid, name=name), False))
            points = finer + points[-1:]
        cands: list = [None]
        measured = [True]
        for _step, c, m in points:
            previous = cands[-1].nbytes if len(cands) > 1 else exact_bytes[name]
            if c.nbytes >= previous:
                continue  # a coarser step that is not smaller is never worth it
            cands.append(c)
            measured.append(m)
        rate = np.array([exact_bytes[name]] + [c.nbytes for c in cands[1:]], dtype=np.float64)
        n = len(cands)
        tables.append(TensorTable(name, int(np.asarray(array).size), cands, rate,
                                  np.full(n, np.nan), np.full(n, np.nan), np.array(measured)))
    return tables


def _interpolate(t: TensorTable) -> None:
    """Fill the unmeasured candidates from their measured neighbours (geometric in the step)."""
    done = np.flatnonzero(t.measured)
    logs = np.log([t.step(k) if k else 1e-30 for k in range(len(t.candidates))])
    for k in np.flatnonzero(~t.measured):
        lo, hi = done[done < k].max(), done[done > k].min() if np.any(done > k) else None
        if hi is None or not np.isfinite(t.distortion[hi]):
            t.distortion[k], t.drop[k] = np.inf, np.inf
            continue
        f = (logs[k] - logs[lo]) / (logs[hi] - logs[lo]) if lo else 1.0
        a, b = t.distortion[lo], t.distortion[hi]
        t.distortion[k] = a ** (1 - f) * b ** f if a > 0 and b > 0 else a + f * (b - a)
        t.drop[k] = t.drop[lo] + f * (t.drop[hi] - t.drop[lo])


def measure(arrays: Mapping[str, np.ndarray], tables: Sequence[TensorTable], score: Score,
            base_metric: float, stop_drop: float, progress: Callable[[str], None] | None = None) -> int:
    """Fill every table's distortion and drop, one tensor quantized at a time; returns the evaluations run."""
    evaluations = 0
    for t in tables:
        t.distortion[0], t.drop[0] = 0.0, 0.0
        stopped = False
        for k in range(1, len(t.candidates)):
            if stopped:
                t.distortion[k], t.drop[k] = np.inf, np.inf
                continue
            if not t.measured[k]:
                continue
            trial = dict(arrays)
            trial[t.name] = t.candidates[k].decoded
            metric, dist = score(trial)
            evaluations += 1
            t.drop[k] = base_metric - metric
            t.distortion[k] = max(float(dist), 0.0)
            stopped = t.drop[k] > stop_drop
        _interpolate(t)
        # Noise makes a coarser step look better now and then; the model assumes it never is.
        t.distortion[:] = np.maximum.accumulate(t.distortion)
        if progress is not None:
            progress(t.name)
    return evaluations
