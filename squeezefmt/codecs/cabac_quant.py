"""``cabac``: uniform quantization with rate-distortion optimised indices, arithmetic coded.

Post-training compression of float weights in the manner of DeepCABAC / NNCodec: every weight
becomes ``q * step`` with an integer ``q`` chosen to minimise ``(w/step - q)**2 + lam * bits(q)``,
where ``bits(q)`` is what the context-adaptive coder (:mod:`squeezefmt.entropy.cabac`) will really
spend on it given everything coded before. The indices are then coded with that coder, so a
tensor whose indices are mostly 0 costs a fraction of a bit per weight.

Python API (the config is the constructor's keyword arguments)::

    import numpy as np
    from squeezefmt.codecs.cabac_quant import CabacQuant

    w = np.random.default_rng(0).normal(0, 0.05, (3, 3, 64, 64)).astype(np.float32)
    codec = CabacQuant(step=0.02, lam=0.1)           # one absolute step for the tensor
    enc = codec.encode(w)                             # Encoded(streams, side, stats)
    enc.stats                # {'max_abs_err', 'rel_rms_err', 'bits_per_weight', 'step', 'zeros'}
    back = codec.decode(enc.streams, enc.side, TensorSpec("float32", w.shape))

    CabacQuant(rel_step=0.5)                          # step = 0.5 * RMS of the tensor
    CabacQuant(rel_step=0.5, per_channel=True)        # one step per output channel (last axis)

Config (encoder parameters only; decoding needs none of them):

- ``step``: absolute step (> 0), or ``rel_step``: step relative to the RMS of the tensor (of each
  channel with ``per_channel``); exactly one of the two (default ``rel_step=0.5``);
- ``per_channel`` / ``axis``: one step per slice along ``axis`` (default: one per tensor);
- ``lam`` (>= 0, default 0.1): the rate-distortion trade-off, in squared steps per bit; 0 is plain
  rounding;
- ``dead_zone`` (>= 0, default 0): weights with ``|w| < dead_zone * step`` become 0 before the RDO.

Steps are rounded to float16 when they are normal float16 numbers (stored in 2 bytes, exactly),
else stored as float32. Stream layout: spec/codecs.md, section "cabac".
"""
from __future__ import annotations

import numpy as np

from ..dtypes import FLOAT_NAMES, dtype_name, numpy_dtype
from ..entropy import cabac
from ..errors import CodecError, StreamError
from .base import Codec, Encoded, TensorSpec, expect_streams, lossy_stats, side_int, side_str
from .quantize import cast_float
from .registry import register

STEP_FORMATS = {"f16": np.dtype("<f2"), "f32": np.dtype("<f4")}
_F16_MIN_NORMAL = float(np.finfo(np.float16).tiny)
_F16_MAX = float(np.finfo(np.float16).max)
_SIDE_KEYS = {"steps", "axis"}


