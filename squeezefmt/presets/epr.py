"""Post-training EPR: the ``epr`` preset and presets for other targets (numpy only).

The ``epr`` codec (:mod:`squeezefmt.codecs.epr`) quantizes a float tensor with one step and codes
the integers with tfc-compatible run-length Elias gamma. This module decides which tensors get it:
kernels, biases and embeddings of any size worth coding (BatchNorm statistics, scales and
optimizer state stay lossless), conv kernels trying the RDFT latent too. ::

    squeezefmt.save(arrays, "m.sqz", preset="epr")                     # default target
    name = squeezefmt.presets.epr.preset_name(bits_per_weight=1.5)     # -> "epr-bits1.5"
    squeezefmt.keras.pack("model.h5", "m.sqz", preset=name)

On the command line: ``squeezefmt pack --preset epr`` or ``--epr-max-rel-rms 0.03`` /
``--epr-bits 1.5``. EPR-*trained* layers are recognised by every preset (see
:mod:`squeezefmt.keras.transforms.epr`); these presets are for ordinary models.
"""
from __future__ import annotations

import numpy as np

from ..codecs import Codec
from ..codecs.epr import DEFAULT_MAX_REL_RMS, EPR
from ..dtypes import FLOAT_NAMES, dtype_name
from ..errors import SqueezeError
from .registry import PRESETS, Preset, TensorContext, get, register, register_family

__all__ = ["QUANTIZED_ROLES", "MIN_ELEMENTS", "wants_epr", "epr_policy", "preset_name", "DEFAULT_MAX_REL_RMS"]

#: Weight roles that post-training EPR quantizes (``None``, a plain array without context, too).
#: BatchNorm tensors stay lossless: quantizing them at the same relative error costs the example
#: MNIST CNN about three times the accuracy for 8 % of the size (tools/epr_posttrain.py).
QUANTIZED_ROLES = frozenset({"kernel", "bias", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel",
                             "embeddings"})
#: Tensors with fewer elements are left to the lossless preset.
MIN_ELEMENTS = 8
_CONV_PREFIXES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


def wants_epr(array: np.ndarray, ctx: TensorContext) -> bool:
    """Whether the post-training EPR presets quantize this tensor."""
    if not isinstance(array, np.ndarray) or dtype_name(array.dtype) not in FLOAT_NAMES or array.size < MIN_ELEMENTS:
        return False
    return ctx.role is None or ctx.role in QUANTIZED_ROLES


def _transform(array: np.ndarray, ctx: TensorContext) -> str:
    if array.ndim != 4:
        return "none"
    if ctx.layer_class is None or ctx.layer_class.split(">")[-1] in _CONV_PREFIXES:
        return "auto"
    return "none"


def epr_policy(max_rel_rms: float | None = None, bits_per_weight: float | None = None, *,
               base: str = "lossless") -> Preset:
    """A preset function: :func:`wants_epr` tensors through ``EPR(target)``, the rest through ``base``."""
    EPR(max_rel_rms=max_rel_rms, bits_per_weight=bits_per_weight)  # validate the target now
    fallback = get(base)

    def choose(name: str, array: np.ndarray, ctx: TensorContext) -> Codec:
        if wants_epr(array, ctx):
            return EPR(max_rel_rms=max_rel_rms, bits_per_weight=bits_per_weight, transform=_transform(array, ctx))
        return fallback(name, array, ctx)
    return choose


def preset_name(max_rel_rms: float | None = None, bits_per_weight: float | None = None) -> str:
    """Register (once) and return the name of the EPR preset for a target.

    ``max_rel_rms=0.03`` -> ``"epr-rms0.03"``, ``bits_per_weight=1.5`` -> ``"epr-bits1.5"``; no
    target -> ``"epr"``. The name is what the container's metadata records as its preset.
    """
    if max_rel_rms is None and bits_per_weight is None:
        return "epr"
    if max_rel_rms is not None and bits_per_weight is not None:
        raise SqueezeError("choose an EPR error target or a bit budget, not both")
    name = f"epr-rms{max_rel_rms:g}" if max_rel_rms is not None else f"epr-bits{bits_per_weight:g}"
    if name not in PRESETS:
        what = (f"relative RMS error <= {max_rel_rms:g}" if max_rel_rms is not None
                else f"{bits_per_weight:g} bits per weight")
        register(name, f"post-training EPR, {what} per tensor")(epr_policy(max_rel_rms, bits_per_weight))
    return name


def _family(kind: str):
    def resolve(value: str) -> str:
        try:
            number = float(value)
        except ValueError:
            raise SqueezeError(f"preset epr-{kind}<value>: {value!r} is not a number") from None
        return preset_name(**{("max_rel_rms" if kind == "rms" else "bits_per_weight"): number})
    return resolve


register_family("epr-rms", _family("rms"))    # "epr-rms0.02": relative RMS error target
register_family("epr-bits", _family("bits"))  # "epr-bits2": bits-per-weight budget

register(
    "epr",
    f"post-training EPR (lossy): kernels/biases quantized with a step per tensor for relative RMS error "
    f"<= {DEFAULT_MAX_REL_RMS:g}, tfc-compatible Elias-gamma coded (conv kernels: RDFT when smaller); rest lossless",
)(epr_policy())
