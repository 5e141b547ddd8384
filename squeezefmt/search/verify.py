"""Verification: decode the written container with the real decoder and score it.

The search scores arrays it built itself; :func:`verify` closes the loop on the bytes that will be
shipped: it decodes every tensor of the container (``squeezefmt.load``, numpy only) and runs the
metric on the decoded arrays, on the search data and, when given, on held-out data.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import numpy as np

from ..api import load


@dataclasses.dataclass
class Verification:
    """Metric of the exact and the decoded arrays on the search data (and on held-out data)."""

    base_metric: float
    metric: float
    file_bytes: int
    holdout_base: Optional[float] = None
    holdout_metric: Optional[float] = None

    @property
    def drop(self) -> float:
        return self.base_metric - self.metric

    @property
    def holdout_drop(self) -> Optional[float]:
        if self.holdout_base is None or self.holdout_metric is None:
            return None
        return self.holdout_base - self.holdout_metric


def verify(container, base_metric: float, metric: Callable[[Mapping[str, np.ndarray]], float], *,
           holdout: Optional[Callable[[Mapping[str, np.ndarray]], float]] = None,
           holdout_base: Optional[float] = None) -> Verification:
    """Decode ``container`` (bytes or path) and score it with ``metric`` (and ``holdout``)."""
    decoded = load(container)
    size = len(container) if isinstance(container, (bytes, bytearray, memoryview)) else None
    if size is None:
        import os  # noqa: PLC0415

        size = os.path.getsize(container)
    out = Verification(base_metric=float(base_metric), metric=float(metric(decoded)), file_bytes=int(size))
    if holdout is not None:
        out.holdout_base = float(holdout_base) if holdout_base is not None else None
        out.holdout_metric = float(holdout(decoded))
    return out
