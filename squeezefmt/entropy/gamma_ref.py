"""Reference implementation of the run-length Elias gamma code (pure Python, no numpy needed).

This module is the readable definition that the fast paths in :mod:`squeezefmt.entropy.gamma`
(the C extension ``_gammac`` and the vectorized numpy code) are tested against. It is slow
(about a million values per second) and meant for tests, debugging and platforms without the
C extension. The normative text is ``spec/entropy-gamma.md``; in short, for one coding unit::

    for every non-zero value v (in C order):
        gamma(1 + number of zeros since the previous non-zero value)
        one bit: 1 if v > 0 else 0
        gamma(|v|)                      # INT32_MIN is coded as -INT32_MAX, as tfc does
    if the unit ends with zeros:
        gamma(1 + number of trailing zeros)
    pad with 0 bits to a whole byte

Bits fill each byte from the least significant bit up. ``gamma(x)`` for ``1 <= x < 2**31`` with
``n = x.bit_length()`` is ``n - 1`` zero bits, one 1 bit, then the ``n - 1`` low bits of ``x``,
least significant first. This is exactly what tensorflow-compression 2.14's
``run_length_gamma_encode`` op writes (``cc/kernels/run_length_gamma_kernels.cc`` with
``cc/lib/bit_coder.cc``).
"""
from __future__ import annotations

from typing import Iterable, List

from ..errors import CodecError, StreamError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAX_GAMMA = 2**31 - 1  # the largest value tfc's 31-bit gamma reader accepts
MAX_ZERO_BITS = 30  # a gamma code has at most 30 leading zero bits (bit width <= 31)


class BitWriter:
    """Collects bits least-significant-bit first into bytes."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0  # pending bits, the first written at bit 0
        self._n = 0  # number of pending bits (< 8 between calls)

    def write_bits(self, count: int, bits: int) -> None:
        """Write the ``count`` low bits of ``bits``, least significant first."""
        self._acc |= (bits & ((1 << count) - 1)) << self._n
        self._n += count
        while self._n >= 8:
            self._out.append(self._acc & 0xFF)
            self._acc >>= 8
            self._n -= 8

    def write_bit(self, bit: int) -> None:
        self.write_bits(1, 1 if bit else 0)

    def write_gamma(self, value: int) -> None:
        """Elias gamma code of ``1 <= value <= 2**31 - 1`` in tfc's bit order."""
        if not 1 <= value <= MAX_GAMMA:
            raise CodecError(f"gamma can only code 1 <= value <= {MAX_GAMMA}, got {value}")
        n = value.bit_length()
        self.write_bits(n - 1, 0)  # unary length prefix ...
        self.write_bits(1, 1)  # ... ended by the (implicit) top bit of value
        self.write_bits(n - 1, value)  # the remaining low bits, least significant first

    def getvalue(self) -> bytes:
        """The bytes written so far, the last one padded with zero bits."""
        if self._n:
            return bytes(self._out) + bytes([self._acc & 0xFF])
        return bytes(self._out)


class BitReader:
    """Reads bits least-significant-bit first from a bytes-like object."""

    def __init__(self, data, start: int = 0) -> None:
        self._data = bytes(data)
        self._end = 8 * len(self._data)
        self._pos = min(int(start), self._end)  # next bit to read

    @property
    def bits_left(self) -> int:
        return self._end - self._pos

    def read_bit(self) -> int:
        """One bit, or ``-1`` at the end of the data."""
        if self._pos >= self._end:
            return -1
        bit = (self._data[self._pos >> 3] >> (self._pos & 7)) & 1
        self._pos += 1
        return bit

    def read_bits(self, count: int) -> int:
        """``count`` bits as an integer (first read bit = least significant), or ``-1`` if short."""
        if count > self.bits_left:
            return -1
        value = 0
        for k in range(count):
            value |= self.read_bit() << k
        return value

    def read_gamma(self, where: str) -> int:
        """One gamma code; raises :class:`StreamError` (naming ``where``) if truncated or too long."""
        zeros = 0
        while True:
            bit = self.read_bit()
            if bit == 1:
                break
            if bit < 0:
                raise StreamError(f"gamma stream truncated {where}")
            zeros += 1
            if zeros > MAX_ZERO_BITS:
                raise StreamError(f"gamma code longer than 61 bits (more than int32 can hold) {where}")
        low = self.read_bits(zeros)
        if low < 0:
            raise StreamError(f"gamma stream truncated {where}")
        return (1 << zeros) | low


def encode(values: Iterable[int], clamp_int32_min: bool = True) -> bytes:
    """Code a flat sequence of int32 values as one coding unit (tfc's ``run_length_gamma_encode``).

    ``INT32_MIN`` has no code; like tfc it is written as ``-INT32_MAX`` unless
    ``clamp_int32_min=False``, which raises :class:`CodecError` instead.
    """
    writer = BitWriter()
    run = 1  # 1 + number of zeros since the last non-zero value
    for v in values:
        v = int(v)
        if not INT32_MIN <= v <= INT32_MAX:
            raise CodecError(f"value {v} is outside the int32 range")
        if v == 0:
            run += 1
            if run > MAX_GAMMA:
                raise CodecError(f"a run of {MAX_GAMMA} or more zeros cannot be coded (tfc's limit)")
            continue
        if v == INT32_MIN:
            if not clamp_int32_min:
                raise CodecError("INT32_MIN cannot be coded exactly (tfc codes it as -INT32_MAX)")
            v = -INT32_MAX
        writer.write_gamma(run)
        writer.write_bit(v > 0)
        writer.write_gamma(abs(v))
        run = 1
    if run > 1:
        writer.write_gamma(run)
    return writer.getvalue()


def decode(data, count: int, strict: bool = True) -> List[int]:
    """Decode ``count`` values from one coding unit; the inverse of :func:`encode`.

    With ``strict=False`` this accepts exactly what tfc's ``run_length_gamma_decode`` accepts and
    returns the same values: anything after the last value is ignored. With ``strict=True`` (the
    default) the stream must also end there: at most 7 padding bits, all zero. tfc's encoder never
    writes anything else, so strict decoding accepts every stream tfc produces.
    """
    count = int(count)
    if count < 0:
        raise StreamError(f"value count must be >= 0, got {count}")
    out = [0] * count
    decode_into(BitReader(data), out, 0, count, strict)
    return out


def decode_into(reader: BitReader, out, i: int, count: int, strict: bool) -> None:
    """Decode values ``i .. count - 1`` into ``out`` (pre-filled with zeros) from ``reader``.

    This is the whole decoder; :func:`decode` starts it at bit 0 and value 0, the numpy backend
    starts it where its vectorized pass stopped.
    """
    while i < count:
        where = f"at value {i} of {count}"
        run = reader.read_gamma(where)
        i += run - 1  # skip run - 1 zeros
        if i >= count:
            if i > count:
                raise StreamError(f"zero run {where} overruns the {count} values (by {i - count})")
            break  # the unit ended with zeros
        positive = reader.read_bit()
        if positive < 0:
            raise StreamError(f"gamma stream truncated {where}")
        magnitude = reader.read_gamma(where)
        out[i] = magnitude if positive else -magnitude
        i += 1
    if strict:
        left = reader.bits_left
        check_end(left, reader.read_bits(left) if left < 8 else 0)


def check_end(bits_left: int, padding: int) -> None:
    """Strict end-of-stream rule shared by all backends (same messages)."""
    if bits_left >= 8:
        raise StreamError(f"{bits_left // 8} trailing byte(s) after the last value")
    if padding:
        raise StreamError("non-zero padding bits after the last value")
