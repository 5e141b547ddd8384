"""Context-adaptive binary arithmetic coding (DeepCABAC style) of signed integers.

Quantized weights are mostly 0 and +-1: a Huffman code spends at least a bit on each, this coder
about the adaptive entropy (0.1-0.3 bits for a zero in a sparse tensor). The stream is defined bit by
bit in ``spec/entropy-cabac.md``; decoding needs numpy only::

    import numpy as np
    from squeezefmt.entropy import cabac

    q = np.rint(np.random.default_rng(0).laplace(0, 0.4, 100_000)).astype(np.int32)
    data = cabac.encode(q)                       # bytes: RAW or CABAC mode, whichever is smaller
    assert np.array_equal(cabac.decode(data, q.size), q)   # int32
    cabac.stream_info(data)                      # {'mode': 'cabac', 'k': 2, 'size': ...}
    cabac.rdoq(w / step, lam=0.1)                # rate-distortion optimised integers for weights w

Values are integers with ``|v| <= 2**31 - 1``. Two modes (first byte of the stream):

- ``raw`` (0): width byte ``w``, then the zigzag-mapped values packed at ``w`` bits (LSB first), so
  a stream is never more than 2 bytes larger than plain bit packing;
- ``cabac`` (1): byte ``K | g << 4`` (``K`` greater-than flags, 0..15; Exp-Golomb order ``g`` of
  the remainder, 0..15), then the arithmetic-coded payload.

The encoder writes CABAC only when it is strictly smaller than RAW. ``k=None`` / ``g=None`` pick
``K`` and ``g`` from the magnitudes (:func:`choose_k`, :func:`choose_g`).

Decoding untrusted bytes raises :class:`squeezefmt.errors.StreamError` for malformed streams
(unknown mode, trailing bytes, non-canonical termination, an over-long Exp-Golomb code); it never
allocates more than the ``count`` outputs, and its loops are bounded by ``count`` and the bins per
value (at most ``2 + 15 + 61 + 15``). An arithmetic code has no redundancy, so some corruptions decode to
other values of the right count; the container's CRC catches those.

Backends: the C extension ``_cabacc`` (``"c"``) when built, else the reference
:mod:`squeezefmt.entropy.cabac_ref` (``"python"``); identical bytes, values and errors.
``SQUEEZEFMT_PURE_PYTHON=1`` selects ``"python"`` at import; every function takes ``backend=``.
"""
from __future__ import annotations

import operator

import numpy as np

from ..errors import CodecError, StreamError
from . import cabac_ref as _ref
from .backend_switch import BackendSwitch
from . import huffman
from .cabac_ref import MAX_EG_ORDER, MAX_GT, MAX_MAGNITUDE

try:  # optional C fast path; cabac_ref is the reference it is tested against
    from . import _cabacc as _c  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _c = None

MODE_RAW = 0
MODE_CABAC = 1
MODE_NAMES = {MODE_RAW: "raw", MODE_CABAC: "cabac"}
MAX_RAW_WIDTH = 32
HEADER_BYTES = 2

BACKENDS = ("c", "python") if _c is not None else ("python",)
_COST_TABLE = _ref.cost_table()
_switch = BackendSwitch("cabac", "_cabacc", _c)

__all__ = ["encode", "encode_smallest", "choose_kg", "k_costs", "decode", "rdoq", "choose_k", "choose_g",
           "stream_info", "estimate_bits", "get_backend", "set_backend", "BACKENDS", "MAX_GT", "MAX_MAGNITUDE"]


def get_backend() -> str:
    """The default backend: ``"c"`` (the ``_cabacc`` extension) or ``"python"`` (the reference)."""
    return _switch.default


def set_backend(name: str) -> str:
    """Set the default backend (``"c"``, ``"python"`` or ``"auto"``); returns the previous one."""
    return _switch.set(name)


