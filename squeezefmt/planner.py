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
from .codecs.tt import tt_codec_for
from .tt_math import TTMatrix

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
            base = ByteGroup(level=level)
        else:
            base = Zstd(level=level)
        extra = structured_candidates(array, base)  # pruned / clustered tensors (codecs/sparse, cluster)
        return Choice([base, *extra]) if extra else base
    return choose


register_preset("lossless", "exact: byte-grouped zstd-19 for floats, zstd-19 otherwise")(_lossless(19))
register_preset("fast", "exact, quick to write: byte-grouped zstd-3")(_lossless(3))
register_preset("raw", "exact, uncompressed, memory-mappable")(lambda name, array, ctx: Raw())


#: Parametric preset families: name prefix -> function that registers the preset for the rest of the
#: name (e.g. ``"epr-rms"`` + ``"0.02"``) and returns its canonical name.
PRESET_FAMILIES: dict[str, Callable[[str], str]] = {}


def preset(name: str) -> Preset:
    """The preset function registered as ``name``; members of a family (``"epr-rms0.02"``) register on first use."""
    if name not in PRESETS:
        for prefix, resolve in PRESET_FAMILIES.items():
            if isinstance(name, str) and name.startswith(prefix):
                canonical = resolve(name[len(prefix):])
                if canonical == name:
                    break
                raise SqueezeError(f"unknown preset {name!r}; did you mean {canonical!r}?")
    try:
        return PRESETS[name]
    except KeyError:
        families = ", ".join(f"{p}<value>" for p in PRESET_FAMILIES)
        raise SqueezeError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
                           + (f" or {families}" if families else "")) from None


def encode_tensor(name: str, array: np.ndarray, codec: Codec) -> PendingTensor:
    """Encode one tensor with ``codec``.

    A lossless codec whose streams plus side information are not smaller than the raw bytes is
    replaced by ``raw``, so lossless packing never expands a tensor.
    """
    if not isinstance(array, TTMatrix):  # a TT-matrix goes to its codec as cores, never densified
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
        if not isinstance(array, TTMatrix):
            array = np.asarray(array)
            codec = codecs.get(name) or choose(name, array, contexts.get(name, TensorContext()))
        else:  # TT cores: the tt codec, its cores coded as the preset would code the largest one
            codec = codecs.get(name) or tt_codec_for(array, lambda core: choose(name, core, contexts.get(name, TensorContext())))
        out.append(encode_tensor(name, array, codec))
        if progress is not None:
            progress(name)
    return out


# -- pruned / clustered weights: detection, candidates, lossy compression presets -----------------
# (sparse CSR, cluster and quant codecs; see spec/codecs.md)

from .codecs.cluster import Cluster, distinct_count  # noqa: E402
from .codecs.quantize import Quantize  # noqa: E402
from .codecs.sparse import Sparse, zero_fraction  # noqa: E402
from .container.layout import align as _align  # noqa: E402

#: A tensor with at least this fraction of exact zeros is tried as ``sparse`` (CSR).
SPARSE_MIN_ZERO_FRACTION = 0.2
#: A tensor with at most this many distinct values is tried as an exact ``cluster`` codebook.
CLUSTER_MAX_DISTINCT = 256
#: Lossy presets leave tensors with fewer elements than this to the lossless preset.
LOSSY_MIN_ELEMENTS = 256
KERNEL_ROLES = frozenset({"kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings"})


class Choice(Codec):
    """Several candidate codecs for one tensor: ``encode`` keeps the one that stores smallest.

    Not a stream kind (never registered or written): after ``encode`` it describes itself as the
    winner, so ``encode_tensor`` stores the winner's id. Size = streams padded to the container's
    alignment + side information + codec description. Ties go to the earlier candidate.
    """

    codec_id = "choice"

    def __init__(self, candidates):
        self.candidates = list(candidates)
        self.chosen = self.candidates[0]
        self.lossless = all(c.lossless for c in self.candidates)

    def encode(self, array: np.ndarray) -> Encoded:
        best = None
        for codec in self.candidates:
            enc = codec.encode(array)
            cost = (_stored_bytes(codec, enc) + len(header_dumps(enc.side))
                    + len(header_dumps(codec.describe())))
            if best is None or cost < best[0]:
                best = (cost, codec, enc)
        self.chosen = best[1]
        return best[2]

    def describe(self) -> dict[str, Any]:
        return self.chosen.describe()


def _stored_bytes(codec: Codec, enc: Encoded) -> int:
    """Bytes the streams take in a 1.1 container: padded where the codec asks for 64-byte alignment."""
    from .codecs.registry import stream_alignment  # noqa: PLC0415

    aligns = stream_alignment(codec.describe(), enc.side, [len(s) for s in enc.streams])
    return sum(_align(len(s)) if a > 1 else len(s) for s, a in zip(enc.streams, aligns))


def structured_candidates(array: np.ndarray, values: Codec) -> list[Codec]:
    """Exact codecs worth trying besides ``values`` for a pruned or clustered tensor.

    Many exact zeros (>= SPARSE_MIN_ZERO_FRACTION): ``sparse`` with the non-zeros through
    ``values``. At most CLUSTER_MAX_DISTINCT distinct values: an exact ``cluster`` codebook (and,
    when both hold, ``sparse`` over an exact codebook of the non-zeros).
    """
    if not isinstance(array, np.ndarray) or array.size < 16:
        return []
    out: list[Codec] = []
    distinct = distinct_count(array, CLUSTER_MAX_DISTINCT)
    if distinct is not None:
        out.append(Cluster(bits=max(1, (distinct - 1).bit_length()), exact=True))
    if zero_fraction(array) >= SPARSE_MIN_ZERO_FRACTION:
        out.append(Sparse(values=values))
        if distinct is not None:
            out.append(Sparse(values=Cluster(bits=max(1, (distinct - 1).bit_length()), exact=True)))
    return out


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
    fallback = preset(base)

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


register_preset(
    "deep-compression",
    "Deep Compression (Han et al.): kernels k-means clustered (5 bits dense, 8 bits conv; exact when they "
    "already have few values), pruned kernels as CSR, Huffman-coded indices; other tensors lossless",
)(compression_policy(cluster=5, conv_cluster=8))

# Post-training EPR presets ("epr", "epr-rms<x>", "epr-bits<b>"): registered by squeezefmt/epr.py.
from . import epr as _epr  # noqa: E402,F401


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
    preset(base)
    opts = {"prune": prune, "cluster": cluster, "conv_cluster": conv, "quantize": quantize,
            "per_channel": per_channel or None, "base": None if base == "lossless" else base}
    name = "custom:" + ",".join(f"{k}={v}" for k, v in opts.items() if v is not None)
    if name not in PRESETS:
        register_preset(name, "kernels: " + ", ".join(f"{k}={v}" for k, v in opts.items() if v is not None))(
            compression_policy(prune=prune, cluster=cluster, conv_cluster=conv, quantize=quantize,
                               per_channel=per_channel, base=base))
    return name
