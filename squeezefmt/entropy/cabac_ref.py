"""Context-adaptive binary arithmetic coding of signed integers: the readable reference.

This module is the executable form of ``spec/entropy-cabac.md``. It is written to be checked
against the spec, not to be fast: the C extension ``_cabacc`` implements the same coder (same bytes
from the encoder, same values and errors from the decoder, same rate-distortion decisions) and the
tests compare the two. The public entry points, with input checks and the choice between the RAW
and CABAC modes, live in :mod:`squeezefmt.entropy.cabac`.

Summary of the payload of a CABAC-mode stream (section numbers refer to the spec):

- each integer ``q`` (``|q| <= 2**31 - 1``) becomes bins: ``sig = q != 0``; if set, ``sign = q < 0``,
  then up to ``K`` greater-than flags ``gt_i = |q| > i`` (``i = 1..K``, stopping at the first 0), and,
  when ``|q| > K``, the remainder ``|q| - K - 1`` as order-``g`` Exp-Golomb in bypass bins (section 3);
- context-coded bins use a probability state chosen from the previous two integers (section 4);
  each state is two 15-bit estimates adapting at rates 1/16 and 1/128 (section 5);
- the bins drive a 32-bit range coder with byte-wise renormalisation and carry propagation, in the
  style of LZMA's range coder, terminated by the shortest value in the final interval that is a
  multiple of 2**24 and with trailing zero bytes dropped (section 6).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import StreamError

PROB_BITS = 15
PROB_ONE = 1 << PROB_BITS        # probabilities are P(bin = 0) in units of 2**-15
PROB_INIT = PROB_ONE // 2
FAST_SHIFT = 4                    # adaptation rate of the fast estimate: 1/16
SLOW_SHIFT = 7                    # ... of the slow one: 1/128
TOP = 1 << 24                     # renormalise while range < TOP
MAX_GT = 15                       # K, the number of greater-than flags, is 0..15
MAX_MAGNITUDE = (1 << 31) - 1
MAX_EG_PREFIX = 30                # a remainder r < 2**31 needs at most 30 prefix ones
MAX_EG_ORDER = 15

SIG_CONTEXTS = 9
SIGN_CONTEXTS = 3
GT_CONTEXTS = 2 * MAX_GT
NUM_CONTEXTS = SIG_CONTEXTS + SIGN_CONTEXTS + GT_CONTEXTS   # 42
SIGN_BASE = SIG_CONTEXTS
GT_BASE = SIG_CONTEXTS + SIGN_CONTEXTS

# Rate table for the rate-distortion quantizer (encoder only; not part of the format): the cost in
# bits of a 0 bin at probability index p >> RATE_SHIFT; a 1 bin costs RATE[TABLE - 1 - idx].
RATE_SHIFT = 5
RATE_TABLE_SIZE = PROB_ONE >> RATE_SHIFT


def rate_table() -> np.ndarray:
    """float64 bits of a 0 bin for each probability bucket (bucket centre), ``RATE_TABLE_SIZE`` entries."""
    centre = (np.arange(RATE_TABLE_SIZE, dtype=np.float64) + 0.5) / RATE_TABLE_SIZE
    return -np.log2(centre)


COST_FRACTION_BITS = 16            # cost_table(): bits in units of 2**-16


def cost_table() -> np.ndarray:
    """uint32 ``round(-log2(p / 2**15) * 2**16)`` for ``p`` in 0..2**15 (entry 0 unused): the exact
    cost of a bin whose probability is ``p``, for :func:`k_costs` (encoder only)."""
    p = np.arange(PROB_ONE + 1, dtype=np.float64)
    p[0] = 1.0
    return np.rint(-np.log2(p / PROB_ONE) * (1 << COST_FRACTION_BITS)).astype(np.uint32)


# --------------------------------------------------------------------------------------------
# Context selection (spec section 4)
# --------------------------------------------------------------------------------------------

def sig_context(p1: int, p2: int) -> int:
    return 3 * min(abs(p1), 2) + min(abs(p2), 2)


def sign_context(p1: int) -> int:
    return SIGN_BASE + (0 if p1 == 0 else 1 if p1 > 0 else 2)


def gt_context(i: int, p1: int) -> int:
    return GT_BASE + 2 * (i - 1) + (1 if abs(p1) > i else 0)


# --------------------------------------------------------------------------------------------
# Probability states (spec section 5)
# --------------------------------------------------------------------------------------------

class Contexts:
    """Every context's pair of estimates ``(fast, slow)`` of P(bin = 0), 15-bit."""

    def __init__(self) -> None:
        self.fast = [PROB_INIT] * NUM_CONTEXTS
        self.slow = [PROB_INIT] * NUM_CONTEXTS

    def p(self, ctx: int) -> int:
        return (self.fast[ctx] + self.slow[ctx]) >> 1

    def update(self, ctx: int, bin_: int) -> None:
        if bin_:
            self.fast[ctx] -= self.fast[ctx] >> FAST_SHIFT
            self.slow[ctx] -= self.slow[ctx] >> SLOW_SHIFT
        else:
            self.fast[ctx] += (PROB_ONE - self.fast[ctx]) >> FAST_SHIFT
            self.slow[ctx] += (PROB_ONE - self.slow[ctx]) >> SLOW_SHIFT