_resolve = _switch.resolve


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _values(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "ui":
        if arr.size == 0:
            return np.zeros(0, np.int32)
        raise CodecError(f"cabac: values must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if arr.size and (int(arr.max()) > MAX_MAGNITUDE or int(arr.min()) < -MAX_MAGNITUDE):
        raise CodecError(f"cabac: values must lie in [-{MAX_MAGNITUDE}, {MAX_MAGNITUDE}]")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _raw_width(v: np.ndarray) -> int:
    """Bits of the largest zigzag value of int32 ``v`` (the RAW mode's width)."""
    if v.size == 0:
        return 0
    return max(2 * int(v.max()), -2 * int(v.min()) - 1, 0).bit_length()


def _zigzag(v: np.ndarray) -> np.ndarray:
    v64 = v.astype(np.int64)
    return np.where(v64 < 0, -2 * v64 - 1, 2 * v64).astype(np.uint32)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    """Zigzag codes (``0, 1, 2, 3, ...``) to ``0, -1, 1, -2, ...`` as int32, in place in ``u`` when it is
    a writeable uint32 array (the RAW decoder's own): scratch is one bool per value, no int64."""
    u = np.asarray(u)
    if u.dtype != np.uint32 or not u.flags.writeable or not u.flags.c_contiguous:
        u = np.ascontiguousarray(u, dtype=np.uint32).copy()
    odd = np.empty(u.shape, dtype=bool)
    np.bitwise_and(u, 1, out=odd, casting="unsafe")
    np.right_shift(u, 1, out=u)
    out = u.view(np.int32)               # < 2**31 after the shift
    np.negative(out, out=out, where=odd)
    np.subtract(out, 1, out=out, where=odd)
    return out


def _as_bytes(data) -> bytes:
    return data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))


def choose_k(values) -> int:
    """The encoder's default ``K``: enough greater-than flags for 99 % of the non-zero magnitudes.

    ``K = min(15, max(1, q99 - 1))`` where ``q99`` is the 99th percentile of ``|v|`` over non-zero
    values (1 when all are zero). Any ``K`` in 0..15 gives a valid stream; this is a heuristic.
    """
    arr = _values(values)
    hist = np.bincount(np.minimum(np.abs(arr.astype(np.int64)), MAX_GT + 2), minlength=MAX_GT + 3)[1:]
    total = int(hist.sum())
    if total == 0:
        return 1
    # q99: the smallest magnitude m with at least 99 % of the non-zero magnitudes <= m
    q99 = int(np.searchsorted(np.cumsum(hist), 0.99 * total)) + 1
    return int(min(MAX_GT, max(1, q99 - 1)))


