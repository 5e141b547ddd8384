"""The accuracy-aware step search: smallest file whose metric drop stays within a budget.

    from squeezefmt.search import search
    result = search(arrays, metric, max_drop=0.1)          # metric(dict of arrays) -> float, higher is better
    squeezefmt.save(arrays, "m.sqz", codecs=result.codecs) # quantized tensors; the rest lossless
    print("\\n".join(result.summary_lines()))

``metric`` is any callable scoring a full set of arrays (top-1 accuracy in points, an F1, a negative
loss...); ``max_drop`` is in the metric's units. An optional ``distortion`` callable (lower is better,
0 for the exact arrays; e.g. the KL divergence of a classifier's outputs from the exact model's) is a
smoother signal for the per-tensor sensitivities; without it the metric drop is used.

Steps: (1) the exact metric; (2) rate tables: every selected tensor at a grid of steps, exact byte
counts (:mod:`.sensitivity`, :mod:`.backend`); (3) sensitivities, one tensor at a time; (4) the
Lagrangian path of allocations, bisected on the measured metric (optionally followed by greedy
coarsening within the budget, :mod:`.allocate`), and a one-parameter family (every kernel at the
``compact`` preset's relative step times a scale) scanned, its measured drops fitted with a
monotone curve (:func:`~squeezefmt.search.allocate.scan_path`); the smaller file within the
budget wins; (5) optionally (``fine``), small tensors such as BatchNorm parameters at one shared
relative step, the coarsest of :data:`FINE_REL_STEPS` that keeps the budget. The search never
imports TensorFlow. The result is *met* only when an allocation that quantizes something stays within the budget; otherwise ``result.met`` is False and the
result holds the lossy allocation with the smallest drop found (see :class:`SearchResult`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping

import numpy as np

from ..dtypes import FLOAT_NAMES, dtype_name
from ..errors import SqueezeError
from .allocate import bisect_path, lagrangian_path, refine, scan_path, total_rate
from .backend import StepBackend, default_backend
from .sensitivity import build_tables, measure

Metric = Callable[[Mapping[str, np.ndarray]], float]

#: Tensors with fewer elements are left exact by the default selection.
MIN_ELEMENTS = 8
#: Scales of the one-parameter family (see :meth:`StepSearch._family`), ascending; and its smallest kernel.
FAMILY_SCALES = tuple(2.0 ** (k / 4) for k in range(-8, 13))
FAMILY_MIN_ELEMENTS = 256
#: Relative steps (times the tensor's RMS) tried, coarsest first, for the small ``fine`` tensors.
FINE_REL_STEPS = (2.0 ** -5, 2.0 ** -7, 2.0 ** -9)


@dataclasses.dataclass
class TensorChoice:
    """What the search chose for one tensor."""

    name: str
    size: int
    step: float          # 0.0: stored exactly (lossless preset)
    nbytes: int          # modelled bytes (streams + side information)
    distortion: float    # the tensor's own distortion at this step (0 when exact)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / max(self.size, 1)


@dataclasses.dataclass
class SearchResult:
    """The chosen allocation and how it scored on the search data.

    ``met``: an allocation quantizing at least one tensor is within ``max_drop``. ``codecs``: name ->
    codec for the quantized tensors (pass to ``squeezefmt.save`` / ``keras.pack``). When the budget is
    not met, ``choices``/``codecs``/``metric`` describe the lossy allocation with the smallest drop seen.
    """

    met: bool
    max_drop: float
    base_metric: float
    metric: float
    choices: dict
    codecs: dict
    evaluations: int
    seconds: float
    backend: str
    history: list = dataclasses.field(default_factory=list)  # (modelled bytes, measured drop) per evaluation

    @property
    def drop(self) -> float:
        return self.base_metric - self.metric

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.choices.values())

    def summary_lines(self) -> list:
        """A per-tensor table (step, bytes, bits per weight) and the totals, as text lines."""
        width = max([len(n) for n in self.choices] + [6])
        lines = [f"{'tensor':<{width}}  {'weights':>9} {'step':>10} {'bytes':>9} {'bits/w':>7}"]
        for c in self.choices.values():
            step = "exact" if c.step == 0 else f"{c.step:.4g}"
            lines.append(f"{c.name:<{width}}  {c.size:>9} {step:>10} {c.nbytes:>9} {c.bits_per_weight:>7.3f}")
        size = sum(c.size for c in self.choices.values())
        lines.append(f"{'searched':<{width}}  {size:>9} {'':>10} {self.nbytes:>9} {8 * self.nbytes / max(size, 1):>7.3f}")
        return lines


def default_select(name: str, array: np.ndarray) -> bool:
    """Float tensors with at least :data:`MIN_ELEMENTS` elements."""
    return (isinstance(array, np.ndarray) and dtype_name(array.dtype) in FLOAT_NAMES
            and array.size >= MIN_ELEMENTS)


def exact_nbytes(name: str, array: np.ndarray) -> int:
    """Bytes of ``array`` under the lossless preset (streams + side information)."""
    from ..container.header import dumps  # noqa: PLC0415
    from ..encode import encode_tensor  # noqa: PLC0415
    from ..presets import TensorContext, get  # noqa: PLC0415

    pending = encode_tensor(name, array, get("lossless")(name, array, TensorContext()))
    enc = pending.encoded
    return sum(len(s) for s in enc.streams) + (len(dumps(enc.side)) if enc.side else 0) + len(dumps(pending.codec))


def _checked(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SqueezeError(f"search: the {what} returned {value!r}, not a number") from None
    if not math.isfinite(out):
        raise SqueezeError(f"search: the {what} returned {out}, not a finite number")
    return out


class _Objective:
    """Calls the user's metric (and distortion), counts evaluations, keeps the history."""

    def __init__(self, metric: Metric, distortion: Metric | None):
        self.metric, self.distortion = metric, distortion
        self.base = None
        self.evaluations = 0

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> tuple:
        self.evaluations += 1
        m = _checked(self.metric(arrays), "metric")
        if self.distortion is None:
            return m, (0.0 if self.base is None else self.base - m)
        return m, _checked(self.distortion(arrays), "distortion")


