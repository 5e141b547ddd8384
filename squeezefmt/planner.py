"""Choosing a codec per tensor: presets, per-tensor overrides and the never-expand rule.

A *preset* is a named policy ``(name, array, context) -> Codec``. ``context`` carries what the
caller knows about the tensor (e.g. the Keras layer class and weight role) so that lossy presets can
treat kernels and biases differently. Lossless presets never make a tensor larger than its raw
bytes: if the chosen codec's streams are not smaller, the tensor is stored ``raw``.

Built-in presets are listed in :data:`PRESETS`; codec modules with lossy presets register theirs
with :func:`register_preset`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from .codecs import Codec, Encoded
from .codecs.bytegroup import ByteGroup
from .codecs.raw import Raw
from .codecs.zstd_codec import Zstd
from .container import PendingTensor
from .container.header import dumps as header_dumps
from .dtypes import FLOAT_NAMES, dtype_name
from .errors import SqueezeError

#: Tensors smaller than this are stored raw: a zstd frame header would outweigh any gain.
SMALL_TENSOR_BYTES = 64


@dataclasses.dataclass(frozen=True)
class TensorContext:
    """What the planner may know about a tensor beyond its values."""

    layer_class: str | None = None   # e.g. "Dense", "Conv2D"
    role: str | None = None          # e.g. "kernel", "bias", "gamma", "moving_mean"
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Preset = Callable[[str, np.ndarray, TensorContext], Codec]
PRESETS: dict[str, Preset] = {}
PRESET_HELP: dict[str, str] = {}


def register_preset(name: str, help_text: str):
    """Decorator registering a preset function under ``name``."""
    def deco(fn: Preset) -> Preset:
        PRESETS[name] = fn
        PRESET_HELP[name] = help_text
        return fn
    return deco


def _lossless(level: int) -> Preset:
    def choose(name: str, array: np.ndarray, ctx: TensorContext) -> Codec:
        if array.nbytes < SMALL_TENSOR_BYTES:
            return Raw()
        if dtype_name(array.dtype) in FLOAT_NAMES or array.dtype.itemsize > 1:
            return ByteGroup(level=level)
        return Zstd(level=level)
    return choose


register_preset("lossless", "exact: byte-grouped zstd-19 for floats, zstd-19 otherwise")(_lossless(19))
register_preset("fast", "exact, quick to write: byte-grouped zstd-3")(_lossless(3))
register_preset("raw", "exact, uncompressed, memory-mappable")(lambda name, array, ctx: Raw())


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise SqueezeError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None


def encode_tensor(name: str, array: np.ndarray, codec: Codec) -> PendingTensor:
    """Encode one tensor with ``codec``.

    A lossless codec whose streams plus side information are not smaller than the raw bytes is
    replaced by ``raw``, so lossless packing never expands a tensor.
    """
    array = np.asarray(array)
    dt = dtype_name(array.dtype)
    enc: Encoded = codec.encode(array)
    if codec.lossless and not isinstance(codec, Raw):
        stored = sum(len(s) for s in enc.streams) + (len(header_dumps(enc.side)) if enc.side else 0)
        if stored >= array.nbytes:
            codec, enc = Raw(), Raw().encode(array)
    return PendingTensor(name=name, dtype=dt, shape=tuple(int(d) for d in array.shape),
                         codec=codec.describe(), encoded=enc)


def plan_and_encode(
    arrays: Mapping[str, np.ndarray],
    *,
    preset_name: str = "lossless",
    codecs: Mapping[str, Codec] | None = None,
    contexts: Mapping[str, TensorContext] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[PendingTensor]:
    """Encode every array: an explicit codec from ``codecs`` wins, else the preset chooses."""
    choose = preset(preset_name)
    codecs = codecs or {}
    contexts = contexts or {}
    out = []
    for name, array in arrays.items():
        if not isinstance(name, str):
            raise SqueezeError(f"tensor names must be strings, got {name!r}")
        array = np.asarray(array)
        codec = codecs.get(name) or choose(name, array, contexts.get(name, TensorContext()))
        out.append(encode_tensor(name, array, codec))
        if progress is not None:
            progress(name)
    return out