def _magnitude_counts(mags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-zero magnitudes (int64, ascending) and how often each occurs."""
    big = mags[mags > 0]
    if big.size and int(big.max()) <= 1 << 20:
        counts = np.bincount(big)
        vals = np.flatnonzero(counts)
        return vals, counts[vals]
    return np.unique(big, return_counts=True)


def _remainder_bits_by_order(vals: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Exp-Golomb bypass bins of the remainders ``|v| - k - 1`` of the magnitudes above ``k``, for
    each order 0..15 (``vals``/``counts`` from :func:`_magnitude_counts`)."""
    sel = vals > k
    r, c = vals[sel] - k - 1, counts[sel]
    # floor(log2(x)) of a positive integer x < 2**53 is frexp's exponent - 1, exactly
    return np.array([int(np.sum(c * (2 * (np.frexp(((r >> g) + 1).astype(np.float64))[1] - 1) + 1 + g)))
                     for g in range(MAX_EG_ORDER + 1)], dtype=np.int64)


def choose_g(values, k: int) -> int:
    """The encoder's default Exp-Golomb order: the ``g`` in 0..15 with the fewest remainder bins
    (the smallest such ``g``; 0 when no magnitude exceeds ``k``)."""
    vals, counts = _magnitude_counts(np.abs(_values(values).astype(np.int64)))
    return int(np.argmin(_remainder_bits_by_order(vals, counts, k)))


def _check_k(k) -> int:
    k = operator.index(k)
    if not 0 <= k <= MAX_GT:
        raise ValueError(f"k (greater-than flags) must be in 0..{MAX_GT}, got {k}")
    return k


def _check_g(g) -> int:
    g = operator.index(g)
    if not 0 <= g <= MAX_EG_ORDER:
        raise ValueError(f"g (Exp-Golomb order) must be in 0..{MAX_EG_ORDER}, got {g}")
    return g


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------

def encode_cabac(values, k: int, g: int = 0, *, backend: str | None = None) -> bytes:
    """Always the CABAC mode (header + payload), whatever its size; :func:`encode` picks the mode."""
    impl = _resolve(backend)
    arr, k, g = _values(values), _check_k(k), _check_g(g)
    payload = _c.encode(arr, k, g) if impl == "c" else _ref.encode_payload(arr, k, g)
    return bytes((MODE_CABAC, k | g << 4)) + payload


def encode_raw(values, *, backend: str | None = None) -> bytes:
    """Always the RAW mode: zigzag values bit-packed at the smallest width."""
    arr = _values(values)
    return bytes((MODE_RAW, _raw_width(arr))) + huffman.pack_bits(_zigzag(arr), _raw_width(arr), backend=backend)


def encode(values, k: int | None = None, g: int | None = None, *, backend: str | None = None) -> bytes:
    """Encode integers (any shape, flattened in C order) as a self-describing stream.

    ``k`` fixes the number of greater-than flags (0..15; default :func:`choose_k`), ``g`` the
    Exp-Golomb order of the remainder (0..15; default :func:`choose_g`). The result is the CABAC
    stream when it is strictly smaller than the RAW one, else the RAW stream.
    """
    arr = _values(values)
    k = choose_k(arr) if k is None else _check_k(k)
    g = choose_g(arr, k) if g is None else _check_g(g)
    coded = encode_cabac(arr, k, g, backend=backend)
    width = _raw_width(arr)
    if len(coded) < HEADER_BYTES + (arr.size * width + 7) // 8:
        return coded
    return encode_raw(arr, backend=backend)


def k_costs(values, *, backend: str | None = None) -> np.ndarray:
    """The context-coded cost of ``values`` split by bin kind (uint64[16], units of 2^-16 bits):
    ``[0]`` significance and sign, ``[i]`` the gt_i flags; see :func:`cabac_ref.k_costs`."""
    arr = _values(values)
    if _resolve(backend) == "c":
        out = np.zeros(MAX_GT + 1, dtype=np.uint64)
        _c.k_costs(arr, _COST_TABLE, out)
        return out
    return _ref.k_costs(arr)


def _remainder_bits(mags: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """For each ``K`` in 0..top: the fewest Exp-Golomb bypass bins over orders 0..15 and that order
    (:func:`choose_g`'s); ``mags``: the values' magnitudes, int64."""
    vals, counts = _magnitude_counts(mags)
    per_k = [_remainder_bits_by_order(vals, counts, k) for k in range(top + 1)]
    orders = np.array([int(np.argmin(b)) for b in per_k], dtype=np.int64)
    return np.array([b[g] for b, g in zip(per_k, orders)], dtype=np.int64), orders


def choose_kg(values, *, backend: str | None = None) -> tuple[int, int]:
    """``(K, g)`` with the shortest CABAC stream by the coder's own cost: one pass of the context
    model (:func:`k_costs`) gives the arithmetic-coded part for every ``K``, the magnitudes give the
    Exp-Golomb part; the sum is the stream's size to within the range coder's rounding (a few bytes).
    ``K`` is searched in ``0..min(15, max |v|)`` (a larger ``K`` codes the same bins)."""
    arr = _values(values)
    if arr.size == 0:
        return 1, 0
    mags = np.abs(arr.astype(np.int64))
    top = int(min(MAX_GT, int(mags.max())))
    arith = np.cumsum(k_costs(arr, backend=backend)[: top + 1].astype(np.int64))
    eg_bits, orders = _remainder_bits(mags, top)
    total = arith + (eg_bits << _ref.COST_FRACTION_BITS)
    k = int(np.argmin(total))
    return k, int(orders[k])


def encode_smallest(values, *, backend: str | None = None) -> bytes:
    """:func:`encode` with the ``K`` and ``g`` of :func:`choose_kg` instead of the percentile rule.

    :func:`choose_k` looks only at the 99th percentile of the magnitudes; what a greater-than flag
    costs depends on how well its context predicts it, which only the coder's model shows. This costs
    one pass of the context model and one encode (about 1.5 encodes' time). The bytes are an ordinary
    stream: decoders do not know how ``K`` was chosen.
    """
    arr = _values(values)
    k, g = choose_kg(arr, backend=backend)
    return encode(arr, k, g, backend=backend)


def decode(data, count: int, *, backend: str | None = None) -> np.ndarray:
    """Decode ``count`` int32 values from a stream made by :func:`encode` (StreamError if malformed)."""
    impl = _resolve(backend)
    count = operator.index(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    data = _as_bytes(data)
    if len(data) < HEADER_BYTES:
        raise StreamError(f"cabac stream truncated: {len(data)} bytes, the header needs {HEADER_BYTES}")
    mode, param = data[0], data[1]
    if mode == MODE_RAW:
        if param > MAX_RAW_WIDTH:
            raise StreamError(f"cabac stream: RAW width {param} > {MAX_RAW_WIDTH}")
        need = (count * param + 7) // 8
        if len(data) - HEADER_BYTES != need:
            raise StreamError(f"cabac stream: RAW payload has {len(data) - HEADER_BYTES} bytes, "
                              f"{count} values of {param} bits need {need}")
        if param == 0:                   # all zeros: nothing to unpack
            return np.zeros(count, dtype=np.int32)
        z = huffman.unpack_bits(data[HEADER_BYTES:], param, count, dtype=np.uint32, backend=backend)
        if count and param == 32 and int(z.max()) > 2 * MAX_MAGNITUDE:
            raise StreamError(f"cabac stream: a RAW value outside [-{MAX_MAGNITUDE}, {MAX_MAGNITUDE}]")
        return _unzigzag(z)
    if mode != MODE_CABAC:
        raise StreamError(f"cabac stream: unknown mode byte {mode}")
    k, g = param & 15, param >> 4
    if impl == "c":
        out = np.empty(count, dtype=np.int32)
        _c.decode(data, HEADER_BYTES, k, g, out)
        return out
    return _ref.decode_payload(data, HEADER_BYTES, count, k, g)


def stream_info(data) -> dict:
    """Mode, parameter and size of a stream, without decoding it."""
    data = _as_bytes(data)
    if len(data) < HEADER_BYTES or data[0] not in MODE_NAMES:
        raise StreamError("cabac stream: missing or unknown header")
    info = {"mode": MODE_NAMES[data[0]], "size": len(data)}
    if data[0] == MODE_RAW:
        info["width"] = data[1]
    else:
        info.update(k=data[1] & 15, g=data[1] >> 4)
    return info


# --------------------------------------------------------------------------------------------
# Rate-distortion optimised quantization (encoder side)
# --------------------------------------------------------------------------------------------

def rdoq(scaled, lam: float, k: int | None = None, g: int | None = None, *,
         backend: str | None = None) -> np.ndarray:
    """Integers minimising ``(x - q)**2 + lam * bits(q)`` for ``x`` in ``scaled`` (weights / step).

    ``bits(q)`` is what the adaptive coder would spend on ``q`` given everything chosen before it
    (its context states, updated as the encoder will update them; bins priced from a table of
    ``-log2 p``). ``lam = 0`` is plain rounding (half away from zero). ``k`` is the ``K`` the
    stream will be coded with (default: :func:`choose_k` of the plain rounding). Returns int32.
    """
    impl = _resolve(backend)
    x = np.ascontiguousarray(np.asarray(scaled, dtype=np.float64).reshape(-1))
    if x.size and not np.all(np.isfinite(x)):
        raise CodecError("cabac.rdoq: values must be finite")
    if x.size and float(np.max(np.abs(x))) > MAX_MAGNITUDE - 1:
        raise CodecError("cabac.rdoq: |value| too large for 31-bit integers (step too small)")
    lam = float(lam)
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    rounded = np.trunc(x + np.copysign(0.5, x)).astype(np.int32)
    k = choose_k(rounded) if k is None else _check_k(k)
    g = choose_g(rounded, k) if g is None else _check_g(g)
    if impl == "c":
        out = np.empty(x.size, dtype=np.int32)
        _c.rdoq(x, lam, k, g, _ref.rate_table(), out)
        return out
    return _ref.rdoq(x, lam, k, g)


def estimate_bits(values, k: int | None = None, g: int | None = None, *, backend: str | None = None) -> int:
    """Exact size in bits of :func:`encode`'s stream for ``values`` (encodes them)."""
    return 8 * len(encode(values, k, g, backend=backend))