# --------------------------------------------------------------------------------------------
# Range coder (spec section 6)
# --------------------------------------------------------------------------------------------

class RangeEncoder:
    """Interval ``[low, low + range)``; ``low`` is kept as an unbounded Python int."""

    def __init__(self) -> None:
        self.low = 0
        self.range = 0xFFFFFFFF
        self.shifts = 0               # renormalisation steps so far: low is scaled by 256**shifts

    def _renorm(self) -> None:
        while self.range < TOP:
            self.range <<= 8
            self.low <<= 8
            self.shifts += 1

    def encode(self, ctxs: Contexts, ctx: int, bin_: int) -> None:
        bound = (self.range >> PROB_BITS) * ctxs.p(ctx)
        if bin_:
            self.low += bound
            self.range -= bound
        else:
            self.range = bound
        ctxs.update(ctx, bin_)
        self._renorm()

    def bypass(self, bin_: int) -> None:
        self.range >>= 1
        if bin_:
            self.low += self.range
        self._renorm()

    def finish(self) -> bytes:
        """The canonical termination: V = ceil(low / 2**24) * 2**24, 4 + shifts bytes, zeros trimmed."""
        value = -(-self.low // TOP) * TOP
        out = value.to_bytes(4 + self.shifts, "big")
        return out.rstrip(b"\x00")


class RangeDecoder:
    """Reads bytes big-endian; bytes past the end of the payload read as zero."""

    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start
        self.pos = start              # next byte to read (may run past len(data): virtual zeros)
        self.range = 0xFFFFFFFF
        self.window = 0               # the last four bytes read, for the termination check
        self.code = 0
        for _ in range(4):
            self._next()
        self.code = self.window
        if self.code >= self.range:
            raise StreamError("cabac stream: the first code value lies outside the coder's range")

    def _next(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        self.window = ((self.window << 8) | b) & 0xFFFFFFFF
        return b

    def _renorm(self) -> None:
        while self.range < TOP:
            self.range <<= 8
            self.code = (self.code << 8) | self._next()

    def decode(self, ctxs: Contexts, ctx: int) -> int:
        bound = (self.range >> PROB_BITS) * ctxs.p(ctx)
        if self.code < bound:
            self.range = bound
            bin_ = 0
        else:
            self.code -= bound
            self.range -= bound
            bin_ = 1
        ctxs.update(ctx, bin_)
        self._renorm()
        return bin_

    def bypass(self) -> int:
        self.range >>= 1
        if self.code < self.range:
            bin_ = 0
        else:
            self.code -= self.range
            bin_ = 1
        self._renorm()
        return bin_

    def finish(self) -> None:
        """Check the termination rules: every byte used, canonical final value, no trailing zero byte."""
        if self.pos < len(self.data):
            raise StreamError(f"cabac stream: {len(self.data) - self.pos} trailing bytes after the last value")
        if self.code >= TOP or self.window & (TOP - 1):
            raise StreamError("cabac stream: the final value is not the canonical termination (truncated or corrupt)")
        if len(self.data) > self.start and self.data[-1] == 0:
            raise StreamError("cabac stream: a trailing zero byte (streams end with their last non-zero byte)")


# --------------------------------------------------------------------------------------------
# Binarisation (spec section 3)
# --------------------------------------------------------------------------------------------

def _encode_eg(enc: RangeEncoder, r: int, g: int) -> None:
    """Order-g Exp-Golomb: order 0 of ``r >> g``, then the low ``g`` bits of ``r``, MSB first."""
    _encode_eg0(enc, r >> g)
    for j in range(g - 1, -1, -1):
        enc.bypass((r >> j) & 1)


def _encode_eg0(enc: RangeEncoder, r: int) -> None:
    m = (r + 1).bit_length() - 1
    for _ in range(m):
        enc.bypass(1)
    enc.bypass(0)
    rest = r + 1 - (1 << m)
    for j in range(m - 1, -1, -1):
        enc.bypass((rest >> j) & 1)


def _decode_eg0(dec: RangeDecoder) -> int:
    m = 0
    while dec.bypass():
        m += 1
        if m > MAX_EG_PREFIX:
            raise StreamError(f"cabac stream: an Exp-Golomb prefix longer than {MAX_EG_PREFIX} bins")
    rest = 0
    for _ in range(m):
        rest = (rest << 1) | dec.bypass()
    return (1 << m) - 1 + rest


def _decode_eg(dec: RangeDecoder, g: int) -> int:
    r = _decode_eg0(dec)
    for _ in range(g):
        r = (r << 1) | dec.bypass()
    return r


def encode_value(enc: RangeEncoder, ctxs: Contexts, q: int, p1: int, p2: int, k: int, g: int) -> None:
    a = abs(q)
    enc.encode(ctxs, sig_context(p1, p2), 1 if a else 0)
    if not a:
        return
    enc.encode(ctxs, sign_context(p1), 1 if q < 0 else 0)
    for i in range(1, k + 1):
        flag = 1 if a > i else 0
        enc.encode(ctxs, gt_context(i, p1), flag)
        if not flag:
            return
    _encode_eg(enc, a - k - 1, g)


def decode_value(dec: RangeDecoder, ctxs: Contexts, p1: int, p2: int, k: int, g: int) -> int:
    if not dec.decode(ctxs, sig_context(p1, p2)):
        return 0
    negative = dec.decode(ctxs, sign_context(p1))
    a = 1
    for i in range(1, k + 1):
        if not dec.decode(ctxs, gt_context(i, p1)):
            break
        a = i + 1
    else:
        a = k + 1 + _decode_eg(dec, g)
        if a > MAX_MAGNITUDE:
            raise StreamError(f"cabac stream: a magnitude above {MAX_MAGNITUDE}")
    return -a if negative else a


def encode_payload(values: np.ndarray, k: int, g: int) -> bytes:
    """The CABAC payload (after the two header bytes) for int values with ``|v| <= 2**31 - 1``."""
    enc, ctxs = RangeEncoder(), Contexts()
    p1 = p2 = 0
    for q in values.tolist():
        encode_value(enc, ctxs, q, p1, p2, k, g)
        p1, p2 = q, p1
    return enc.finish()


def decode_payload(data: bytes, start: int, count: int, k: int, g: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.int32)
    if count == 0:
        if len(data) > start:
            raise StreamError("cabac stream: payload bytes for zero values")
        return out
    dec, ctxs = RangeDecoder(data, start), Contexts()
    p1 = p2 = 0
    for n in range(count):
        q = decode_value(dec, ctxs, p1, p2, k, g)
        out[n] = q
        p1, p2 = q, p1
    dec.finish()
    return out


# --------------------------------------------------------------------------------------------
# Rate-distortion optimised quantization (encoder only)
# --------------------------------------------------------------------------------------------

def eg_bits(r: int, g: int) -> int:
    """Length in bins of the order-g Exp-Golomb code of ``r``."""
    return 2 * (((r >> g) + 1).bit_length() - 1) + 1 + g


def value_rate(ctxs: Contexts, rate: list[float], q: int, p1: int, p2: int, k: int, g: int) -> float:
    """Bits the coder would spend on ``q`` now (table-approximated for context bins, exact for bypass)."""
    top = RATE_TABLE_SIZE - 1

    def bin_cost(ctx: int, bin_: int) -> float:
        idx = ctxs.p(ctx) >> RATE_SHIFT
        return rate[top - idx] if bin_ else rate[idx]

    a = abs(q)
    bits = bin_cost(sig_context(p1, p2), 1 if a else 0)
    if not a:
        return bits
    bits += bin_cost(sign_context(p1), 1 if q < 0 else 0)
    for i in range(1, k + 1):
        flag = 1 if a > i else 0
        bits += bin_cost(gt_context(i, p1), flag)
        if not flag:
            return bits
    return bits + eg_bits(a - k - 1, g)


def _update_value(ctxs: Contexts, q: int, p1: int, p2: int, k: int) -> None:
    """Adapt the contexts exactly as encoding ``q`` would."""
    a = abs(q)
    ctxs.update(sig_context(p1, p2), 1 if a else 0)
    if not a:
        return
    ctxs.update(sign_context(p1), 1 if q < 0 else 0)
    for i in range(1, k + 1):
        flag = 1 if a > i else 0
        ctxs.update(gt_context(i, p1), flag)
        if not flag:
            return


def rdoq(scaled: np.ndarray, lam: float, k: int, g: int) -> np.ndarray:
    """Choose each integer to minimise ``(x - q)**2 + lam * bits(q)`` given the adaptive state.

    ``scaled`` is float64 (weights divided by their step). Candidates per value: ``round(x)``
    (half away from zero), the integer one step closer to zero, and 0; ties go to the smaller
    magnitude. The states are then adapted as the encoder will, so the next value sees the same
    probabilities the coder will use.
    """
    rate = rate_table().tolist()
    ctxs = Contexts()
    out = np.zeros(scaled.size, dtype=np.int32)
    p1 = p2 = 0
    for n, x in enumerate(scaled.tolist()):
        r = math.floor(abs(x) + 0.5)
        r = min(r, MAX_MAGNITUDE)
        sgn = -1 if x < 0 else 1
        best_q, best_cost = 0, x * x + lam * value_rate(ctxs, rate, 0, p1, p2, k, g)
        for mag in (r - 1, r):
            if mag <= 0:
                continue
            q = sgn * mag
            d = x - q
            cost = d * d + lam * value_rate(ctxs, rate, q, p1, p2, k, g)
            if cost < best_cost:
                best_q, best_cost = q, cost
        _update_value(ctxs, best_q, p1, p2, k)
        out[n] = best_q
        p1, p2 = best_q, p1
    return out


def k_costs(values: np.ndarray) -> np.ndarray:
    """uint64[16]: [0] the significance and sign bins, [i] the gt_i bins, each the sum of
    ``cost_table()[p]`` over its bins as a ``K = 15`` encoder codes and adapts them.

    A gt_i bin is coded (and its context adapted) exactly when ``|v| >= i``, for every ``K >= i``,
    so the context-coded part of a ``K`` stream costs ``out[0] + ... + out[K]``; the Exp-Golomb
    remainder is counted apart. Same integers as ``_cabacc.k_costs``.
    """
    tab = cost_table().tolist()
    ctxs = Contexts()
    out = [0] * (MAX_GT + 1)

    def cost(ctx: int, bin_: int) -> int:
        p = ctxs.p(ctx)
        ctxs.update(ctx, bin_)
        return tab[PROB_ONE - p] if bin_ else tab[p]

    p1 = p2 = 0
    for q in np.asarray(values).reshape(-1).tolist():
        a = abs(q)
        out[0] += cost(sig_context(p1, p2), 1 if a else 0)
        if a:
            out[0] += cost(sign_context(p1), 1 if q < 0 else 0)
            for i in range(1, MAX_GT + 1):
                flag = 1 if a > i else 0
                out[i] += cost(gt_context(i, p1), flag)
                if not flag:
                    break
        p1, p2 = q, p1
    return np.array(out, dtype=np.uint64)
