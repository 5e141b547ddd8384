"""The data-free ``compact`` preset: kernels RDO-quantized and arithmetic coded (``cabac``), the rest lossless.

Like NNCodec's ``qp``, one knob sets how coarse the quantization is; unlike a single absolute step
it adapts to each tensor. Each kernel gets the step ``rel_step(n) * RMS(kernel)``, with the relative
step growing with the kernel's element count ``n``::

    rel_step(n) = clip(REL_STEP_AT_REF * scale * (n / REF_ELEMENTS) ** SIZE_EXPONENT, MIN_REL_STEP, MAX_REL_STEP)

Large kernels (the 368k-weight dense layer of an MNIST CNN) are redundant and tolerate a step of about
1.6 RMS (1.3 bits per weight); small ones (convolutions of a few thousand weights, followed by
BatchNorm in compact models) need a step of a few percent of their RMS and cost little anyway. The
constants were fitted on three MNIST / Fashion-MNIST CNNs (see the README's "compact" section).
Biases, BatchNorm parameters and tensors under 256 elements stay lossless.

``compact`` uses ``scale = 1``; ``compact-x<scale>`` (e.g. ``compact-x1.5``: coarser, smaller;
``compact-x0.5``: finer) scales every relative step. ``compact_codec(array)`` is the codec the preset
picks for one kernel.
"""
from __future__ import annotations

import numpy as np

from ..codecs import Codec
from ..codecs.cabac_quant import CabacQuant
from ..errors import SqueezeError
from .deep import _is_kernel
from .registry import PRESETS, Preset, TensorContext, get, register, register_family

REF_ELEMENTS = 368_640
REL_STEP_AT_REF = 1.6
SIZE_EXPONENT = 0.8
MIN_REL_STEP = 0.03
MAX_REL_STEP = 2.0
#: RDO trade-off (squared steps per bit) used by the preset.
LAMBDA = 0.1

__all__ = ["rel_step", "compact_codec", "compact_policy", "preset_name"]


def rel_step(n: int, scale: float = 1.0) -> float:
    """The step, relative to the kernel's RMS, for a kernel of ``n`` elements."""
    value = REL_STEP_AT_REF * scale * (max(int(n), 1) / REF_ELEMENTS) ** SIZE_EXPONENT
    return float(np.clip(value, MIN_REL_STEP * scale, MAX_REL_STEP * scale))


def compact_codec(array: np.ndarray, scale: float = 1.0) -> Codec:
    """The ``cabac`` codec the preset uses for one kernel."""
    return CabacQuant(rel_step=round(rel_step(np.asarray(array).size, scale), 6), lam=LAMBDA)


def compact_policy(scale: float = 1.0, base: str = "lossless") -> Preset:
    """A preset function: kernels through :func:`compact_codec`, everything else through ``base``."""
    if not scale > 0:
        raise SqueezeError(f"compact: the scale must be > 0, got {scale!r}")
    fallback = get(base)

    def choose(name: str, array: np.ndarray, ctx: TensorContext) -> Codec:
        if isinstance(array, np.ndarray) and _is_kernel(array, ctx):
            return compact_codec(array, scale)
        return fallback(name, array, ctx)
    return choose


def preset_name(scale: float = 1.0) -> str:
    """Register (once) and return the preset name for ``scale``: ``"compact"`` or ``"compact-x<scale>"``."""
    if scale == 1.0:
        return "compact"
    name = f"compact-x{scale:g}"
    if name not in PRESETS:
        register(name, f"as compact with every relative step x{scale:g}")(compact_policy(scale))
    return name


def _resolve(value: str) -> str:
    try:
        scale = float(value)
    except ValueError:
        raise SqueezeError(f"preset compact-x<scale>: {value!r} is not a number") from None
    return preset_name(scale)


register_family("compact-x", _resolve)
register(
    "compact",
    "data-free lossy (post-training, NNCodec-like): kernels RDO-quantized with a step per tensor (relative to "
    "its RMS, coarser for larger kernels) and context-adaptive arithmetic coded; rest lossless",
)(compact_policy())
