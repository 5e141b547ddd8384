"""Step backends: how the accuracy-aware search quantizes one tensor at one step, and what it costs.

The search (:mod:`squeezefmt.search.core`) only needs, for a tensor and a step, the codec that the
container will store, the exact number of bytes it will take and the array a decoder will give
back. A :class:`StepBackend` provides that through :meth:`StepBackend.candidate`; the generic
implementation encodes with the real codec and decodes the real streams, so what the search sees
is exactly what the file will hold.

Backends:

- :class:`EPRStepBackend` (``"epr"``): the ``epr`` stream kind with one explicit step per tensor
  (float16 log-step, plain rounding, tfc-compatible run-length Elias gamma code of the integers).
- :class:`CabacStepBackend` (``"cabac"``): the ``cabac`` stream kind (RDO-quantized indices,
  context-adaptive arithmetic coded) with one explicit step per tensor.
- :class:`CodecStepBackend`: any codec built by a ``factory(array, step)`` function.

:func:`default_backend` picks the best backend this build has; switching is this one function.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..codecs.base import Codec, TensorSpec
from ..container.header import dumps as header_dumps
from ..dtypes import dtype_name
from ..errors import SqueezeError


@dataclasses.dataclass
class Candidate:
    """One tensor quantized at one step: the codec to store, its byte cost and the decoded array."""

    step: float
    codec: Codec
    nbytes: int          # streams + side information + codec description, as the header will hold them
    decoded: np.ndarray  # exactly what a decoder returns for this tensor


class StepBackend:
    """Base class: ``make_codec(array, step)`` gives the codec; ``candidate`` measures it."""

    name = "base"

    def make_codec(self, array: np.ndarray, step: float) -> Codec:
        raise NotImplementedError

    def candidate(self, array: np.ndarray, step: float) -> Candidate:
        """Encode ``array`` at ``step`` with the real codec and decode the real streams."""
        codec = self.make_codec(array, step)
        enc = codec.encode(array)
        spec = TensorSpec(dtype=dtype_name(array.dtype), shape=tuple(int(d) for d in array.shape))
        decoded = codec.decode([memoryview(s) for s in enc.streams], enc.side, spec)
        nbytes = (sum(len(s) for s in enc.streams) + len(header_dumps(enc.side))
                  + len(header_dumps(codec.describe())))
        return Candidate(step=float(step), codec=codec, nbytes=int(nbytes), decoded=np.asarray(decoded))


class EPRStepBackend(StepBackend):
    """``epr`` streams with one given step: ``q = round(w / step)``, gamma-coded, step as float16 log."""

    name = "epr"

    def make_codec(self, array: np.ndarray, step: float) -> Codec:
        if not np.isfinite(step) or step <= 0:
            raise SqueezeError(f"search: step must be a positive number, got {step!r}")
        return _fixed_step_epr(np.float16(np.log(step)))


def _fixed_step_epr(log16: np.float16) -> Codec:
    """An ``epr`` codec that quantizes with the given float16 log-step (the header says plain ``epr``)."""
    from ..codecs.base import Encoded  # noqa: PLC0415
    from ..codecs.epr import EPR, _side, build_stream  # noqa: PLC0415

    class FixedStepEPR(EPR):
        def encode(self, array: np.ndarray) -> Encoded:
            q = np.round(np.asarray(array, np.float32) / np.exp(np.float32(log16))).astype(np.int32)
            return Encoded(streams=[build_stream(q, np.asarray(log16))], side=_side("none", 0))

    return FixedStepEPR()


class CodecStepBackend(StepBackend):
    """Any codec: ``factory(array, step) -> Codec`` (e.g. a step-quantizing arithmetic-coded codec)."""

    def __init__(self, factory: Callable[[np.ndarray, float], Codec], name: str = "codec"):
        self.factory = factory
        self.name = name

    def make_codec(self, array: np.ndarray, step: float) -> Codec:
        return self.factory(array, step)


class CabacStepBackend(StepBackend):
    """``cabac`` streams with one given step and the RDO trade-off of the ``compact`` preset."""

    name = "cabac"

    def __init__(self, lam: float | None = None):
        from ..presets.compact import LAMBDA  # noqa: PLC0415

        self.lam = LAMBDA if lam is None else float(lam)

    def make_codec(self, array: np.ndarray, step: float) -> Codec:
        from ..codecs.cabac_quant import CabacQuant  # noqa: PLC0415

        if not np.isfinite(step) or step <= 0:
            raise SqueezeError(f"search: step must be a positive number, got {step!r}")
        return CabacQuant(step=float(step), lam=self.lam)


def default_backend() -> StepBackend:
    """The backend the search uses unless told otherwise: ``cabac`` (``epr`` where it is missing)."""
    try:
        return CabacStepBackend()
    except ImportError:  # pragma: no cover - builds without the arithmetic coder
        return EPRStepBackend()
