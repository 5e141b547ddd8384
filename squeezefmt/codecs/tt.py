"""``tt``: a matrix stored as its Tensor-Train cores (t3f ``KerasDense`` layers, TT-SVD of Dense kernels).

The container declares the dense ``(N, M)`` matrix; the streams hold the ``d`` cores
``(r_{k-1}, n_k, m_k, r_k)``, each through a nested codec (raw, byte-grouped, quantized, EPR...).
``decode`` gives the dense matrix; :meth:`TT.decode_cores` (or :func:`read_tt` on an open container)
gives the cores, which a TT layer uses without ever forming the matrix.

``encode`` accepts either

- a :class:`~squeezefmt.tt_math.TTMatrix` (cores you already have, e.g. a t3f layer): the cores are
  stored as they are, so with a lossless inner codec the round trip of the cores is exact; or
- a dense 2-D float array: TT-SVD (Oseledets 2011) with the configured factorisation
  (``input_dims``/``output_dims``, automatic by default), ``max_rank`` and/or ``tol`` (relative
  Frobenius error); lossy, the error is reported in the tensor's ``stats``.

    >>> codec = TT(max_rank=8)                          # TT-SVD, cores byte-grouped + zstd
    >>> enc = codec.encode(kernel)                      # kernel: (784, 625) float32
    >>> enc.stats["rel_rms_err"], enc.side["ranks"]     # (0.93..., [1, 8, 8, 8, 1])

Stream layout: spec/codecs.md, section "tt".
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

import squeezefmt.tt_math as tt_math
from ..dtypes import dtype_name, numpy_dtype
from ..errors import CodecError, StreamError
from ..tt_math import MAX_CORES, TTMatrix
from .base import Codec, Encoded, PreEncoded, TensorSpec, lossy_stats
from .bytegroup import ByteGroup
from .raw import Raw
from .decode import decode_errors
from .registry import check_decoded, decode_nested, encode_nested, get_codec, nested_stream_count, register

#: Element types a TT tensor may declare (its cores have the same type).
TT_DTYPES = ("float16", "float32", "float64")


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _default_inner() -> dict[str, Any]:
    return ByteGroup(level=19).describe()


def _int_list(value, what: str, exc=CodecError) -> list[int]:
    if not isinstance(value, list) or not value or any(
            not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
        raise exc(f"{what} must be a non-empty list of positive integers, got {value!r}")
    return value


@register
class TT(Codec):
    codec_id = "tt"
    version = 1
    lossless = False  # TT-SVD of a dense matrix is lossy; stored cores are exact with a lossless inner codec

    def __init__(self, inner: Any = None, max_rank: int | None = None, tol: float | None = None,
                 input_dims: list[int] | None = None, output_dims: list[int] | None = None,
                 d: int | None = None):
        if isinstance(inner, Codec):
            inner = inner.describe()
        self.inner = dict(inner) if inner is not None else _default_inner()
        get_codec(self.inner)  # an unknown or malformed inner codec fails here, not at encode time
        if max_rank is not None and (not isinstance(max_rank, int) or isinstance(max_rank, bool) or max_rank < 1):
            raise CodecError(f"tt: max_rank must be a positive integer or None, got {max_rank!r}")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float))
                                or not (0 <= tol < 1) or not math.isfinite(tol)):
            raise CodecError(f"tt: tol must be a relative error in [0, 1) or None, got {tol!r}")
        if (input_dims is None) != (output_dims is None):
            raise CodecError("tt: give both input_dims and output_dims, or neither")
        if input_dims is not None:
            input_dims = _int_list(list(input_dims), "tt: input_dims")
            output_dims = _int_list(list(output_dims), "tt: output_dims")
            tt_math.check_dims(input_dims, output_dims)
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or not 2 <= d <= MAX_CORES):
            raise CodecError(f"tt: d must be an integer in [2, {MAX_CORES}] or None, got {d!r}")
        self.max_rank, self.tol, self.d = max_rank, (float(tol) if tol is not None else None), d
        self.input_dims, self.output_dims = input_dims, output_dims

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"inner": self.inner}
        for key in ("max_rank", "tol", "input_dims", "output_dims", "d"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        return cfg

    # -- encoding ------------------------------------------------------------------------------------
    def decompose(self, matrix: np.ndarray) -> tt_math.TTSVDResult:
        """The TT-SVD this codec's configuration gives for a dense matrix."""
        dims_in, dims_out = self.input_dims, self.output_dims
        if dims_in is None:
            dims_in, dims_out = tt_math.auto_dims(*np.shape(matrix), d=self.d)
        return tt_math.tt_svd(matrix, dims_in, dims_out, max_rank=self.max_rank, tol=self.tol)

    def encode(self, array) -> Encoded:
        if isinstance(array, TTMatrix):
            tt, original, svd = array, None, None
        else:
            original = np.asarray(array)
            if original.ndim != 2:
                raise CodecError(f"tt: needs a 2-D matrix (a Dense kernel), got shape {original.shape}")
            svd = self.decompose(original)
            tt = svd.tt
        if dtype_name(tt.dtype) not in TT_DTYPES:
            raise CodecError(f"tt: cores must be one of {', '.join(TT_DTYPES)}, got {tt.dtype}")
        if tt.params > tt.size:
            raise CodecError(f"tt: the cores ({tt.params} elements, ranks {tt.ranks}) are larger than the "
                             f"{tt.shape[0]}x{tt.shape[1]} matrix they stand for; lower the rank or store it dense")
        inner = get_codec(self.inner)
        streams: list[bytes] = []
        descs, core_stats = [], []
        for core in tt.cores:
            desc, sub, stats = encode_nested(inner, np.ascontiguousarray(core))
            if inner.lossless and not isinstance(inner, Raw) and \
                    sum(len(s) for s in sub) + len(_json(desc["side"])) >= core.nbytes:
                desc, sub, stats = encode_nested(Raw(), np.ascontiguousarray(core))
            descs.append(desc)
            streams.extend(sub)
            core_stats.append(stats)
        side = {"input_dims": tt.input_dims, "output_dims": tt.output_dims, "ranks": tt.ranks, "cores": descs}
        stats: dict[str, Any] = {"tt_ranks": tt.ranks, "tt_params": tt.params}
        if original is not None:
            spec = TensorSpec(dtype_name(original.dtype), tuple(original.shape))
            decoded = self.decode([memoryview(s) for s in streams], side, spec)
            stats.update(lossy_stats(original, decoded))
            stats["tt_svd_rel_err"] = svd.rel_error
        elif any(s for s in core_stats):
            stats["cores"] = core_stats
        return Encoded(streams=streams, side=side, stats=stats)

    # -- decoding ------------------------------------------------------------------------------------
    def decode_cores(self, streams: Sequence[memoryview], side: dict[str, Any], spec: TensorSpec) -> list[np.ndarray]:
        """The cores, validated against the declared ``(N, M)`` matrix before anything is allocated."""
        if spec.dtype not in TT_DTYPES:
            raise StreamError(f"tt: declared dtype must be one of {', '.join(TT_DTYPES)}, got {spec.dtype!r}")
        if len(spec.shape) != 2 or spec.size == 0:
            raise StreamError(f"tt: declared shape must be a non-empty matrix (N, M), got {spec.shape}")
        if not isinstance(side, dict):
            raise StreamError("tt: side information must be an object")
        n = _int_list(side.get("input_dims"), "tt: side 'input_dims'", StreamError)
        m = _int_list(side.get("output_dims"), "tt: side 'output_dims'", StreamError)
        ranks = _int_list(side.get("ranks"), "tt: side 'ranks'", StreamError)
        d = len(n)
        if len(m) != d or len(ranks) != d + 1 or d > MAX_CORES:
            raise StreamError(f"tt: {d} input dims, {len(m)} output dims and {len(ranks)} ranks do not describe "
                              f"a TT-matrix of at most {MAX_CORES} cores")
        if math.prod(n) != spec.shape[0] or math.prod(m) != spec.shape[1]:
            raise StreamError(f"tt: factorisation {n} x {m} does not give the declared {spec.shape[0]}x{spec.shape[1]}")
        if ranks[0] != 1 or ranks[-1] != 1:
            raise StreamError(f"tt: ranks must start and end with 1, got {ranks}")
        bounds = tt_math.rank_bounds(n, m)
        for k, (r, b) in enumerate(zip(ranks, bounds)):
            if r > b:
                raise StreamError(f"tt: rank r_{k} = {r} exceeds its bound {b} for this factorisation")
        params = tt_math.tt_params(n, m, ranks)
        if params > spec.size:
            raise StreamError(f"tt: the cores ({params} elements) would be larger than the declared matrix ({spec.size})")
        descs = side.get("cores")
        if not isinstance(descs, list) or len(descs) != d:
            raise StreamError(f"tt: side 'cores' must list {d} nested codec descriptions")
        cores, at = [], 0
        for k, (desc, shape) in enumerate(zip(descs, tt_math.core_shapes(n, m, ranks))):
            count = nested_stream_count(desc, len(streams) - at)
            core = decode_nested(desc, streams[at:at + count], TensorSpec(spec.dtype, shape))
            cores.append(core)
            at += count
        if at != len(streams):
            raise StreamError(f"tt: {len(streams) - at} stream(s) left over after the {d} cores")
        return cores

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        cores = self.decode_cores(streams, side, spec)
        return tt_math.tt_full(cores, dtype=numpy_dtype(spec.dtype))


