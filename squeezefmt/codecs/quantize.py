"""``quant``: uniform scalar quantization (1..8 or 16 bits), per tensor or per output channel.

Each channel (the whole tensor, or every slice along ``axis`` with ``per_channel=True``) gets an
affine grid ``value = (q - zero_point) * step`` with integer ``q`` in ``0 .. 2**bits - 1``. The grid
always contains 0 exactly (``q = zero_point``), so pruned weights stay exactly zero, and it covers
``[min(x, 0), max(x, 0)]`` so the error is at most ``step / 2`` (for ``bits >= 2``). The integers
are canonical-Huffman coded (:mod:`squeezefmt.entropy.huffman`): trained weights concentrate
around zero, so 8-bit indices typically cost 5-6 bits.

    >>> import numpy as np
    >>> from squeezefmt.codecs.quantize import Quantize
    >>> w = np.random.default_rng(0).normal(0, 0.05, (256, 64)).astype(np.float32)
    >>> enc = Quantize(bits=8, per_channel=True).encode(w)
    >>> sorted(enc.stats)
    ['max_abs_err', 'rel_rms_err']

Stream layout: spec/codecs.md, section "quant".
"""
from __future__ import annotations

import numpy as np

from ..buffers import _decodec, empty_aligned, gather
from ..dtypes import FLOAT_NAMES, dtype_name, numpy_dtype
from ..entropy import huffman
from ..errors import CodecError, StreamError
from .base import Codec, Encoded, TensorSpec, expect_streams, lossy_stats
from .index_coding import check_coder, decode_indices, encode_indices, is_huffman
from .registry import register

ALLOWED_BITS = tuple(range(1, 9)) + (16,)


def _check_bits(bits) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in ALLOWED_BITS:
        raise StreamError(f"quant: bits must be one of 1..8 or 16, got {bits!r}")
    return bits


def _channel_layout(shape: tuple[int, ...], per_channel: bool, axis: int) -> tuple[int, int | None]:
    """(number of channels, normalized axis or None for per-tensor)."""
    if not per_channel or len(shape) == 0:
        return 1, None
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise StreamError(f"quant: channel axis {axis} is out of range for shape {tuple(shape)}")
    ax = axis % ndim
    return int(shape[ax]), ax


def _broadcast_shape(ndim: int, ax: int | None, channels: int) -> tuple[int, ...]:
    if ax is None:
        return (1,) * ndim
    s = [1] * ndim
    s[ax] = channels
    return tuple(s)


