"""Run-length Elias gamma coding, bit-compatible with tensorflow-compression.

This is the entropy coder of TFC's ``PowerLawEntropyModel`` (the ``run_length_gamma_encode`` /
``run_length_gamma_decode`` ops), used by squeezefmt's ``epr`` codec for integer latents. The
bit layout is specified in ``spec/entropy-gamma.md``. A typical round trip::

    from squeezefmt.entropy import gamma
    latents = np.array([-6, 3, 0, 0], np.int32)
    data = gamma.encode(latents)                       # b"\\xd1\\x6d", the bytes tfc writes
    back = gamma.decode(data, latents.size)            # the side information: the value count
    back.reshape(latents.shape)

With TFC's ``coding_rank`` (one bit string per coding unit of the innermost dimensions)::

    strings = gamma.encode_units(latents_4d, coding_rank=2)  # == tfc's compress(), flattened
    back = gamma.decode_units(strings, latents_4d.shape, coding_rank=2)

Backends (all produce identical bytes, values and error messages):

- ``"c"``: the C extension ``squeezefmt.entropy._gammac`` (fast; used when it is built),
- ``"numpy"``: vectorized numpy (the fallback when the extension is missing),
- ``"python"``: the pure Python reference :mod:`squeezefmt.entropy.gamma_ref` (slow).

:data:`BACKEND` names the default; the environment variable ``SQUEEZEFMT_GAMMA_BACKEND`` or
:func:`set_backend` change it, and every function takes ``backend=`` to force one for a call.

Errors: a malformed stream raises :class:`squeezefmt.errors.StreamError`; input that cannot be
coded (non-integer dtype, values outside int32, INT32_MIN with ``clamp_int32_min=False``) raises
:class:`squeezefmt.errors.CodecError`. Both subclass ``ValueError``.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np

from ..errors import CodecError, StreamError
from . import gamma_ref

try:  # optional C fast path; gamma_ref is the reference it is tested against
    from . import _gammac  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _gammac = None

__all__ = [
    "BACKEND", "BACKENDS", "available_backends", "set_backend", "encode", "decode", "PartDecoder", "encode_units",
    "decode_units", "unit_shape",
]

BACKENDS = ("c", "numpy", "python")
INT32_MIN = gamma_ref.INT32_MIN
INT32_MAX = gamma_ref.INT32_MAX


def available_backends() -> List[str]:
    """The backends usable in this process, fastest first."""
    return [b for b in BACKENDS if b != "c" or _gammac is not None]


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown gamma backend {name!r}; choose one of {BACKENDS}")
    if name == "c" and _gammac is None:
        raise ValueError("the gamma C extension (squeezefmt.entropy._gammac) is not built")
    return name


def set_backend(name: Optional[str] = None) -> str:
    """Set the default backend (``None``: the fastest available) and return it."""
    global BACKEND
    BACKEND = available_backends()[0] if name is None else _check_backend(name)
    return BACKEND


BACKEND: str = available_backends()[0]
if os.environ.get("SQUEEZEFMT_GAMMA_BACKEND"):
    set_backend(os.environ["SQUEEZEFMT_GAMMA_BACKEND"])


# ---------------------------------------------------------------------------------------------
# public API


def _as_int32(values) -> np.ndarray:
    """Flat C-order int32 copy/view of an integer array; CodecError for anything else."""
    a = np.asarray(values)
    if a.dtype == np.int32:
        return np.ascontiguousarray(a).reshape(-1)
    if not np.issubdtype(a.dtype, np.integer):
        raise CodecError(
            f"gamma coding needs an integer array, got dtype {a.dtype} (round latents to integers first)")
    flat = a.reshape(-1)
    if flat.size and (flat.min() < INT32_MIN or flat.max() > INT32_MAX):
        raise CodecError("gamma coding needs values in the int32 range")
    return flat.astype(np.int32)


def encode(values, *, clamp_int32_min: bool = True, backend: Optional[str] = None) -> bytes:
    """Code an integer array (any shape, read in C order) as one coding unit.

    The result is byte-identical to ``tfc.run_length_gamma_encode(values)``. The format cannot
    represent ``INT32_MIN``; like tfc, it is coded as ``-INT32_MAX`` (so it decodes to
    ``-2147483647``) unless ``clamp_int32_min=False``, which raises :class:`CodecError` instead.
    """
    flat = _as_int32(values)
    backend = _check_backend(backend or BACKEND)
    if backend == "c":
        return _gammac.encode(flat, clamp_int32_min)
    if backend == "numpy":
        return _encode_numpy(flat, clamp_int32_min)
    return gamma_ref.encode(flat.tolist(), clamp_int32_min)


def _as_bytes_view(data) -> memoryview:
    """A flat, contiguous, byte-sized view of any bytes-like object (bytes, mmap, memoryview...)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if not mv.c_contiguous:
        mv = memoryview(mv.tobytes())
    if mv.ndim != 1 or mv.itemsize != 1 or mv.format not in ("B", "b", "c"):
        mv = mv.cast("B")
    return mv


