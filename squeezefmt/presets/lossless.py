"""The exact presets: ``lossless`` (byte-grouped zstd-19), ``fast`` (zstd-3) and ``raw``.

Floats (and any type wider than a byte) go through ``bytegroup``, other types through ``zstd``;
pruned or clustered tensors also try the exact structured codecs (:mod:`.structured`). Tensors
smaller than :data:`SMALL_TENSOR_BYTES` are stored raw. The never-expand rule is applied by
:func:`squeezefmt.encode.encode_tensor`.
"""
from __future__ import annotations

import numpy as np

from ..codecs import Codec
from ..codecs.bytegroup import ByteGroup
from ..codecs.raw import Raw
from ..codecs.zstd_codec import Zstd
from ..dtypes import FLOAT_NAMES, dtype_name
from .registry import Preset, TensorContext, register
from .structured import Choice, structured_candidates

#: Tensors smaller than this are stored raw: a zstd frame header would outweigh any gain.
SMALL_TENSOR_BYTES = 64


def lossless_policy(level: int) -> Preset:
    """Exact coding at zstd ``level`` (see the module doc)."""
    def choose(name: str, array: np.ndarray, ctx: TensorContext) -> Codec:
        if array.nbytes < SMALL_TENSOR_BYTES:
            return Raw()
        if dtype_name(array.dtype) in FLOAT_NAMES or array.dtype.itemsize > 1:
            base = ByteGroup(level=level)
        else:
            base = Zstd(level=level)
        extra = structured_candidates(array, base)  # pruned / clustered tensors (codecs/sparse, cluster)
        return Choice([base, *extra]) if extra else base
    return choose


register("lossless", "exact: byte-grouped zstd-19 for floats, zstd-19 otherwise")(lossless_policy(19))
register("fast", "exact, quick to write: byte-grouped zstd-3")(lossless_policy(3))
register("raw", "exact, uncompressed, memory-mappable")(lambda name, array, ctx: Raw())
