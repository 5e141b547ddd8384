"""Accuracy-aware packing: per-tensor steps for the smallest file within a metric budget (numpy only).

    import squeezefmt
    from squeezefmt.search import search, verify

    result = search(arrays, metric, max_drop=0.1)      # metric(arrays) -> float, higher is better
    blob = squeezefmt.save(arrays, codecs=result.codecs)
    check = verify(blob, result.base_metric, metric)   # decodes the container and scores it

Modules: :mod:`.backend` (a tensor at a step: codec, exact bytes, decoded array), :mod:`.sensitivity`
(rate and sensitivity tables), :mod:`.allocate` (Lagrangian path, bisection, monotone scan, greedy refinement),
:mod:`.gptq` (data-aware rounding through input moments), :mod:`.core` (the search), :mod:`.verify` (decode and score the container), :mod:`.data` (evaluation
data files). Keras glue (model built once, top-1 accuracy): :mod:`squeezefmt.keras.evaluate`.
Nothing here imports TensorFlow: the metric is a callable the caller passes in.
"""
from .backend import CabacStepBackend, Candidate, CodecStepBackend, EPRStepBackend, StepBackend, default_backend
from .core import SearchResult, StepSearch, TensorChoice, default_select, search
from .verify import Verification, verify

__all__ = [
    "search", "StepSearch", "verify", "SearchResult", "TensorChoice", "Verification", "default_select",
    "StepBackend", "EPRStepBackend", "CabacStepBackend", "CodecStepBackend", "Candidate", "default_backend",
]