class StepSearch:
    """The search in two phases, so several budgets can share one set of sensitivity tables.

    ``prepare()`` measures the exact metric, the rate tables and the sensitivities (most of the
    cost); ``run(max_drop)`` allocates for one budget. :func:`search` does both for one budget.
    Arguments as for :func:`search`; ``stop_drop`` should cover the largest budget that will be run.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], metric: Metric, *, distortion: Metric | None = None,
                 select: Callable[[str, np.ndarray], bool] | None = None, backend: StepBackend | None = None,
                 stop_drop: float | None = None, progress: Callable[[str], None] | None = None,
                 use_family: bool = True, fine: Callable[[str, np.ndarray], bool] | None = None):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.use_family, self._family_cache = use_family, None
        self.backend = backend or default_backend()
        select = select or default_select
        self.say = progress or (lambda message: None)
        self.names = [n for n, a in self.arrays.items() if select(n, a)]
        self.fine_names = [n for n, a in self.arrays.items() if fine is not None and n not in self.names
                           and default_select(n, a) and fine(n, a)]
        if not self.names:
            raise SqueezeError("search: no tensor to quantize (none is a float tensor the selection accepts)")
        self.objective = _Objective(metric, distortion)
        self.stop_drop = stop_drop
        self.tables = None
        self.prepare_seconds, self.prepare_evaluations = 0.0, 0

    def prepare(self, max_drop: float = 0.0) -> "StepSearch":
        t0 = time.perf_counter()
        base, _ = self.objective(self.arrays)
        self.objective.base = self.base = base
        stop = self.stop_drop if self.stop_drop is not None else max(3 * abs(max_drop), 0.005 * abs(base), 1e-9)
        self.say(f"exact metric {base:.4f}; rate tables for {len(self.names)} tensors ({self.backend.name})")
        exact = {n: exact_nbytes(n, self.arrays[n]) for n in self.names}
        self.tables = build_tables(self.arrays, self.names, self.backend, exact)
        self.say("sensitivities")
        measure(self.arrays, self.tables, self.objective, base, stop, progress=lambda n: self.say(f"  measured {n}"))
        self.path = lagrangian_path(self.tables)
        self.prepare_seconds = time.perf_counter() - t0
        self.prepare_evaluations = self.objective.evaluations
        return self

    def _drop_of(self, alloc, history: list) -> float:
        trial = dict(self.arrays)
        for t, k in zip(self.tables, alloc):
            trial[t.name] = t.decoded(k, self.arrays[t.name])
        m, _ = self.objective(trial)
        history.append((total_rate(self.tables, alloc), self.base - m, tuple(alloc)))
        return self.base - m

    def run(self, max_drop: float, refine_evaluations: int = 0) -> SearchResult:
        """The smallest allocation within ``max_drop`` (see :class:`SearchResult` for an unmet budget)."""
        if self.tables is None:
            self.prepare(max_drop)
        t0, evaluations0 = time.perf_counter(), self.objective.evaluations
        history: list = []
        drop_of = lambda alloc: self._drop_of(alloc, history)  # noqa: E731
        self.say(f"allocation: bisecting {len(self.path)} Lagrangian allocations")
        index, _ = bisect_path(self.path, drop_of, max_drop)
        alloc = self.path[index] if index is not None else None
        if alloc is not None and any(alloc) and refine_evaluations:
            self.say("greedy refinement")
            alloc, _, _ = refine(self.tables, alloc, drop_of, max_drop, refine_evaluations)
        met = alloc is not None and any(alloc)
        if not met:  # the lossy allocation with the smallest drop seen (then the smallest file)
            lossy = [h for h in history if any(h[2])]
            alloc = min(lossy, key=lambda h: (h[1], h[0]))[2] if lossy else self.path[0]
        drop = next((h[1] for h in reversed(history) if h[2] == tuple(alloc)), None)
        if drop is None:
            drop = drop_of(alloc)
        result = _result(self.tables, alloc, met, max_drop, self.base, self.base - drop, 0, 0.0,
                         self.backend.name, history)
        if self.use_family:
            result = self._try_family(result, max_drop)
        if result.met and self.fine_names:
            result = self._try_fine(result, max_drop)
        result.seconds = self.prepare_seconds + time.perf_counter() - t0
        result.evaluations = self.objective.evaluations - evaluations0 + self.prepare_evaluations
        return result

    def _family(self) -> list:
        """Allocations of one shape for a range of scales, largest file first.

        Each kernel (>= :data:`FAMILY_MIN_ELEMENTS` elements) at ``scale * rel_step(size) * RMS``, the
        relative steps of the data-free ``compact`` preset; other tensors exact. The Lagrangian path
        rests on the additive model; this family does not, and the data choose its scale.
        """
        if self._family_cache is None:
            from ..presets.compact import rel_step  # noqa: PLC0415

            family = []
            for scale in FAMILY_SCALES:
                alloc = {}
                for t in self.tables:
                    a = self.arrays[t.name]
                    rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))
                    c = None
                    if a.ndim >= 2 and a.size >= FAMILY_MIN_ELEMENTS and rms > 0:
                        c = self.backend.candidate(a, scale * rel_step(a.size) * rms, name=t.name)
                        c = c if c.nbytes < t.rate[0] else None
                    alloc[t.name] = c
                family.append(alloc)
            self._family_cache = family  # scales ascend: smallest file first
        return self._family_cache

    def _family_rate(self, alloc: dict) -> float:
        return float(sum(c.nbytes if c is not None else t.rate[0] for t, c in zip(self.tables, alloc.values())))

    def _try_family(self, result: SearchResult, max_drop: float) -> SearchResult:
        """The family's smallest allocation within the budget, if it beats ``result``."""
        family = self._family()[::-1]  # smallest file first

        def drop_of(i: int) -> float:
            trial = dict(self.arrays)
            trial.update({n: c.decoded for n, c in family[i].items() if c is not None})
            m, _ = self.objective(trial)
            result.history.append((self._family_rate(family[i]), self.base - m))
            return self.base - m

        self.say(f"allocation: scanning {len(family)} scales of the compact step shape")
        index, drops = scan_path(list(range(len(family))), drop_of, max_drop)
        if index is None or not any(c is not None for c in family[index].values()):
            return result
        alloc = family[index]
        if result.met and self._family_rate(alloc) >= result.nbytes:
            return result
        choices, codecs = {}, {}
        for t in self.tables:
            c = alloc[t.name]
            choices[t.name] = TensorChoice(t.name, t.size, c.step if c else 0.0,
                                           int(c.nbytes if c else t.rate[0]), float("nan") if c else 0.0)
            if c is not None:
                codecs[t.name] = c.codec
        return dataclasses.replace(result, met=True, metric=self.base - drops[index], choices=choices, codecs=codecs)

    def _try_fine(self, result: SearchResult, max_drop: float) -> SearchResult:
        """Quantize the small ``fine`` tensors too (BatchNorm parameters...): one relative step for all
        of them, the coarsest of :data:`FINE_REL_STEPS` that keeps ``result`` within the budget."""
        from .backend import CabacStepBackend, measure_codec  # noqa: PLC0415

        trial = dict(self.arrays)
        trial.update({n: measure_codec(c, self.arrays[n], 0.0).decoded for n, c in result.codecs.items()})
        plain = CabacStepBackend(lam=0.0)
        self.say(f"allocation: {len(self.fine_names)} small tensors at one relative step")
        sizes = {}  # name -> (RMS, exact bytes)
        for n in self.fine_names:
            rms = float(np.sqrt(np.mean(np.square(self.arrays[n], dtype=np.float64))))
            if rms > 0 and np.isfinite(rms):
                sizes[n] = (rms, exact_nbytes(n, self.arrays[n]))
        for rel in FINE_REL_STEPS:
            found = {}
            for n, (rms, exact) in sizes.items():
                c = plain.candidate(self.arrays[n], rel * rms, name=n)
                if c.nbytes < exact:
                    found[n] = (c, exact)
            if not found:
                continue
            m, _ = self.objective({**trial, **{n: c.decoded for n, (c, _) in found.items()}})
            result.history.append((result.nbytes + sum(c.nbytes - e for c, e in found.values()), self.base - m))
            if self.base - m <= max_drop:
                choices, codecs = dict(result.choices), dict(result.codecs)
                for n, (c, _) in found.items():
                    choices[n] = TensorChoice(n, int(self.arrays[n].size), c.step, int(c.nbytes), float("nan"))
                    codecs[n] = c.codec
                return dataclasses.replace(result, metric=m, choices=choices, codecs=codecs)
        return result