def decode(data, count: int, *, strict: bool = True, backend: Optional[str] = None,
           out: Optional[np.ndarray] = None) -> np.ndarray:
    """Decode ``count`` int32 values (one coding unit) from a bytes-like ``data``.

    Returns a new flat ``int32`` array of length ``count``; reshape it to the tensor's shape. The
    values equal what ``tfc.run_length_gamma_decode(data, [count])`` returns for every stream tfc's
    encoder writes. Raises :class:`StreamError` when the stream is truncated, decodes past
    ``count`` (a zero run overrunning the tensor), holds a gamma code wider than 31 bits, or --
    with ``strict=True``, the default -- does not end right after the last value (more than 7
    padding bits, or non-zero padding bits). ``strict=False`` ignores everything after the last
    value, exactly as tfc's decoder does. Never allocates more than the ``count`` output values
    (plus, on the numpy backend, bounded work buffers). ``out``: a contiguous int32 array of
    ``count`` elements to decode into (the C backend writes only what it decodes, run by run).
    """
    count = _check_count(count)
    view = _as_bytes_view(data)
    backend = _check_backend(backend or BACKEND)
    if out is not None and (out.dtype != np.int32 or out.size != count or not out.flags.c_contiguous):
        raise ValueError(f"out must be a contiguous int32 array of {count} elements")
    if backend == "c":
        if out is None:
            out = np.empty(count, dtype=np.int32)
        _gammac.decode_into(view, out.reshape(-1), strict)
        return out
    if backend == "numpy":
        values = _decode_numpy(view, count, strict)
    else:
        values = np.array(gamma_ref.decode(view, count, strict), dtype=np.int32).reshape(count)
    if out is None:
        return values
    out.reshape(-1)[...] = values
    return out


class PartDecoder:
    """One coding unit of ``count`` values decoded in consecutive parts: ``into(out)`` decodes the
    next ``out.size`` values into the int32 array ``out``. The values, the accepted streams and the
    error messages are exactly those of :func:`decode` (an error surfaces in the part where the
    stream goes wrong; the strict end checks run with the part that reaches ``count``, so a caller
    that decodes ``count == 0`` values must still call ``into`` once, with an empty array).

    On the C backend the scratch is the caller's ``out``, whatever ``count`` is: a decoder can turn
    each part into something else before the next (the ``epr`` codec's 16-bit floats). The numpy and
    Python backends decode the whole unit on the first call and hand it out part by part.
    """

    def __init__(self, data, count: int, *, strict: bool = True, backend: Optional[str] = None):
        self._count = _check_count(count)
        self._view = _as_bytes_view(data)
        self._strict = bool(strict)
        self._backend = _check_backend(backend or BACKEND)
        self._state = (0, 0, 0, 0, 0)  # C: (bit, values done, pending zeros, value next, run start)
        self._done = 0
        self._values: Optional[np.ndarray] = None

    @property
    def done(self) -> int:
        """How many values have been decoded so far."""
        return self._done

    def into(self, out: np.ndarray) -> np.ndarray:
        n = out.size
        if out.dtype != np.int32 or not out.flags.c_contiguous or n > self._count - self._done:
            raise ValueError(f"out must be a contiguous int32 array of at most {self._count - self._done} elements")
        if self._backend == "c":
            self._state = _gammac.decode_part(self._view, out.reshape(-1), self._state, self._count, self._strict)
        else:
            if self._values is None:
                self._values = decode(self._view, self._count, strict=self._strict, backend=self._backend)
            out.reshape(-1)[...] = self._values[self._done:self._done + n]
        self._done += n
        return out


def _check_count(count) -> int:
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)):
        raise StreamError(f"value count must be an integer, got {count!r}")
    count = int(count)
    if count < 0:
        raise StreamError(f"value count must be >= 0, got {count}")
    return count


# ---------------------------------------------------------------------------------------------
# coding units, as PowerLawEntropyModel(coding_rank=...) forms them


def unit_shape(shape: Sequence[int], coding_rank: int):
    """``(batch_shape, unit_shape)``: the strings' shape and the shape coded in each string."""
    shape = tuple(int(d) for d in shape)
    coding_rank = int(coding_rank)
    if coding_rank < 0:
        raise ValueError("coding_rank must be at least 0")
    if coding_rank > len(shape):
        raise ValueError(f"coding_rank {coding_rank} exceeds the rank of shape {shape}")
    split = len(shape) - coding_rank
    return shape[:split], shape[split:]


