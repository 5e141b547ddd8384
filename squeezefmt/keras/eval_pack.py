"""``pack --eval``: pack a Keras classifier as small as its accuracy budget allows, and prove it.

    report = pack_with_eval("model.h5", "model.sqz", "data.npz", max_drop=0.1)
    print(report.text())

The evaluation data are split at random (``seed``) into a search part and a held-out part
(``holdout`` of the rows, default half). The search (:mod:`squeezefmt.search`) sees only the search
part, both for choosing steps and, with ``rounding="gptq"`` (the default), for rounding: the
kernels' layer inputs on that part give GPTQ its input moments (:mod:`.hessians`,
:mod:`squeezefmt.search.gptq`), so rounding errors are compensated where the data say they matter.
Top-1 accuracy is the metric -- guarded by ``confidence`` standard errors of its change
(:meth:`~squeezefmt.keras.evaluate.Scorer.guarded_accuracy`), so a change that rests on a few lucky
predictions does not pass -- and the KL divergence of the outputs from the exact model's is the
sensitivity signal. The container is then encoded, decoded again with the numpy decoder and scored
on both parts; the report gives both, so the held-out figure says whether the budget generalises.
The file is written (atomically) only when the budget is met on the search part; otherwise
:class:`BudgetNotMet` carries the report of the best lossy result found. Imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

from ..presets.epr import wants_epr
from ..errors import SqueezeError
from ..search import SearchResult, StepSearch, Verification, verify
from ..search.data import load_eval_data
from .evaluate import DEFAULT_CONFIDENCE, KerasClassifier
from .formats import read_archive
from .pack import pack_archive


class BudgetNotMet(SqueezeError):
    """No lossy packing stays within the accuracy budget; ``report`` holds the best result found."""

    def __init__(self, message: str, report: "EvalPackReport"):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class EvalPackReport:
    """What ``pack --eval`` found and verified."""

    result: SearchResult
    verification: Verification
    raw_bytes: int            # float bytes of every stored tensor
    search_rows: int
    holdout_rows: int
    seconds: float            # whole run: model build, search, packing, verification

    @property
    def ratio(self) -> float:
        return self.raw_bytes / max(self.verification.file_bytes, 1)

    def text(self) -> str:
        v = self.verification
        lines = list(self.result.summary_lines())
        lines.append(f"accuracy on the search data ({self.search_rows} rows): {v.base_metric:.2f} % exact -> "
                     f"{v.metric:.2f} % packed ({-v.drop:+.2f} points, budget -{self.result.max_drop:g})")
        if v.holdout_drop is not None:
            lines.append(f"accuracy on held-out data ({self.holdout_rows} rows): {v.holdout_base:.2f} % exact -> "
                         f"{v.holdout_metric:.2f} % packed ({-v.holdout_drop:+.2f} points)")
        lines.append(f"{v.file_bytes} bytes, {self.ratio:.2f}x the float weights; search {self.result.seconds:.1f} s "
                     f"({self.result.evaluations} evaluations, {self.result.backend} streams), total {self.seconds:.1f} s")
        return "\n".join(lines)


def _write_atomic(blob: bytes, target) -> None:
    tmp = f"{os.fspath(target)}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: How ``pack --eval`` rounds kernels: ``"gptq"`` (data-aware, :mod:`squeezefmt.search.gptq`) or ``"rdo"``.
ROUNDINGS = ("gptq", "rdo")
#: Rate-distortion trade-off of the GPTQ rounding (squared steps per bit).
GPTQ_LAM = 0.05


#: Roles of the small tensors quantized last at one shared relative step (moving variances stay exact:
#: an absolute step can zero a small variance).
FINE_ROLES = frozenset({"gamma", "beta", "moving_mean"})


def fine_select(contexts: dict):
    """The ``fine`` selection of :class:`~squeezefmt.search.StepSearch`: BatchNorm scales, offsets, means."""
    return lambda name, array: contexts.get(name) is not None and contexts[name].role in FINE_ROLES


def search_backend(clf: KerasClassifier, search_data, rounding: str = "gptq"):
    """The step backend of the search: GPTQ rounding of the kernels it can handle, fed the input
    moments of ``search_data`` (:mod:`.hessians`); the others (and ``rounding="rdo"``) as ``compact``."""
    from ..search.backend import CabacStepBackend, GPTQStepBackend  # noqa: PLC0415
    from .hessians import input_moments  # noqa: PLC0415

    if rounding not in ROUNDINGS:
        raise SqueezeError(f"--rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    if rounding == "rdo":
        return CabacStepBackend()
    return GPTQStepBackend(input_moments(clf, search_data), lam=GPTQ_LAM)


def pack_with_eval(model_path, output, data_path, *, max_drop: float, holdout: float = 0.5, seed: int = 0,
                   confidence: float = DEFAULT_CONFIDENCE, include_optimizer: bool = False, backend=None, rounding: str = "gptq",
                   progress: Optional[Callable[[str], None]] = None) -> EvalPackReport:
    """Search, pack, verify (see module doc); raises :class:`BudgetNotMet` when the budget is out of reach.

    ``rounding``: ``"gptq"`` (default) rounds Dense, Conv2D and pointwise kernels with GPTQ on the
    search data's layer inputs; ``"rdo"`` rounds every tensor as the data-free ``compact`` preset
    does. ``backend`` (a :class:`~squeezefmt.search.StepBackend`) overrides both.
    """
    t0 = time.perf_counter()
    archive = read_archive(model_path, include_optimizer=include_optimizer)
    data = load_eval_data(data_path)
    clf = KerasClassifier(archive)
    clf.check(data)
    search_data, held = data.split(holdout, seed)
    scorer = clf.scorer(search_data, confidence)
    held_scorer = clf.scorer(held) if held is not None else None
    if backend is None:
        if progress is not None:
            progress(f"rounding: {rounding}" + (" (input moments of the search data)" if rounding == "gptq" else ""))
        backend = search_backend(clf, search_data, rounding)
    contexts = archive.contexts()
    select = lambda name, array: contexts.get(name) is not None and contexts[name].role != "optimizer" and \
        wants_epr(array, contexts[name])  # noqa: E731 - kernels, biases, embeddings
    result = StepSearch(archive.arrays, scorer.guarded_accuracy, distortion=scorer.kl, select=select,
                        backend=backend, progress=progress, fine=fine_select(contexts)).prepare(max_drop).run(max_drop)
    options = {"preset": "lossless", "include_optimizer": include_optimizer,
               "eval": {"max_drop": max_drop, "metric": "top-1 accuracy", "search_rows": len(search_data),
                        "confidence": confidence, "rounding": getattr(backend, "name", rounding)}}
    blob = pack_archive(archive, None, preset="lossless", codecs=result.codecs, options=options,
                        source_name=os.path.basename(os.fspath(model_path)))
    check = verify(blob, scorer.base, scorer.accuracy, holdout=held_scorer.accuracy if held_scorer else None,
                   holdout_base=held_scorer.base if held_scorer else None)
    raw = sum(a.nbytes for a in archive.arrays.values())
    report = EvalPackReport(result, check, raw, len(search_data), len(held) if held is not None else 0,
                            time.perf_counter() - t0)
    if not result.met or check.drop > max_drop:
        raise BudgetNotMet(f"no lossy packing keeps the accuracy drop within {max_drop:g} points on the search "
                           f"data; best found: {check.drop:.2f} points at {report.ratio:.2f}x; nothing written", report)
    if output is not None:
        _write_atomic(blob, output)
    return report
