"""Wall-clock timing shared by the benchmarks in tools/: the best of several runs of one call."""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    """The shortest wall-clock time, in seconds, of ``repeats`` calls of ``fn()`` (at least one)."""
    best = float("inf")
    for _ in range(max(1, int(repeats))):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