def is_tt(f, name: str) -> bool:
    """Whether tensor ``name`` of the open container ``f`` is stored with the ``tt`` codec."""
    return name in f and f.entry(name).codec.get("id") == TT.codec_id


def read_tt(f, name: str) -> TTMatrix:
    """The cores of TT tensor ``name`` of an open container (checksums verified), as a TTMatrix.

    Only that tensor's streams are read; the dense matrix is never formed.
    """
    e = f.entry(name)
    if e.codec.get("id") != TT.codec_id:
        raise CodecError(f"tensor {name!r} is stored with codec {e.codec.get('id')!r}, not 'tt'")
    codec = get_codec(e.codec)
    spec = TensorSpec(e.dtype, e.shape)
    streams = f.streams(name)
    with decode_errors(name, TT.codec_id):
        cores = codec.decode_cores(streams, e.side, spec)
    for k, core in enumerate(cores):
        check_decoded(core, TensorSpec(e.dtype, tuple(core.shape)), TT.codec_id)
    return TTMatrix(tuple(cores))


class TTCores(PreEncoded):
    """A TT-matrix given by its cores (a TT layer's weights), stored as a ``tt`` tensor without densifying.

    A :class:`~squeezefmt.codecs.PreEncoded` item: each core is coded with the codec the preset
    (``choose``) picks for the largest core, so with a lossless preset the cores round-trip exactly.
    """

    def __init__(self, tt: TTMatrix):
        self.tt = tt
        self.dtype = dtype_name(tt.dtype)
        self.shape = tuple(int(d) for d in tt.shape)

    def encode(self, choose) -> tuple[TT, Encoded]:
        codec = TT(inner=choose(max(self.tt.cores, key=lambda c: c.size)))
        return codec, codec.encode(self.tt)

    def dense(self) -> np.ndarray:
        return self.tt.full()

    def encode_with(self, codec: Codec) -> Encoded:
        """A ``tt`` codec stores the cores as they are; any other codec gets the dense matrix."""
        return codec.encode(self.tt) if isinstance(codec, TT) else codec.encode(self.dense())
