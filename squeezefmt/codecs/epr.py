"""``epr``: integer latents in tfc-compatible run-length Elias gamma code, float16 log-steps.

This is the stream kind of Entropy Penalized Reparameterization (Oktay et al., "Scalable Model
Compression by Entropy Penalized Reparameterization", and the TFC tutorial "Scalable model
compression"). A tensor is represented by an integer *latent* ``q`` and one or more quantization
log-steps ``s``; its value is ::

    latent = q * exp(float32(s))                  # s stored as float16, as the tutorial does
    tensor = latent                               # transform "none" (dense kernels, biases, ...)
    tensor = from_rdft(latent, W)                 # transform "rdft" (conv kernels, see squeezefmt.rdft)

The integers are coded exactly as ``tfc.PowerLawEntropyModel(coding_rank=latent.ndim).compress``
codes them (one coding unit, C order, :mod:`squeezefmt.entropy.gamma`), so the gamma part of the
stream is byte-identical to the bit string tfc's tutorial stores in a ``tf.string`` variable.

One stream per tensor (a second one would cost up to 63 bytes of alignment padding, which matters
for models that compress to a few kilobytes)::

    stream = float16 log-steps (little-endian, C order of their shape) || run-length gamma code of q

Version 2 of the stream layout adds side ``"step_dtype": "float32"``: the log-steps are stored as
float32, for EPR-trained log-steps that float16 cannot represent exactly (the packer keeps them
exact and reports it; it writes version 1 whenever the steps are float16-exact).

Side information (absent keys take their defaults): ``"transform"`` (``"none"`` | ``"rdft"``) and
``"step_dims"`` (int, default 0): the log-steps have shape ``latent_shape[ndim - step_dims:]`` and
are broadcast over the leading latent dimensions (0: one step for the tensor; 3 for an RDFT
latent: one step per frequency and real/imaginary part, as the tutorial trains them).

Two ways to produce these streams:

- :class:`EPR` quantizes an ordinary float tensor after training (post-training EPR): it picks the
  log-step from a target, ``max_rel_rms`` (largest step whose relative RMS error stays within the
  target) or ``bits_per_weight`` (smallest step whose stream fits the budget), and for rank-4 conv
  kernels with ``transform="auto"`` tries both the plain and the RDFT latent and keeps the better.
- :class:`EPRLatents` stores integer latents and log-steps that an EPR-trained model already has
  (see :func:`quantize_latent`), without quantizing anything again.

The spec is ``spec/codecs.md`` (section ``epr``).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..buffers import empty_aligned
from ..dtypes import FLOAT_NAMES, dtype_name, from_storage, numpy_dtype
from ..errors import CodecError, StreamError
from ..rdft import from_rdft, rdft_shape, to_rdft
from .base import Codec, Encoded, PreEncoded, TensorSpec, expect_streams, lossy_stats
from .registry import register

TRANSFORMS = ("none", "rdft")
STEP_DTYPES = ("float16", "float32")
#: Largest log-step a decoder accepts: exp(88.72...) overflows float32.
MAX_LOG_STEP = 88.0
#: Smallest log-step the post-training search tries (exp() stays a normal float32).
MIN_SEARCH_LOG_STEP = -87.0
#: Default post-training target when an :class:`EPR` codec is given none.
DEFAULT_MAX_REL_RMS = 0.02
INT32_MAX = 2**31 - 1


def _gamma():
    from ..entropy import gamma  # noqa: PLC0415 - imported on first use

    return gamma


# ------------------------------------------------------------------------------------------------
# shapes and the dequantization every decoder performs


def latent_shape(shape: Sequence[int], transform: str) -> tuple[int, ...]:
    """Shape of the integer latent of a tensor of ``shape`` under ``transform``."""
    shape = tuple(int(d) for d in shape)
    if transform == "none":
        return shape
    if transform == "rdft":
        if len(shape) != 4 or shape[0] < 1 or shape[1] < 1:
            raise StreamError(f"epr: transform 'rdft' needs an (H, W, I, O) shape with H, W >= 1, got {shape}")
        return rdft_shape(shape)
    raise StreamError(f"epr: unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")


def step_shape(lshape: Sequence[int], step_dims: int) -> tuple[int, ...]:
    """Shape of the log-steps: the last ``step_dims`` dimensions of the latent shape."""
    lshape = tuple(lshape)
    return lshape[len(lshape) - step_dims:] if step_dims else ()


def dequantize(q: np.ndarray, log_steps: np.ndarray, transform: str, shape: Sequence[int],
               dtype: str = "float32") -> np.ndarray:
    """The tensor of integer latents ``q`` (latent-shaped) and float16 (or float32) ``log_steps``.

    ``latent = float32(q) * exp(float32(log_steps))`` (float32 arithmetic, as the tutorial's
    ``decompress_latent``), then the inverse RDFT for ``transform="rdft"``, then a cast to ``dtype``.
    """
    log_steps = np.asarray(log_steps)
    if log_steps.dtype != np.float32:
        log_steps = log_steps.astype(np.float16)
    steps = np.exp(log_steps.astype(np.float32))
    q = np.asarray(q)
    latent = empty_aligned(q.shape, np.float32)  # float32(q) * step, without a temporary copy of q
    latent[...] = q
    latent *= steps  # broadcasts over the leading dims
    if transform == "rdft":
        out = from_rdft(latent, width=int(shape[1]), dtype=np.float32)
    else:
        out = latent.reshape(tuple(shape))
    if dtype == "float32":
        return out
    if dtype == "bfloat16":  # round to nearest even on the float32 bits (NaN cannot occur here)
        u = np.ascontiguousarray(out).view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return from_storage(u.astype(np.uint16), "bfloat16")
    return out.astype(numpy_dtype(dtype))


def float16_exact(values: np.ndarray) -> bool:
    """Whether every value survives a round trip through float16 bit for bit (as float32)."""
    v = np.asarray(values, dtype=np.float32)
    return bool(np.array_equal(v.astype(np.float16).astype(np.float32).view(np.uint32), v.view(np.uint32)))


def quantize_latent(latent: np.ndarray, log_step: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer latents and log-steps of an EPR-trained variable pair, as tfc computes them.

    ``q = round(latent / exp(log_step))`` in float32 (round half to even, like ``tf.round``), the
    value ``PowerLawEntropyModel.compress(latent / tf.exp(log_step))`` codes; the log-step is then
    rounded to float16 for storage, as in the tutorial's ``compress_latent`` -- unless ``exact`` is
    set and float16 cannot hold it exactly: then it stays float32 (stream layout version 2).
    """
    latent = np.asarray(latent, dtype=np.float32)
    log_step = np.asarray(log_step, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        x = latent / np.exp(log_step)
    if not np.all(np.isfinite(x)):
        raise CodecError("epr: latent / exp(log_step) is not finite")
    q = np.round(x)
    if q.size and float(np.max(np.abs(q))) > INT32_MAX:
        raise CodecError("epr: a quantized latent does not fit int32 (log-step too small)")
    log16 = log_step.astype(np.float16)
    if not np.all(np.isfinite(log16)) or (log16.size and float(np.max(log16)) > MAX_LOG_STEP):
        raise CodecError(f"epr: log-steps must be finite and at most {MAX_LOG_STEP} as float16")
    if exact and not float16_exact(log_step):
        return q.astype(np.int32), log_step
    return q.astype(np.int32), log16


#: Latent coders: tfc's run-length gamma (the default and the compatibility promise), or the
#: context-adaptive arithmetic coder of spec/entropy-cabac.md; "auto" keeps the smaller.
CODERS = ("gamma", "cabac", "auto")


def _step_bytes(log_steps: np.ndarray) -> bytes:
    """The log-steps as stored: float16, or float32 when given as float32 (stream layout version 2)."""
    step_dtype = "<f4" if np.asarray(log_steps).dtype == np.float32 else "<f2"
    return np.ascontiguousarray(log_steps, dtype=step_dtype).tobytes()


def build_stream(q: np.ndarray, log_steps: np.ndarray, coder: str = "gamma") -> bytes:
    """The ``epr`` stream: log-steps (float16; float32 when given so) then the code of ``q`` (C order);
    see :func:`code_latents`."""
    return _step_bytes(log_steps) + code_latents(q, coder)[0]


def code_latents(q: np.ndarray, coder: str = "gamma") -> tuple[bytes, str]:
    """(bytes, coder used) of the latents: gamma, cabac, or for ``"auto"`` the smaller (gamma on ties)."""
    if coder == "gamma":
        return _gamma().encode(q), "gamma"
    from ..entropy import cabac

    coded = cabac.encode_smallest(np.asarray(q).reshape(-1))
    if coder == "cabac":
        return coded, "cabac"
    plain = _gamma().encode(q)
    return (coded, "cabac") if len(coded) < len(plain) else (plain, "gamma")


def _side(transform: str, step_dims: int, coder: str = "gamma", step_dtype: str = "float16") -> dict[str, Any]:
    side: dict[str, Any] = {}
    if transform != "none":
        side["transform"] = transform
    if step_dims:
        side["step_dims"] = step_dims
    if coder != "gamma":
        side["coder"] = coder
    if step_dtype != "float16":
        side["step_dtype"] = step_dtype
    return side


def _round_stats(stats: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.4g}") if math.isfinite(v) else v for k, v in stats.items()}


def parse_side(side: Any, spec: TensorSpec) -> tuple[str, int, tuple[int, ...], tuple[int, ...]]:
    """Validate untrusted side information: ``(transform, step_dims, latent_shape, step_shape)``."""
    if not isinstance(side, dict):
        raise StreamError("epr: side information must be an object")
    unknown = set(side) - {"transform", "step_dims", "coder", "step_dtype"}
    if unknown:
        raise StreamError(f"epr: unknown side information {sorted(unknown)}")
    if side.get("step_dtype", "float16") not in STEP_DTYPES:
        raise StreamError(f"epr: side 'step_dtype' must be one of {list(STEP_DTYPES)}, got {side['step_dtype']!r}")
    transform = side.get("transform", "none")
    if transform not in TRANSFORMS:
        raise StreamError(f"epr: side 'transform' must be one of {list(TRANSFORMS)}, got {transform!r}")
    if spec.dtype not in FLOAT_NAMES:
        raise StreamError(f"epr decodes to float tensors only, the header declares {spec.dtype}")
    lshape = latent_shape(spec.shape, transform)
    step_dims = side.get("step_dims", 0)
    if not isinstance(step_dims, int) or isinstance(step_dims, bool) or not 0 <= step_dims <= len(lshape):
        raise StreamError(f"epr: side 'step_dims' must be an integer in [0, {len(lshape)}], got {step_dims!r}")
    return transform, step_dims, lshape, step_shape(lshape, step_dims)


def _read_steps(view: memoryview, sshape: tuple[int, ...], side: Any) -> np.ndarray:
    nsteps = math.prod(sshape)
    wide = side.get("step_dtype", "float16") == "float32"
    size = (4 if wide else 2) * nsteps
    if len(view) < size:
        raise StreamError(f"epr: stream has {len(view)} bytes, the {nsteps} log-steps alone need {size}")
    if wide:
        log_steps = np.frombuffer(view[:size], dtype="<f4").astype(np.float32).reshape(sshape)
    else:
        log_steps = np.frombuffer(view[:size], dtype="<f2").astype(np.float16).reshape(sshape)
    if not np.all(np.isfinite(log_steps)) or (log_steps.size and float(np.max(log_steps)) > MAX_LOG_STEP):
        raise StreamError(f"epr: log-steps must be finite and at most {MAX_LOG_STEP}")
    return log_steps


def _byte_view(stream) -> memoryview:
    return memoryview(stream).cast("B") if not isinstance(stream, (bytes, bytearray)) else memoryview(stream)


def _decode_ints(side: Any, data, count: int, out: np.ndarray | None = None) -> np.ndarray:
    """The ``count`` int32 latents coded in ``data`` with the side's coder (``out``: gamma decodes into it)."""
    coder = side.get("coder", "gamma")
    if coder == "gamma":
        return _gamma().decode(data, count, out=out)
    if coder == "cabac":
        from ..entropy import cabac

        q = cabac.decode(data, count)
        if out is None:
            return q
        out[...] = q.reshape(out.shape)
        return out
    raise StreamError(f"epr: side 'coder' must be 'gamma' or 'cabac', got {coder!r}")


def read_latents(stream, side: Any, spec: TensorSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """``(q, log_steps, transform)`` of one ``epr`` stream: int32 latents and float16 (v2: float32) log-steps."""
    transform, _, lshape, sshape = parse_side(side, spec)
    view = _byte_view(stream)
    log_steps = _read_steps(view, sshape, side)
    q = _decode_ints(side, view[log_steps.nbytes:], math.prod(lshape)).reshape(lshape)
    return q, log_steps, transform


#: Elements converted per step by :func:`decode_stream` (its float32 scratch; for 16-bit floats also
#: its int32 scratch: the latents are decoded part by part, each converted before the next).
DECODE_CHUNK = 1 << 16


def decode_stream(stream, side: Any, spec: TensorSpec) -> np.ndarray:
    """Decode one ``epr`` stream into the tensor ``spec`` declares.

    Float32 and float64 tensors without a transform (the common case) are decoded in place: the
    integer latents go straight into the output buffer (float64: its upper half), which the
    dequantization then overwrites chunk by chunk, so no latent-sized scratch is needed and only
    what the stream actually decodes is touched. 16-bit floats, whose output cannot hold int32
    latents, decode DECODE_CHUNK latents at a time into a small int32 buffer
    (:class:`~squeezefmt.entropy.gamma.PartDecoder`) and convert each part before the next.
    ``rdft`` tensors (conv kernels) and the cabac coder go through :func:`dequantize`. Same
    arithmetic as :func:`dequantize` in every case.
    """
    transform, _, lshape, sshape = parse_side(side, spec)
    if transform != "none" or side.get("coder", "gamma") != "gamma":
        q, log_steps, transform = read_latents(stream, side, spec)
        return dequantize(q, log_steps, transform, spec.shape, spec.dtype)
    view = _byte_view(stream)
    log_steps = _read_steps(view, sshape, side)
    n, nsteps = math.prod(lshape), log_steps.size
    out = empty_aligned(lshape, numpy_dtype(spec.dtype))
    flat = out.reshape(-1)
    steps = np.exp(log_steps.astype(np.float32)).reshape(-1)

    def scale(part: np.ndarray, a: int) -> np.ndarray:
        part = part.astype(np.float32)  # a copy: read before any (overlapping) write of the output
        part *= steps[0] if nsteps == 1 else steps[np.arange(a, a + part.size) % nsteps]
        return part

    if spec.dtype in ("float32", "float64"):
        words = flat.view(np.int32)
        q = words[words.size - n:]
        _decode_ints(side, view[log_steps.nbytes:], n, out=q)
        for a in range(0, n, DECODE_CHUNK):
            b = min(n, a + DECODE_CHUNK)
            flat[a:b] = scale(q[a:b], a)
        return out.reshape(spec.shape)
    # 16-bit floats: the int32 latents do not fit in the output; decode and convert them part by part
    decoder = _gamma().PartDecoder(view[log_steps.nbytes:], n)
    q = np.empty(min(n, DECODE_CHUNK), np.int32)
    for a in range(0, max(n, 1), DECODE_CHUNK):  # n == 0: one empty part (the end-of-stream checks)
        b = min(n, a + DECODE_CHUNK)
        flat[a:b] = _cast16(scale(decoder.into(q[:b - a]), a), spec.dtype)
    return out.reshape(spec.shape)


def _cast16(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 ``values`` as float16 or bfloat16 storage, exactly as :func:`dequantize` casts them."""
    if dtype == "bfloat16":
        u = values.view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).view(numpy_dtype("bfloat16"))
    return values.astype(np.float16)


# ------------------------------------------------------------------------------------------------
# codecs


@register
class EPR(Codec):
    """Post-training EPR: quantize a float tensor with a step chosen from a target, gamma-code it.

    ``max_rel_rms``: the largest (float16) log-step whose reconstruction has a relative RMS error of
    at most this; ``bits_per_weight``: the smallest log-step whose stream (log-steps included) fits
    in this many bits per element. Give at most one (default: ``max_rel_rms=0.02``).
    ``transform``: ``"auto"`` (rank-4 kernels with H*W > 1 try ``"rdft"`` too and keep the smaller
    stream, or the smaller error for a bit budget), ``"none"`` or ``"rdft"``.
    """

    codec_id = "epr"
    version = 2  # reads 1 and 2; writes 1 unless log-steps are stored as float32 (EPRLatents)
    lossless = False

    def describe(self) -> dict[str, Any]:
        return {"id": self.codec_id, "version": 1, "config": self.get_config()}

    def __init__(self, max_rel_rms: float | None = None, bits_per_weight: float | None = None,
                 transform: str = "auto"):
        if max_rel_rms is not None and bits_per_weight is not None:
            raise CodecError("epr: give max_rel_rms or bits_per_weight, not both")
        for name, v in (("max_rel_rms", max_rel_rms), ("bits_per_weight", bits_per_weight)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                  or not math.isfinite(v)):
                raise CodecError(f"epr: {name} must be a positive number, got {v!r}")
        if transform not in ("auto",) + TRANSFORMS:
            raise CodecError(f"epr: transform must be 'auto', 'none' or 'rdft', got {transform!r}")
        self.max_rel_rms = None if max_rel_rms is None else float(max_rel_rms)
        self.bits_per_weight = None if bits_per_weight is None else float(bits_per_weight)
        self.transform = transform

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.max_rel_rms is not None:
            config["max_rel_rms"] = self.max_rel_rms
        if self.bits_per_weight is not None:
            config["bits_per_weight"] = self.bits_per_weight
        if self.transform != "auto":
            config["transform"] = self.transform
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "EPR":
        try:
            return cls(**config)
        except (TypeError, CodecError) as exc:
            raise StreamError(f"codec 'epr': invalid config {config!r}: {exc}") from None

    # -- encoding (post-training) ----------------------------------------------------------------

    def encode(self, array: np.ndarray) -> Encoded:
        array = np.asarray(array)
        name = dtype_name(array.dtype)
        if name not in FLOAT_NAMES:
            raise CodecError(f"epr quantizes float tensors only, got {name}")
        original = array.astype(np.float64)
        if not np.all(np.isfinite(original)):
            raise CodecError("epr: the tensor has NaN or infinite values")
        candidates = []
        for transform in self._transforms(array.shape):
            candidates.append(self._encode_with(original, transform, name))
        if self.bits_per_weight is not None:
            best = min(candidates, key=lambda c: (c[2]["rel_rms_err"], len(c[0])))
        else:
            best = min(candidates, key=lambda c: (len(c[0]), c[2]["rel_rms_err"]))
        stream, side, stats = best
        return Encoded(streams=[stream], side=side, stats=_round_stats(stats))

    def _transforms(self, shape) -> list[str]:
        conv = len(shape) == 4 and shape[0] >= 1 and shape[1] >= 1
        if self.transform == "rdft":
            if not conv:
                raise CodecError(f"epr: transform 'rdft' needs an (H, W, I, O) kernel, got shape {tuple(shape)}")
            return ["rdft"]
        if self.transform == "auto" and conv and shape[0] * shape[1] > 1:
            return ["none", "rdft"]
        return ["none"]

    def _encode_with(self, original: np.ndarray, transform: str, dtype: str):
        shape = original.shape
        latent = to_rdft(original, dtype=np.float32) if transform == "rdft" else original.astype(np.float32)
        size = max(original.size, 1)
        norm = float(np.sqrt(np.mean(original * original))) if original.size else 0.0
        cache: dict[float, Any] = {}

        def quantize(v: float):
            if v not in cache:
                step = np.exp(np.float32(v))
                q = np.round(latent / step)
                if q.size and float(np.max(np.abs(q))) > INT32_MAX:
                    cache[v] = None
                else:
                    cache[v] = q.astype(np.int32)
            return cache[v]

        def error(v: float) -> float:
            q = quantize(v)
            if q is None:
                return math.inf
            rec = dequantize(q, np.float16(v), transform, shape, "float32").astype(np.float64)
            diff = rec - original
            rms = float(np.sqrt(np.mean(diff * diff))) if diff.size else 0.0
            return rms / norm if norm > 0 else rms

        def bits(v: float) -> float:
            q = quantize(v)
            return math.inf if q is None else 8.0 * (2 + len(_gamma().encode(q)))

        maxabs = float(np.max(np.abs(latent))) if latent.size else 0.0
        if maxabs == 0.0:
            v = 0.0
        else:
            # hi: every latent rounds to 0; lo: q up to ~5e8, any sensible target is met. Both stay
            # where exp() is a normal float32 and the decoder accepts the log-step.
            hi = _f16(min(math.log(maxabs) + 1.0, MAX_LOG_STEP))
            lo = _f16(min(max(math.log(maxabs) - 20.0, MIN_SEARCH_LOG_STEP), hi))
            if self.bits_per_weight is not None:
                budget = self.bits_per_weight * size
                v = _boundary(lo, hi, lambda x: bits(x) > budget, want_small=False)
            else:
                target = self.max_rel_rms if self.max_rel_rms is not None else DEFAULT_MAX_REL_RMS
                v = _boundary(lo, hi, lambda x: error(x) <= target, want_small=True)
        log16 = np.float16(v)
        q = quantize(float(log16))
        if q is None:  # pragma: no cover - the search never picks such a step
            raise CodecError("epr: no usable quantization step")
        stream = build_stream(q, np.asarray(log16))
        rec = dequantize(q, log16, transform, shape, "float32")
        stats = lossy_stats(original, rec)
        stats["bits_per_weight"] = 8.0 * len(stream) / size
        return stream, _side(transform, 0), stats

    # -- decoding ----------------------------------------------------------------------------------

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        return decode_stream(streams[0], side, spec)


class EPRLatents(PreEncoded):
    """The integer latents of an EPR-trained tensor, stored as they are (no quantization).

    ``q`` is the int32 latent (for ``transform="rdft"`` of shape ``(I, O, H, W // 2 + 1, 2)``),
    ``log_steps`` the log-steps, whose shape is a suffix of the latent shape (float16, or float32 kept
    exactly -- stream layout version 2, side ``step_dtype`` -- when given as float32 values that float16
    cannot represent); ``shape`` and
    ``dtype`` are those of the tensor a decoder produces (``shape`` defaults to the latent shape for
    ``transform="none"``). The header describes the codec as plain ``epr`` (any ``epr`` decoder reads
    it). A :class:`~squeezefmt.codecs.PreEncoded` item: ``squeezefmt.save({"w": EPRLatents(...)})``.
    """

    def __init__(self, q: np.ndarray, log_steps: np.ndarray, transform: str = "none", *,
                 shape: Sequence[int] | None = None, dtype: str = "float32", coder: str = "gamma"):
        if coder not in CODERS:
            raise CodecError(f"epr: coder must be one of {list(CODERS)}, got {coder!r}")
        self.coder = coder   # "gamma" (tfc's code, the default), "cabac" or "auto" (the smaller)
        q = np.asarray(q)
        if not np.issubdtype(q.dtype, np.integer):
            raise CodecError(f"epr: latents must be integers, got {q.dtype}")
        self.q = q.astype(np.int32)
        steps = np.asarray(log_steps)
        wide = steps.dtype == np.float32 and not float16_exact(steps)
        self.log_steps = steps.astype(np.float32 if wide else np.float16)
        if transform not in TRANSFORMS:
            raise CodecError(f"epr: transform must be 'none' or 'rdft', got {transform!r}")
        self.transform = transform
        k = self.log_steps.ndim
        if k > self.q.ndim or tuple(self.q.shape[self.q.ndim - k:]) != tuple(self.log_steps.shape):
            raise CodecError(f"epr: log-step shape {self.log_steps.shape} is not a suffix of the latent "
                             f"shape {self.q.shape}")
        if shape is None:
            if transform != "none":
                raise CodecError("epr: give the tensor shape for transform 'rdft'")
            shape = self.q.shape
        self.shape = tuple(int(d) for d in shape)
        expected = latent_shape(self.shape, transform)
        if tuple(self.q.shape) != expected:
            raise CodecError(f"epr: latent shape {self.q.shape} does not match tensor shape {self.shape} "
                             f"under transform {transform!r} (expected {expected})")
        if dtype not in FLOAT_NAMES:
            raise CodecError(f"epr decodes to float tensors only, got {dtype}")
        self.dtype = dtype

    @property
    def wide_steps(self) -> bool:
        """Whether the log-steps are stored as float32 (not float16-exact)."""
        return self.log_steps.dtype == np.float32

    def __repr__(self) -> str:
        return f"EPRLatents(shape={self.q.shape}, steps={self.log_steps.shape}, transform={self.transform!r})"

    def encode(self, choose=None) -> tuple[EPR, Encoded]:
        # No stats: the header is a noticeable part of a model that packs to a few kilobytes, and
        # `squeezefmt info` derives the size ratio from the stream lengths anyway.
        payload, used = code_latents(self.q, self.coder)
        stream = _step_bytes(self.log_steps) + payload
        if self.wide_steps:  # float32 log-steps: layout version 2, and a stat that says why
            side = _side(self.transform, self.log_steps.ndim, used, "float32")
            return _WideStepsEPR(), Encoded(streams=[stream], side=side, stats={"log_steps": "float32: not float16-exact"})
        return EPR(), Encoded(streams=[stream], side=_side(self.transform, self.log_steps.ndim, used))

    def dense(self) -> np.ndarray:
        """The tensor a decoder produces."""
        return dequantize(self.q, self.log_steps, self.transform, self.shape, self.dtype)


class _WideStepsEPR(EPR):
    """How :class:`EPRLatents` with float32 log-steps describe their codec: ``epr``, layout version 2."""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": 2}


# ------------------------------------------------------------------------------------------------
# search helpers


def _f16(x: float) -> float:
    return float(np.float16(x))


def _boundary(lo: float, hi: float, ok, want_small: bool) -> float:
    """Bisection over float16 log-steps between ``lo`` and ``hi``.

    ``want_small=True``: ``ok`` holds for small steps (an error bound); returns the largest ok value.
    ``want_small=False``: ``ok`` is "too many bits", true for small steps; returns the smallest value
    for which it is false. Best effort at the bracket ends when the target cannot be met.
    """
    if not ok(lo) or ok(hi):  # the target is met everywhere / nowhere: best effort at an end
        return lo if not ok(lo) else hi
    # invariant: ok(lo) is True, ok(hi) is False
    while True:
        mid = _f16((lo + hi) / 2)
        if mid == lo or mid == hi:
            break
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo if want_small else hi
