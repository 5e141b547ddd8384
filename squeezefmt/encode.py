"""Encoding tensors for a container: one :class:`~squeezefmt.container.PendingTensor` per item.

An item is either a plain array, whose codec an explicit choice or a preset picks, or a
:class:`~squeezefmt.codecs.PreEncoded` tensor that a transform already turned into streams (the
integer latents of an EPR-trained layer, the cores of a Tensor-Train layer). Lossless codecs never
make a tensor larger than its raw bytes: when the streams are not smaller, the tensor is stored
``raw``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Union

import numpy as np

from .codecs import Codec, Encoded, PreEncoded
from .codecs.raw import Raw
from .container import PendingTensor
from .container.header import dumps as header_dumps
from .dtypes import dtype_name
from .errors import SqueezeError
from .presets import TensorContext, get

#: What :func:`plan_and_encode` accepts per tensor name.
Item = Union[np.ndarray, PreEncoded]


def encode_tensor(name: str, array: np.ndarray, codec: Codec) -> PendingTensor:
    """Encode one array with ``codec`` (a lossless codec that does not shrink it is replaced by ``raw``)."""
    array = np.asarray(array)
    enc: Encoded = codec.encode(array)
    if codec.lossless and not isinstance(codec, Raw):
        stored = sum(len(s) for s in enc.streams) + (len(header_dumps(enc.side)) if enc.side else 0)
        if stored >= array.nbytes:
            codec, enc = Raw(), Raw().encode(array)
    return PendingTensor(name=name, dtype=dtype_name(array.dtype), shape=tuple(int(d) for d in array.shape),
                         codec=codec.describe(), encoded=enc)


def encode_pre_encoded(name: str, item: PreEncoded, choose: Callable[[np.ndarray], Codec],
                       codec: Codec | None = None) -> PendingTensor:
    """The pending tensor of a pre-encoded item: as it encodes itself (``choose(part)`` is the preset's
    choice for its parts), or with an explicitly given ``codec``."""
    if codec is None:
        codec, enc = item.encode(choose)
    else:
        enc = item.encode_with(codec)
    return PendingTensor(name=name, dtype=item.dtype, shape=tuple(int(d) for d in item.shape),
                         codec=codec.describe(), encoded=enc)


def plan_and_encode(
    items: Mapping[str, Item],
    *,
    preset_name: str = "lossless",
    codecs: Mapping[str, Codec] | None = None,
    contexts: Mapping[str, TensorContext] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[PendingTensor]:
    """Encode every item: an explicit codec from ``codecs`` wins, else the preset chooses.

    A pre-encoded item encodes itself (see :class:`~squeezefmt.codecs.PreEncoded`), or with the
    explicit codec given for it.
    """
    choose = get(preset_name)
    codecs = codecs or {}
    contexts = contexts or {}
    out = []
    for name, item in items.items():
        if not isinstance(name, str):
            raise SqueezeError(f"tensor names must be strings, got {name!r}")
        ctx = contexts.get(name, TensorContext())
        if isinstance(item, PreEncoded):
            out.append(encode_pre_encoded(name, item, lambda part, n=name, c=ctx: choose(n, part, c), codecs.get(name)))
        else:
            array = np.asarray(item)
            out.append(encode_tensor(name, array, codecs.get(name) or choose(name, array, ctx)))
        if progress is not None:
            progress(name)
    return out
