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
- :class:`GPTQStepBackend` (``"gptq"``): ``cabac`` streams whose indices are rounded by GPTQ
  (:mod:`squeezefmt.search.gptq`) for the tensors given an input second-moment matrix; the other
  tensors go to a fallback backend.

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

    def candidate(self, array: np.ndarray, step: float, name: str | None = None) -> Candidate:
        """Encode ``array`` at ``step`` with the real codec and decode the real streams.

        ``name`` is the tensor's name, for backends that treat tensors differently (:class:`GPTQStepBackend`).
        """
        return measure_codec(self.make_codec(array, step), array, step)


def measure_codec(codec: Codec, array: np.ndarray, step: float) -> Candidate:
    """Encode ``array`` with ``codec``, decode the real streams, count the header's bytes too."""
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


class PresetIndices(Codec):
    """Wraps a ``cabac`` codec to store given indices: ``encode`` ignores its argument's values.

    What the header records is the wrapped codec (``cabac``, its step, ``lam = 0``); decoding is that
    codec's. Used for indices rounded by a data-aware method (:class:`GPTQStepBackend`): packing the
    original weights with this codec stores the chosen indices, not a plain rounding of the weights.
    """

    def __init__(self, inner: Codec, target: np.ndarray):
        self.inner, self.target = inner, target
        self.codec_id, self.version, self.lossless = inner.codec_id, inner.version, False

    def get_config(self):
        return self.inner.get_config()

    def describe(self):
        return self.inner.describe()

    def encode(self, array: np.ndarray):
        if np.shape(array) != self.target.shape:
            raise SqueezeError(f"search: indices for shape {self.target.shape} given a tensor of shape {np.shape(array)}")
        return self.inner.encode(self.target.astype(np.asarray(array).dtype, copy=False))

    def decode(self, streams, side, spec):
        return self.inner.decode(streams, side, spec)


class GPTQStepBackend(StepBackend):
    """``cabac`` at one step per tensor, indices rounded by GPTQ where an input moment matrix is known.

    ``hessians``: tensor name -> ``(d_in, d_in)`` second moment of the inputs the tensor multiplies
    (the tensor seen as ``(d_in, d_out)``, its last axis the outputs). Other tensors, and steps that
    float16 cannot hold, go to ``fallback`` (default :class:`CabacStepBackend`). ``dead_zone`` as in
    :func:`squeezefmt.search.gptq.gptq_indices`.
    """

    name = "gptq"

    def __init__(self, hessians: dict, fallback: StepBackend | None = None, dead_zone: float = 0.0,
                 lam: float = 0.0):
        from .gptq import hessian_order, inverse_factor  # noqa: PLC0415

        self.fallback = fallback or CabacStepBackend()
        self.dead_zone, self.lam = float(dead_zone), float(lam)
        self.hessians, self._factors = {}, {}
        for name, H in hessians.items():
            H = np.asarray(H, dtype=np.float64)
            order = hessian_order(H)
            self.hessians[name] = H
            self._factors[name] = inverse_factor(H[np.ix_(order, order)])  # gptq_indices rounds in this order

    def candidate(self, array: np.ndarray, step: float, name: str | None = None) -> Candidate:
        from ..codecs.cabac_quant import CabacQuant, compact_steps, dequantize  # noqa: PLC0415
        from .gptq import gptq_indices  # noqa: PLC0415

        H = self.hessians.get(name)
        stored, fmt = compact_steps(np.array([step]))
        if H is None or fmt != "f16" or array.ndim < 1 or array.size != H.shape[0] * array.shape[-1]:
            return self.fallback.candidate(array, step, name=name)
        s = float(stored[0])
        W = np.asarray(array, np.float64).reshape(H.shape[0], array.shape[-1])
        q = gptq_indices(W, H, s, dead_zone=self.dead_zone, lam=self.lam, factor=self._factors[name])
        target = dequantize(q.reshape(-1), stored, array.shape, None, dtype_name(array.dtype))
        return measure_codec(PresetIndices(CabacQuant(step=s, lam=0.0), target), array, s)