def grid(lo: np.ndarray, hi: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps (float32) and zero points (int64) of per-channel grids covering ``[lo, hi]`` (lo <= 0 <= hi)."""
    qmax = (1 << bits) - 1
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    span = hi - lo
    zp = np.zeros(lo.shape, np.int64)
    step = np.zeros(lo.shape, np.float64)
    nz = span > 0
    if qmax == 1:  # one non-zero level: spend it on the side with the larger magnitude
        neg = nz & (-lo > hi)
        zp[neg] = 1
        step[nz] = np.where(neg[nz], -lo[nz], hi[nz])
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(nz, -lo / np.where(nz, span, 1.0), 0.0) * qmax
        best_step = np.full(lo.shape, np.inf)
        for z in (np.floor(x), np.ceil(x)):        # the neighbour of the ideal zero point with the smaller step
            z = z.astype(np.int64)
            z = np.where(lo < 0, np.maximum(z, 1), z)
            z = np.where(hi > 0, np.minimum(z, qmax - 1), z)
            with np.errstate(invalid="ignore", divide="ignore"):
                up = np.where(hi > 0, hi / np.maximum(qmax - z, 1), 0.0)
                down = np.where(lo < 0, -lo / np.maximum(z, 1), 0.0)
            cand = np.maximum(up, down)
            better = cand < best_step
            best_step = np.where(better, cand, best_step)
            zp = np.where(better, z, zp)
        step = np.where(nz, best_step, 0.0)
        zp = np.where(nz, zp, 0)
    step32 = step.astype(np.float32)
    # Round the stored step up so the grid still covers the extremes after the float32 rounding.
    low = step32.astype(np.float64) < step
    step32[low] = np.nextafter(step32[low], np.float32(np.inf))
    if not np.all(np.isfinite(step32)):
        raise CodecError("quant: the value range does not fit a float32 step")
    return step32, zp


#: Elements dequantized per step when decoding (bounds the decoder's scratch memory).
DECODE_CHUNK_ELEMENTS = 1 << 16


def dequantize(q: np.ndarray, zp: np.ndarray, step: np.ndarray, out_name: str) -> np.ndarray:
    """``(q - zp) * step`` in the output's precision (float64 for float64 tensors, else float32)."""
    work = np.float64 if out_name == "float64" else np.float32
    levels = q.astype(np.int64) - zp
    vals = levels.astype(work) * step.astype(work)
    return cast_float(vals, out_name)


def cast_float(values: np.ndarray, out_name: str) -> np.ndarray:
    """Float ``values`` as container float type ``out_name``.

    bfloat16 without ml_dtypes is returned as its uint16 bits (round to nearest even), as the
    container's dtype rules allow.
    """
    target = numpy_dtype(out_name)
    if out_name == "bfloat16" and target == np.dtype("<u2"):
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        bits = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        nan = np.isnan(np.asarray(values, dtype=np.float32))
        bits[nan] = 0x7FC0
        return bits.astype(np.uint16)
    return np.asarray(values).astype(target)


def dequantize_channels_reference(sym, out, shift, zp, step, ax: int, qmax: int, out_name: str) -> None:
    """Per-channel ``out = dequantize(sym - shift)`` (numpy reference of the C ``dequant`` loop).

    Works in slices of the leading axis, so the int64/float temporaries of the formula stay small
    instead of 2-3 times the tensor (lazy inference's peak memory sees them).
    """
    rows = max(1, DECODE_CHUNK_ELEMENTS // max(1, sym[0].size))
    for r0 in range(0, sym.shape[0], rows):
        part = slice(r0, r0 + rows)
        params = (shift[part], zp[part], step[part]) if ax == 0 else (shift, zp, step)
        q = sym[part].astype(np.int64) - params[0]
        if int(q.min()) < 0 or int(q.max()) > qmax:
            raise StreamError(f"quant: a decoded index lies outside its channel's 0..{qmax} range")
        out[part] = dequantize(q, params[1], params[2], out_name)


@register
class Quantize(Codec):
    """Uniform scalar quantization, ``bits`` in 1..8 (or 16), per tensor or per channel along ``axis``."""

    codec_id = "quant"
    version = 1
    lossless = False

    def __init__(self, bits: int = 8, per_channel: bool = False, axis: int = -1, coder: str = "huffman"):
        self.bits = _check_bits(bits)
        if not isinstance(per_channel, bool):
            raise StreamError(f"quant: per_channel must be a boolean, got {per_channel!r}")
        if not isinstance(axis, int) or isinstance(axis, bool) or not -64 <= axis < 64:
            raise StreamError(f"quant: axis must be an integer, got {axis!r}")
        self.per_channel = per_channel
        self.axis = axis
        self.coder = check_coder(coder, "quant")   # index coder (codecs/index_coding.py)

    def get_config(self):
        cfg = {"bits": self.bits, "per_channel": self.per_channel, "axis": self.axis}
        if self.coder != "huffman":      # absent for Huffman: files from before the option are unchanged
            cfg["coder"] = self.coder
        return cfg

    # -- the stream -------------------------------------------------------------------------

    @property
    def _zp_dtype(self) -> np.dtype:
        return np.dtype("u1") if self.bits <= 8 else np.dtype("<u2")

    def quantize(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
        """(q as int64 in the tensor's shape, steps, zero points, channel axis) for a float tensor."""
        name = dtype_name(array.dtype)
        if name not in FLOAT_NAMES:
            raise CodecError(f"quant: only float tensors can be quantized, got {name}")
        x = np.asarray(array, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise CodecError("quant: the tensor has NaN or infinite values")
        channels, ax = _channel_layout(x.shape, self.per_channel, self.axis)
        if x.size == 0:
            return np.zeros(x.shape, np.int64), np.zeros(channels, np.float32), np.zeros(channels, np.int64), ax
        if ax is None:
            lo, hi = np.array([x.min()]), np.array([x.max()])
        else:
            other = tuple(i for i in range(x.ndim) if i != ax)
            lo, hi = x.min(axis=other), x.max(axis=other)
        step, zp = grid(lo, hi, self.bits)
        bshape = _broadcast_shape(x.ndim, ax, channels)
        s = step.astype(np.float64).reshape(bshape)
        with np.errstate(invalid="ignore", divide="ignore"):
            levels = np.where(s > 0, np.rint(x / np.where(s > 0, s, 1.0)), 0.0)
        q = np.clip(levels + zp.reshape(bshape), 0, (1 << self.bits) - 1).astype(np.int64)
        return q, step, zp, ax

    def _symbol_shift(self, zp: np.ndarray) -> np.ndarray:
        """Per-channel offset added to q so that equal levels share a symbol (bits <= 8 only)."""
        if self.bits > 8 or zp.size == 0:
            return np.zeros_like(zp)
        return int(zp.max()) - zp

    def encode(self, array: np.ndarray) -> Encoded:
        array = np.asarray(array)
        name = dtype_name(array.dtype)
        q, step, zp, ax = self.quantize(array)
        channels = step.size
        if q.size == 0:
            return Encoded(streams=[b""], stats=lossy_stats(array, array))
        params = step.astype("<f4").tobytes() + zp.astype(self._zp_dtype).tobytes()
        shift = self._symbol_shift(zp)
        bshape = _broadcast_shape(array.ndim, ax, channels)
        symbols = (q + shift.reshape(bshape)).reshape(-1)
        alphabet = (1 << self.bits) + int(shift.max())
        payload, side = encode_indices(symbols, alphabet, self.coder)
        decoded = dequantize(q, zp.reshape(bshape), step.reshape(bshape), name)
        return Encoded(streams=[params + payload], side=side, stats=lossy_stats(array, decoded))

    @staticmethod
    def _decode_fused(payload, out, shift, zp, step, ax, qmax: int, out_name: str) -> bool:
        """One pass from the Huffman stream into ``out`` (C); False when it does not apply (the caller
        then decodes the symbols and runs the reference formula on them, as before)."""
        if step.size == 1:
            # a table computed with the reference formula (the same bits), one gather per symbol
            table = dequantize(np.arange(qmax + 1, dtype=np.int64), zp.reshape(()), step.reshape(()), out_name)
            return huffman.decode_gather(payload, table, out)
        inner = int(np.prod(out.shape[ax + 1:], dtype=np.int64))
        status = huffman.decode_dequant(payload, out, shift, zp, step, inner, qmax)
        if status == 2:
            raise StreamError(f"quant: a decoded index lies outside its channel's 0..{qmax} range")
        return status == 0

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        if spec.dtype not in FLOAT_NAMES:
            raise StreamError(f"quant: the header declares {spec.dtype}, quant decodes only float tensors")
        channels, ax = _channel_layout(spec.shape, self.per_channel, self.axis)
        data = memoryview(streams[0])
        n = spec.size
        if n == 0:
            if len(data):
                raise StreamError(f"quant: {len(data)} bytes for an empty tensor")
            return np.zeros(spec.shape, numpy_dtype(spec.dtype))
        zb = self._zp_dtype.itemsize
        head = channels * (4 + zb)
        if len(data) < head + 1:
            raise StreamError(f"quant: stream has {len(data)} bytes, {channels} channel parameters need {head} "
                              "plus the index stream")
        step = np.frombuffer(data[:4 * channels], dtype="<f4").astype(np.float32)
        zp = np.frombuffer(data[4 * channels:head], dtype=self._zp_dtype).astype(np.int64)
        qmax = (1 << self.bits) - 1
        if not np.all(np.isfinite(step)) or np.any(step < 0):
            raise StreamError("quant: a channel step is negative or not finite")
        if np.any(zp > qmax):
            raise StreamError(f"quant: a zero point exceeds {qmax}")
        shift = self._symbol_shift(zp)
        alphabet = (1 << self.bits) + int(shift.max())
        if not isinstance(side, dict) or set(side) - {"coder", "center"}:
            raise StreamError(f"quant: unknown side information {side!r}")
        bshape = _broadcast_shape(len(spec.shape), ax, channels)
        shift, zp, step = shift.reshape(bshape or (1,)), zp.reshape(bshape or (1,)), step.reshape(bshape or (1,))
        out = empty_aligned(spec.shape if spec.shape else (1,), numpy_dtype(spec.dtype), populate=True)
        if is_huffman(side) and self._decode_fused(data[head:], out, shift, zp, step, ax, qmax, spec.dtype):
            return out.reshape(spec.shape)
        sym = decode_indices(data[head:], n, alphabet, side, np.uint8 if alphabet <= 256 else np.uint16)
        sym = sym.reshape(out.shape)
        if channels == 1:
            # One table entry per symbol, computed with the formula below (so the values are the same
            # bits); decoding is then one gather.
            if int(sym.max()) > qmax:
                raise StreamError(f"quant: a decoded index lies outside its channel's 0..{qmax} range")
            table = dequantize(np.arange(qmax + 1, dtype=np.int64), zp.reshape(()), step.reshape(()), spec.dtype)
            gather(table, sym, out)
            return out.reshape(spec.shape)
        if _decodec is not None and out.dtype == np.float32:
            inner = int(np.prod(spec.shape[ax + 1:], dtype=np.int64))
            as32 = [np.ascontiguousarray(v.reshape(-1), dtype=np.int32) for v in (shift, zp)]
            bad = _decodec.dequant(sym.reshape(-1), out.reshape(-1), as32[0], as32[1],
                                   np.ascontiguousarray(step.reshape(-1), dtype=np.float32), inner, qmax)
            if bad:
                raise StreamError(f"quant: a decoded index lies outside its channel's 0..{qmax} range")
        else:
            dequantize_channels_reference(sym, out, shift, zp, step, ax, qmax, spec.dtype)
        return out.reshape(spec.shape)
