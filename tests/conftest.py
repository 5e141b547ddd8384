"""Shared fixtures: paths, small arrays, and a TensorFlow guard for Keras tests."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from sqzdev import EXAMPLES, REPO as ROOT, VECTORS  # noqa: F401 - the dev package (pytest pythonpath)

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def weights(rng):
    """Arrays shaped like a small model's weights."""
    return {
        "conv/kernel": rng.normal(0, 0.1, (3, 3, 8, 16)).astype(np.float32),
        "conv/bias": rng.normal(0, 0.01, (16,)).astype(np.float32),
        "dense/kernel": rng.normal(0, 0.05, (256, 64)).astype(np.float32),
        "embed": rng.normal(0, 1, (100, 8)).astype(np.float16),
        "steps": np.arange(12, dtype=np.int64).reshape(3, 4),
    }


class CountingFile:
    """A binary file object over bytes that records every ``(start, end)`` range read from it."""

    def __init__(self, data: bytes):
        import io

        self._f = io.BytesIO(data)
        self.ranges: list[tuple[int, int]] = []

    def read(self, n=-1):
        start = self._f.tell()
        out = self._f.read(n)
        self.ranges.append((start, start + len(out)))
        return out

    def __getattr__(self, name):  # seek, tell, readinto ... of the underlying BytesIO
        return getattr(self._f, name)


@pytest.fixture
def counting_file():
    """``counting_file(data)``: a :class:`CountingFile` to check which byte ranges a decode reads."""
    return CountingFile


def pytest_configure(config):
    """``SQUEEZEFMT_REQUIRE=mod1,mod2``: fail at once if a session that must have them lacks one.

    The nox sessions set it (noxfile.py), so a test that skips for a missing package skips only in
    the sessions that are meant to lack it, never in the legacy run that must run them all.
    """
    import importlib.util

    required = [m.strip() for m in os.environ.get("SQUEEZEFMT_REQUIRE", "").split(",") if m.strip()]
    missing = [m for m in required if importlib.util.find_spec(m) is None]
    if missing:
        raise pytest.UsageError(f"this session must have {', '.join(missing)} installed (SQUEEZEFMT_REQUIRE)")