def encode_units(values, coding_rank: int, *, clamp_int32_min: bool = True,
                 backend: Optional[str] = None) -> List[bytes]:
    """One string per coding unit, as ``PowerLawEntropyModel(coding_rank).compress`` makes them.

    The innermost ``coding_rank`` dimensions form a unit; the strings are returned in C order of
    the remaining (batch) dimensions, i.e. ``tfc_strings.numpy().reshape(-1)``. ``coding_rank=0``
    codes every element on its own. ``coding_rank`` must not exceed ``values.ndim`` (tfc's
    documented requirement; tfc itself silently treats a larger rank as ``ndim``), else
    ``ValueError``.
    """
    a = np.asarray(values)
    batch, unit = unit_shape(a.shape, coding_rank)
    flat = _as_int32(a)
    per_unit = int(np.prod(unit, dtype=np.int64))
    units = int(np.prod(batch, dtype=np.int64))
    rows = flat.reshape(units, per_unit)
    return [encode(rows[k], clamp_int32_min=clamp_int32_min, backend=backend) for k in range(units)]


def decode_units(strings, shape: Sequence[int], coding_rank: int, *, strict: bool = True,
                 backend: Optional[str] = None) -> np.ndarray:
    """Inverse of :func:`encode_units`: ``strings`` in C order of the batch dimensions of ``shape``.

    Like ``PowerLawEntropyModel.decompress(strings, shape[-coding_rank:])``; returns an int32
    array of ``shape``. ``strings`` may be a list, a numpy object array of any shape (e.g. tfc's
    ``compress(...).numpy()``) or, when ``coding_rank == len(shape)``, a single bytes object. A
    wrong number of strings raises :class:`StreamError`.
    """
    batch, unit = unit_shape(shape, coding_rank)
    if isinstance(strings, (bytes, bytearray, memoryview)):
        strings = [strings]  # coding_rank == ndim: tfc returns one scalar string
    elif isinstance(strings, np.ndarray):
        strings = list(strings.reshape(-1))
    else:
        strings = list(strings)
    units = int(np.prod(batch, dtype=np.int64))
    if len(strings) != units:
        raise StreamError(f"expected {units} coding-unit strings for shape {tuple(shape)} with "
                          f"coding_rank {coding_rank}, got {len(strings)}")
    per_unit = int(np.prod(unit, dtype=np.int64))
    out = np.empty((units, per_unit), dtype=np.int32)
    for k, s in enumerate(strings):
        out[k] = decode(s, per_unit, strict=strict, backend=backend)
    return out.reshape(tuple(int(d) for d in shape))


# ---------------------------------------------------------------------------------------------
# numpy backend


def _gamma_codes(x: np.ndarray):
    """Codes (uint64, first bit at bit 0) and lengths of gamma(x) for uint64 1 <= x < 2**31."""
    z = _bit_width(x) - 1
    low = x ^ (np.uint64(1) << z)
    code = ((low << np.uint64(1)) | np.uint64(1)) << z
    return code, (z * np.uint64(2) + np.uint64(1))


def _bit_width(x: np.ndarray) -> np.ndarray:
    """Bit width of 1 <= x < 2**53 (uint64), exactly, via the float exponent."""
    return np.frexp(x.astype(np.float64))[1].astype(np.uint64)


