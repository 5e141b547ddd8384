"""Lossy kernel presets: ``deep-compression`` and the ``custom:...`` presets of ``--prune/--cluster/--quantize``.

Kernels are pruned (``sparse`` CSR), clustered (k-means codebook) or uniformly quantized; every
other tensor goes through a base preset (lossless by default). See spec/codecs.md for the codecs.
"""
from __future__ import annotations

import numpy as np

from ..codecs import Codec
from ..codecs.bytegroup import ByteGroup
from ..codecs.cluster import Cluster
from ..codecs.quantize import Quantize
from ..codecs.sparse import Sparse, zero_fraction
from ..dtypes import FLOAT_NAMES, dtype_name
from ..errors import SqueezeError
from .registry import PRESETS, Preset, TensorContext, get, register
from .structured import SPARSE_MIN_ZERO_FRACTION, Choice

#: Lossy presets leave tensors with fewer elements than this to the lossless preset.
LOSSY_MIN_ELEMENTS = 256
KERNEL_ROLES = frozenset({"kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings"})


def _is_kernel(array: np.ndarray, ctx: TensorContext) -> bool:
    if dtype_name(array.dtype) not in FLOAT_NAMES or array.size < LOSSY_MIN_ELEMENTS:
        return False
    return ctx.role in KERNEL_ROLES if ctx.role is not None else array.ndim >= 2


def compression_policy(*, prune: float | None = None, cluster: int | None = None, quantize: int | None = None,
                       per_channel: bool = False, conv_cluster: int | None = None, base: str = "lossless") -> Preset:
    """A preset function: kernels pruned / clustered / quantized as asked, everything else by ``base``.

    ``prune`` (0..1): magnitude pruning of each kernel to that sparsity (no retraining), stored as
    ``sparse`` CSR. ``cluster`` (bits): k-means codebook (``conv_cluster`` bits for convolution
    kernels, default the same). ``quantize`` (bits): uniform quantization (per output channel with
    ``per_channel``, except inside ``sparse``). Kernels that already have many exact zeros go
    ``sparse`` when that is smaller; kernels with few distinct values keep them exactly.
    """
    if cluster is not None and quantize is not None:
        raise SqueezeError("choose either cluster or quantize, not both")
    if prune is not None and not 0.0 <= prune < 1.0:
        raise SqueezeError(f"prune must be a sparsity in [0, 1), got {prune!r}")
    fallback = get(base)

    def values_codec(array: np.ndarray, ctx: TensorContext, inside_sparse: bool) -> Codec:
        conv = (ctx.layer_class or "").startswith(("Conv", "SeparableConv", "DepthwiseConv")) or (
            ctx.layer_class is None and array.ndim >= 3)
        if cluster is not None:
            return Cluster(bits=conv_cluster if conv and conv_cluster else cluster)
        if quantize is not None:
            return Quantize(bits=quantize, per_channel=per_channel and not inside_sparse)
        return ByteGroup(level=19)

    def choose(name: str, array: np.ndarray, ctx: TensorContext) -> Codec:
        if not _is_kernel(array, ctx):
            return fallback(name, array, ctx)
        if prune:
            return Sparse(values=values_codec(array, ctx, True), sparsity=prune)
        dense = values_codec(array, ctx, False)
        if zero_fraction(array) >= SPARSE_MIN_ZERO_FRACTION:
            return Choice([Sparse(values=values_codec(array, ctx, True)), dense])
        return dense
    return choose


def custom_preset(*, prune: float | None = None, cluster: int | None = None, quantize: int | None = None,
                  per_channel: bool = False, base: str = "lossless") -> str:
    """Register (once) a :func:`compression_policy` preset for these options and return its name.

    ``base="deep-compression"`` keeps that preset's codebooks (5 bits dense, 8 bits conv) unless
    ``cluster`` or ``quantize`` is given. The name (e.g. ``"custom:prune=0.9,cluster=5"``) is what
    the container's metadata records as the preset.
    """
    conv = None
    if base == "deep-compression":
        if cluster is None and quantize is None:
            cluster, conv = 5, 8
        base = "lossless"
    get(base)
    opts = {"prune": prune, "cluster": cluster, "conv_cluster": conv, "quantize": quantize,
            "per_channel": per_channel or None, "base": None if base == "lossless" else base}
    name = "custom:" + ",".join(f"{k}={v}" for k, v in opts.items() if v is not None)
    if name not in PRESETS:
        register(name, "kernels: " + ", ".join(f"{k}={v}" for k, v in opts.items() if v is not None))(
            compression_policy(prune=prune, cluster=cluster, conv_cluster=conv, quantize=quantize,
                               per_channel=per_channel, base=base))
    return name


register(
    "deep-compression",
    "Deep Compression (Han et al.): kernels k-means clustered (5 bits dense, 8 bits conv; exact when they "
    "already have few values), pruned kernels as CSR, Huffman-coded indices; other tensors lossless",
)(compression_policy(cluster=5, conv_cluster=8))