def search(arrays: Mapping[str, np.ndarray], metric: Metric, *, max_drop: float,
           distortion: Metric | None = None, select: Callable[[str, np.ndarray], bool] | None = None,
           backend: StepBackend | None = None, refine_evaluations: int = 0,
           stop_drop: float | None = None, progress: Callable[[str], None] | None = None) -> SearchResult:
    """Find per-tensor steps giving the smallest file whose metric drop is at most ``max_drop``.

    ``select(name, array)`` says which tensors may be quantized (default :func:`default_select`);
    the others count at their lossless size. ``refine_evaluations`` allows that many extra
    evaluations of greedy coarsening after the bisection (default 0: off; it gains little and fits
    the search data more closely). ``stop_drop`` (default ``max(3 * max_drop, 0.5 %`` of the exact
    metric)) ends a tensor's sensitivity sweep. ``progress(message)`` is told about each phase.
    """
    return StepSearch(arrays, metric, distortion=distortion, select=select, backend=backend, stop_drop=stop_drop,
                      progress=progress).prepare(max_drop).run(max_drop, refine_evaluations)


def _result(tables, alloc, met, max_drop, base, metric, evaluations, seconds, backend, history) -> SearchResult:
    choices, codecs = {}, {}
    for t, k in zip(tables, alloc):
        choices[t.name] = TensorChoice(t.name, t.size, t.step(k), int(t.rate[k]),
                                       float(t.distortion[k]) if k else 0.0)
        if k:
            codecs[t.name] = t.candidates[k].codec
    return SearchResult(met=met, max_drop=max_drop, base_metric=base, metric=metric, choices=choices,
                        codecs=codecs, evaluations=evaluations, seconds=seconds, backend=backend,
                        history=[(r, d) for r, d, _ in history])