def _encode_numpy(flat: np.ndarray, clamp_int32_min: bool) -> bytes:
    n = flat.size
    nz = np.flatnonzero(flat)
    vals = flat[nz].astype(np.int64)
    if vals.size and (vals == INT32_MIN).any():
        if not clamp_int32_min:
            raise CodecError("INT32_MIN cannot be coded exactly (tfc codes it as -INT32_MAX)")
        vals[vals == INT32_MIN] = -INT32_MAX
    runs = np.diff(nz, prepend=-1).astype(np.uint64)  # 1 + zeros before each non-zero value
    trailing = n - 1 - int(nz[-1]) if nz.size else n
    if (runs.size and int(runs.max()) > gamma_ref.MAX_GAMMA) or trailing + 1 > gamma_ref.MAX_GAMMA:
        raise CodecError(f"a run of {gamma_ref.MAX_GAMMA} or more zeros cannot be coded (tfc's limit)")
    rc, rl = _gamma_codes(runs)
    mc, ml = _gamma_codes(np.abs(vals).astype(np.uint64))
    sign = (vals > 0).astype(np.uint64)
    # tokens in stream order: run gamma, sign bit, magnitude gamma for every non-zero value ...
    codes = np.stack([rc, sign, mc], axis=1).reshape(-1)
    lens = np.stack([rl, np.ones_like(rl), ml], axis=1).reshape(-1)
    if trailing:  # ... then gamma(1 + trailing zeros)
        tc, tl = _gamma_codes(np.array([trailing + 1], dtype=np.uint64))
        codes = np.concatenate([codes, tc])
        lens = np.concatenate([lens, tl])
    if not codes.size:
        return b""
    ends = np.cumsum(lens)
    total = int(ends[-1])
    starts = ends - lens
    word = (starts >> np.uint64(6)).astype(np.int64)
    shift = starts & np.uint64(63)
    lo = codes << shift  # the part in word `word` (bits above 64 fall off)
    hi = (codes >> np.uint64(1)) >> (np.uint64(63) - shift)  # the rest, in word + 1 (no shift by 64)
    words = np.zeros(total // 64 + 2, dtype=np.uint64)
    # codes never overlap and `word` is non-decreasing: OR each group of equal words at once
    first = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[first]] |= np.bitwise_or.reduceat(lo, first)
    words[word[first] + 1] |= np.bitwise_or.reduceat(hi, first)
    return words.astype("<u8").tobytes()[: (total + 7) // 8]


_CHUNK_BITS = 1 << 18  # bit positions analysed per vectorized step of the numpy decoder


def _decode_numpy(view: memoryview, count: int, strict: bool) -> np.ndarray:
    """Vectorized decoding: analyse every bit position in chunks, then follow the chain.

    For each bit position p of a chunk, numpy computes the length of the (run, sign, magnitude)
    triple that would start at p and the run value there. A Python loop then follows the chain
    of triples from bit 0 (one list lookup per non-zero value), and numpy extracts all signs and
    magnitudes at once. The end of the stream (the trailing zero run, the strict end checks and
    every error) is handed to the reference decoder at the exact bit and value where the chain
    stopped, so messages match the other backends.
    """
    out = np.zeros(count, dtype=np.int32)
    nbytes = len(view)
    nbits = 8 * nbytes
    padded = np.zeros(nbytes + 32, dtype=np.uint8)
    padded[:nbytes] = np.frombuffer(view, dtype=np.uint8)
    # windows[k] = the 8 bytes starting at byte k, as a little-endian uint64 (overlapping views)
    windows = np.ndarray((nbytes + 24,), dtype="<u8", buffer=padded, offset=0, strides=(1,))

    def window(pos):  # >= 57 valid bits starting at bit pos (zeros past the end)
        return windows[pos >> 3] >> (pos & 7).astype(np.uint64)

    def gamma_at(pos):  # (length, value) of the gamma code at bit pos; length 0 if invalid
        w = window(pos)
        lowest = (w & (~w + np.uint64(1))).astype(np.float64)  # isolate the lowest set bit
        z = np.frexp(lowest)[1].astype(np.int64) - 1  # its index (w == 0 -> -1)
        ok = (z >= 0) & (z <= gamma_ref.MAX_ZERO_BITS)
        z = np.where(ok, z, 0)
        length = 2 * z + 1
        ok &= pos + length <= nbits
        low = window(pos + z + 1) & ((np.uint64(1) << z.astype(np.uint64)) - np.uint64(1))
        value = (np.int64(1) << z) | low.astype(np.int64)
        return np.where(ok, length, 0), value

    chain: List[int] = []
    p = i = 0
    while i < count and p < nbits:
        lo = p
        pos = np.arange(lo, min(lo + _CHUNK_BITS, nbits), dtype=np.int64)
        rlen, run = gamma_at(pos)
        sign_pos = pos + rlen
        mlen, _ = gamma_at(sign_pos + 1)
        nxt = sign_pos + 1 + mlen
        bad = (rlen == 0) | (mlen == 0) | (nxt > nbits)
        jump = np.where(bad, -1, nxt).tolist()
        runs = run.tolist()
        hi = lo + len(jump)
        append = chain.append
        while p < hi:  # the sequential part: one step per non-zero value
            j = jump[p - lo]
            r = runs[p - lo]
            if j < 0 or i + r > count:  # not a complete triple, or the last (zero) run: stop
                break
            append(p)
            i += r
            p = j
        else:
            continue
        break
    if chain:
        starts = np.array(chain, dtype=np.int64)
        rlen, run = gamma_at(starts)
        sign = (window(starts + rlen) & np.uint64(1)).astype(bool)
        _, mag = gamma_at(starts + rlen + 1)
        index = np.cumsum(run) - 1
        mag = mag.astype(np.int32)
        out[index] = np.where(sign, mag, -mag)
    if i < count or strict:
        # the rest (trailing zero run, end checks, errors): a few tokens, decoded by the reference
        reader = gamma_ref.BitReader(view, start=p)
        gamma_ref.decode_into(reader, out, i, count, strict)
    return out