def _number(value, name: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise StreamError(f"cabac: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def compact_steps(steps: np.ndarray) -> tuple[np.ndarray, str]:
    """Steps as stored: rounded to float16 when all are normal float16 numbers, else float32."""
    s = np.asarray(steps, dtype=np.float64)
    if s.size and np.all((s >= _F16_MIN_NORMAL) & (s <= _F16_MAX)):
        return s.astype(np.float16), "f16"
    return s.astype(np.float32), "f32"


def _broadcast(ndim: int, axis: int | None, channels: int) -> tuple[int, ...]:
    shape = [1] * ndim
    if axis is not None:
        shape[axis] = channels
    return tuple(shape)


def dequantize(q: np.ndarray, steps: np.ndarray, shape: tuple[int, ...], axis: int | None, out_name: str):
    """``q * step`` in float32 (float64 for float64 tensors), broadcast per channel, as ``out_name``."""
    work = np.float64 if out_name == "float64" else np.float32
    q = q.reshape(shape)
    s = steps.astype(work).reshape(_broadcast(len(shape), axis, steps.size) if shape else ())
    return cast_float(q.astype(work) * s, out_name)


@register
class CabacQuant(Codec):
    """Uniform quantization with RDO indices coded by the context-adaptive arithmetic coder."""

    codec_id = "cabac"
    version = 1
    lossless = False

    def __init__(self, step=None, rel_step=None, per_channel: bool = False, axis: int = -1,
                 lam=0.1, dead_zone=0.0):
        self.step = _number(step, "step")
        self.rel_step = _number(rel_step, "rel_step")
        if self.step is None and self.rel_step is None:
            self.rel_step = 0.5
        if self.step is not None and self.rel_step is not None:
            raise StreamError("cabac: give step or rel_step, not both")
        if (self.step if self.step is not None else self.rel_step) == 0:
            raise StreamError("cabac: the step must be > 0")
        if not isinstance(per_channel, bool):
            raise StreamError(f"cabac: per_channel must be a boolean, got {per_channel!r}")
        if not isinstance(axis, int) or isinstance(axis, bool) or not -64 <= axis < 64:
            raise StreamError(f"cabac: axis must be an integer, got {axis!r}")
        self.per_channel, self.axis = per_channel, axis
        self.lam = _number(lam, "lam", allow_none=False)
        self.dead_zone = _number(dead_zone, "dead_zone", allow_none=False)

    def get_config(self):
        cfg = {"step": self.step} if self.step is not None else {"rel_step": self.rel_step}
        if self.per_channel:
            cfg.update(per_channel=True, axis=self.axis)
        cfg.update(lam=self.lam, dead_zone=self.dead_zone)
        return cfg

    # -- encoding -----------------------------------------------------------------------------

    def _axis(self, ndim: int) -> int | None:
        if not self.per_channel or ndim == 0:
            return None
        if not -ndim <= self.axis < ndim:
            raise CodecError(f"cabac: channel axis {self.axis} is out of range for rank {ndim}")
        return self.axis % ndim

    def choose_steps(self, x: np.ndarray, axis: int | None) -> np.ndarray:
        """The per-tensor (1) or per-channel steps before storage rounding."""
        if self.step is not None:
            channels = 1 if axis is None else x.shape[axis]
            return np.full(channels, self.step)
        if axis is None:
            rms = np.sqrt(np.mean(x * x)).reshape(1) if x.size else np.zeros(1)
        else:
            other = tuple(i for i in range(x.ndim) if i != axis)
            rms = np.sqrt(np.mean(x * x, axis=other)) if x.size else np.zeros(x.shape[axis])
        steps = self.rel_step * rms
        return np.where(steps > 0, steps, 1.0)          # an all-zero channel: any step codes it

    def quantize(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, int | None]:
        """(int32 indices in C order, stored steps, step format, channel axis) for a float tensor."""
        name = dtype_name(np.asarray(array).dtype)
        if name not in FLOAT_NAMES:
            raise CodecError(f"cabac: only float tensors can be quantized, got {name}")
        x = np.asarray(array, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise CodecError("cabac: the tensor has NaN or infinite values")
        axis = self._axis(x.ndim)
        steps, fmt = compact_steps(self.choose_steps(x, axis))
        s = steps.astype(np.float64).reshape(_broadcast(x.ndim, axis, steps.size) if x.ndim else ())
        scaled = (x / s).reshape(-1)
        if self.dead_zone > 0:
            scaled = np.where(np.abs(scaled) < self.dead_zone, 0.0, scaled)
        return cabac.rdoq(scaled, self.lam), steps, fmt, axis

    def encode(self, array: np.ndarray) -> Encoded:
        array = np.asarray(array)
        q, steps, fmt, axis = self.quantize(array)
        payload = cabac.encode_smallest(q)
        side = {"steps": fmt}
        if axis is not None:
            side["axis"] = axis
        decoded = dequantize(q, steps, array.shape, axis, dtype_name(array.dtype))
        stats = lossy_stats(array, decoded)
        stats["bits_per_weight"] = round(8 * len(payload) / max(1, q.size), 4)
        stats["zeros"] = round(float(np.mean(q == 0)) if q.size else 1.0, 4)
        if steps.size == 1:
            stats["step"] = float(steps[0])
        stream = steps.astype(STEP_FORMATS[fmt]).tobytes() + payload
        return Encoded(streams=[stream], side=side, stats=stats)

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        if spec.dtype not in FLOAT_NAMES:
            raise StreamError(f"cabac: the header declares {spec.dtype}, cabac decodes only float tensors")
        if not isinstance(side, dict) or set(side) - _SIDE_KEYS:
            raise StreamError(f"cabac: unknown side information {sorted(set(side) - _SIDE_KEYS)}")
        fmt = side_str(side, "steps", list(STEP_FORMATS))
        ndim = len(spec.shape)
        axis = side_int(side, "axis", 0, ndim - 1) if "axis" in side else None
        channels = 1 if axis is None else spec.shape[axis]
        item = STEP_FORMATS[fmt].itemsize
        data = memoryview(streams[0]).cast("B")
        if len(data) < channels * item + cabac.HEADER_BYTES:
            raise StreamError(f"cabac: stream has {len(data)} bytes, {channels} step(s) and the index "
                              "stream need more")
        steps = np.frombuffer(data[:channels * item], dtype=STEP_FORMATS[fmt])
        if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
            raise StreamError("cabac: a step is zero, negative or not finite")
        q = cabac.decode(data[channels * item:], spec.size)
        return dequantize(q, steps, tuple(spec.shape), axis, spec.dtype)
