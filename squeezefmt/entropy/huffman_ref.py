"""Canonical Huffman coding and bit packing: the readable reference implementation.

This module is the executable form of ``spec/entropy-huffman.md``. It is written to be read and
checked against the spec, not to be fast: the C extension ``_huffmanc`` implements the same format
(same bytes from the encoder, same results and errors from the decoder) and the tests compare the
two. The public entry points live in :mod:`squeezefmt.entropy.huffman`; the functions here expect
inputs that module has already validated.

Bit order (the whole stream): bit ``i`` of a bit stream is bit ``i % 8`` of byte ``i // 8`` (least
significant bit first, as in Deflate). Fixed-width fields are written least significant bit first;
Elias-gamma numbers and Huffman codewords are written most significant bit first (so the first bit
read from a codeword is its root branch), again as in Deflate.

Stream (``mode`` is the first byte)::

    0x00 RAW      width:u8 (0..16), then count values packed at `width` bits each (pack_bits)
    0x01 CONST    symbol as minimal LEB128 (< 65536); every one of the count symbols is it
    0x02 HUFFMAN  code-length table (bit fields, zero-padded to a byte), then count codewords,
                  zero-padded to a byte

Code-length table (read in this order)::

    4 bits    M - 1          M = longest code length, 1..16
    gamma     N              number of table entries (largest coded symbol + 1), 2..65536
    items describing the code length of entries 0, 1, ..., N-1, ``prev`` starting at M:
      '0'             one entry of length prev
      '1' '0' s       one entry of length prev + 1 (s = 0) or prev - 1 (s = 1); it becomes prev
      '1' '1' '0' g   gamma(r): r entries with no code (length 0); prev unchanged
      '1' '1' '1' v   4 bits v: one entry of length v + 1; it becomes prev
"""
from __future__ import annotations

import numpy as np

from ..errors import StreamError
from .varint import uvarint

MODE_RAW = 0
MODE_CONST = 1
MODE_HUFFMAN = 2
MODE_NAMES = {MODE_RAW: "raw", MODE_CONST: "const", MODE_HUFFMAN: "huffman"}

MAX_CODE_LENGTH = 16          # longest codeword a stream may use
MAX_ALPHABET = 1 << 16        # symbols are 0..65535
MAX_RAW_WIDTH = 16            # RAW mode packs symbols at 0..16 bits
MAX_PACK_WIDTH = 32           # pack_bits / unpack_bits accept 0..32-bit fields

# Chunk size (values) for the numpy bit packing; a multiple of 8 so chunks end on byte boundaries.
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Bit-level writer and reader (LSB-first), used for the small code-length table.
# --------------------------------------------------------------------------------------------

class BitWriter:
    """Collect bits least-significant-first into bytes."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, nbits: int) -> None:
        """A fixed-width field, least significant bit first."""
        for i in range(nbits):
            self.bits.append((value >> i) & 1)

    def write_msb(self, value: int, nbits: int) -> None:
        """``nbits`` bits of ``value``, most significant first (gamma numbers, codewords)."""
        for i in reversed(range(nbits)):
            self.bits.append((value >> i) & 1)

    def write_gamma(self, n: int) -> None:
        """Elias gamma of ``n >= 1``: k zero bits then the k+1 bits of n, MSB first (k = floor(log2 n))."""
        k = n.bit_length() - 1
        self.write(0, k)
        self.write_msb(n, k + 1)

    def getvalue(self) -> bytes:
        """The bits so far, zero-padded to whole bytes."""
        bits = np.array(self.bits, dtype=np.uint8)
        return np.packbits(bits, bitorder="little").tobytes()


class BitReader:
    """Read bits least-significant-first from ``data``, raising :class:`StreamError` past the end."""

    def __init__(self, data: bytes, start_byte: int = 0) -> None:
        self.data = data
        self.pos = 8 * start_byte            # absolute bit position
        self.end = 8 * len(data)

    def bit(self, what: str) -> int:
        if self.pos >= self.end:
            raise StreamError(f"huffman stream truncated in {what}")
        b = (self.data[self.pos >> 3] >> (self.pos & 7)) & 1
        self.pos += 1
        return b

    def read(self, nbits: int, what: str) -> int:
        """A fixed-width field, least significant bit first."""
        return sum(self.bit(what) << i for i in range(nbits))

    def read_msb(self, nbits: int, what: str) -> int:
        value = 0
        for _ in range(nbits):
            value = (value << 1) | self.bit(what)
        return value

    def read_gamma(self, max_bits: int, what: str) -> int:
        """Elias gamma; a number needing more than ``max_bits`` bits is a StreamError."""
        k = 0
        while self.bit(what) == 0:
            k += 1
            if k >= max_bits:
                raise StreamError(f"huffman {what}: gamma number longer than {max_bits} bits")
        return (1 << k) | self.read_msb(k, what)

    def finish_byte(self, what: str) -> int:
        """Skip to the next byte boundary; the skipped bits must be zero. Returns the byte index."""
        while self.pos & 7:
            if self.bit(what):
                raise StreamError(f"huffman stream: non-zero padding bits after {what}")
        return self.pos >> 3


# --------------------------------------------------------------------------------------------
# Fixed-width bit packing
# --------------------------------------------------------------------------------------------

def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Pack non-negative ints ``< 2**width`` at ``width`` bits each, LSB first, zero-padded.

    Value ``i`` occupies stream bits ``[i*width, (i+1)*width)``, its least significant bit first.
    """
    values = np.asarray(values).reshape(-1).astype(np.uint64)
    if width == 0:
        return b""
    shifts = np.arange(width, dtype=np.uint64)
    out = []
    for start in range(0, values.size, _CHUNK):
        chunk = values[start:start + _CHUNK]
        bits = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        out.append(np.packbits(bits.reshape(-1), bitorder="little").tobytes())
    return b"".join(out)


def unpack_bits(data: bytes, width: int, count: int, out_dtype=np.uint32) -> np.ndarray:
    """Inverse of :func:`pack_bits`. ``data`` must be exactly the packed bytes, padding bits zero."""
    need = (count * width + 7) // 8
    if len(data) != need:
        kind = "truncated" if len(data) < need else "has trailing bytes"
        raise StreamError(f"bit-packed data {kind}: {len(data)} bytes for {count} values of {width} bits "
                          f"(expected {need})")
    out = np.zeros(count, dtype=out_dtype)
    if width == 0 or count == 0:
        return out
    raw = np.frombuffer(data, dtype=np.uint8)
    used = count * width
    if used & 7 and raw[-1] >> (used & 7):
        raise StreamError("bit-packed data: non-zero padding bits after the last value")
    weights = (np.uint64(1) << np.arange(width, dtype=np.uint64))
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        lo = start * width // 8              # start * width is a multiple of 8
        chunk = np.unpackbits(raw[lo:lo + (n * width + 7) // 8], bitorder="little")[:n * width]
        out[start:start + n] = chunk.reshape(n, width).astype(np.uint64) @ weights
    return out


# --------------------------------------------------------------------------------------------
# Code lengths: Huffman depths (two-queue merge), length limit (Kraft fix-up), canonical codes
# --------------------------------------------------------------------------------------------

def symbol_ranks(counts) -> list[int]:
    """Used symbols by count descending, ties by symbol ascending: rank 0 gets the shortest code."""
    used = [s for s, c in enumerate(counts) if c > 0]
    return sorted(used, key=lambda s: (-int(counts[s]), s))


def huffman_depth_counts(weights: list[int]) -> list[int]:
    """``bl_count[d]`` = number of leaves at depth d of a Huffman tree over ``weights`` (ascending, n >= 2).

    Two-queue construction: leaves in ascending order, internal nodes in creation order (their
    weights never decrease). Each step takes the two lightest nodes; on equal weight a leaf is
    taken before an internal node.
    """
    n = len(weights)
    leaf_parent = [0] * n
    node_weight: list[int] = []
    node_parent: list[int] = []
    i = j = 0                                 # next leaf, next unmerged internal node
    for _ in range(n - 1):
        picked = []
        for _ in range(2):
            if i < n and (j >= len(node_weight) or weights[i] <= node_weight[j]):
                picked.append(("leaf", i))
                i += 1
            else:
                picked.append(("node", j))
                j += 1
        new = len(node_weight)
        total = 0
        for kind, k in picked:
            if kind == "leaf":
                leaf_parent[k] = new
                total += weights[k]
            else:
                node_parent[k] = new
                total += node_weight[k]
        node_weight.append(total)
        node_parent.append(-1)
    depth = [0] * len(node_weight)            # the last node is the root (depth 0)
    for k in range(len(node_weight) - 2, -1, -1):
        depth[k] = depth[node_parent[k]] + 1
    bl_count = [0] * (max(depth) + 2)
    for k in range(n):
        bl_count[depth[leaf_parent[k]] + 1] += 1
    return bl_count


def limit_depth_counts(bl_count: list[int], max_len: int) -> list[int]:
    """Limit code lengths to ``max_len`` keeping the code complete (Kraft sum exactly 1).

    Every length above ``max_len`` becomes ``max_len``; this over-subscribes the code by some
    excess E (in units of 2**-max_len). Each fix-up step removes one such unit: take one code of
    length max_len away and split a code of the longest length d < max_len into two codes of
    length d + 1. (E is smaller than the number of clamped codes, so codes of length max_len never
    run out; n <= 2**max_len guarantees a shorter code to split.) This is the heuristic of Deflate
    encoders such as miniz.
    """
    bl = list(bl_count) + [0] * max(0, max_len + 1 - len(bl_count))
    if len(bl) - 1 <= max_len:
        return bl[:max_len + 1]
    for d in range(max_len + 1, len(bl)):
        bl[max_len] += bl[d]
    bl = bl[:max_len + 1]
    total = sum(bl[d] << (max_len - d) for d in range(1, max_len + 1))
    while total > (1 << max_len):
        bl[max_len] -= 1
        for d in range(max_len - 1, 0, -1):
            if bl[d]:
                bl[d] -= 1
                bl[d + 1] += 2
                break
        total -= 1
    return bl


def code_lengths(counts, max_len: int) -> np.ndarray:
    """Length-limited Huffman code lengths (uint8, one per symbol; 0 = symbol not used).

    Fewer than two used symbols get no code at all (all lengths 0; see the CONST mode).
    Requires ``2**max_len >= number of used symbols``.
    """
    counts = [int(c) for c in counts]
    lengths = np.zeros(len(counts), dtype=np.uint8)
    ranks = symbol_ranks(counts)
    if len(ranks) < 2:
        return lengths
    if len(ranks) > (1 << max_len):
        raise ValueError(f"{len(ranks)} distinct symbols need max_code_length >= {(len(ranks) - 1).bit_length()}")
    weights = [counts[s] for s in reversed(ranks)]
    bl = limit_depth_counts(huffman_depth_counts(weights), max_len)
    r = 0
    for d in range(1, len(bl)):
        for _ in range(bl[d]):
            lengths[ranks[r]] = d
            r += 1
    return lengths


def canonical_codes(lengths) -> list[int]:
    """Canonical codewords (as integers, MSB = first bit): by length, then by symbol (Deflate's rule)."""
    lengths = [int(x) for x in lengths]
    max_len = max(lengths, default=0)
    bl = [0] * (max_len + 1)
    for ln in lengths:
        if ln:
            bl[ln] += 1
    next_code = [0] * (max_len + 1)
    code = 0
    for d in range(1, max_len + 1):
        code = (code + bl[d - 1]) << 1           # bl[0] == 0, so codes of length 1 start at 0
        next_code[d] = code
    codes = [0] * len(lengths)
    for s, ln in enumerate(lengths):
        if ln:
            codes[s] = next_code[ln]
            next_code[ln] += 1
    return codes


def reverse_bits(value: int, nbits: int) -> int:
    return int(format(value, f"0{nbits}b")[::-1], 2) if nbits else 0


# --------------------------------------------------------------------------------------------
# The code-length table
# --------------------------------------------------------------------------------------------

def write_table(w: BitWriter, lengths) -> None:
    """Append the code-length table of ``lengths`` (at least two non-zero) to ``w``."""
    lengths = [int(x) for x in lengths]
    n = max(s for s, ln in enumerate(lengths) if ln) + 1
    m = max(lengths)
    w.write(m - 1, 4)
    w.write_gamma(n)
    prev = m
    s = 0
    while s < n:
        ln = lengths[s]
        if ln == 0:
            r = 0
            while lengths[s + r] == 0:       # the last entry is used, so this stops before n
                r += 1
            w.write_msb(0b110, 3)
            w.write_gamma(r)
            s += r
            continue
        if ln == prev:
            w.write_msb(0b0, 1)
        elif ln == prev + 1:
            w.write_msb(0b100, 3)
        elif ln == prev - 1:
            w.write_msb(0b101, 3)
        else:
            w.write_msb(0b111, 3)
            w.write(ln - 1, 4)
        prev = ln
        s += 1


def read_table(r: BitReader) -> list[int]:
    """Read and validate a code-length table; returns the lengths of entries 0..N-1."""
    m = r.read(4, "code-length table") + 1
    n = r.read_gamma(17, "code-length table size")
    if n < 2 or n > MAX_ALPHABET:
        raise StreamError(f"huffman table size {n} out of range 2..{MAX_ALPHABET}")
    lengths = [0] * n
    prev = m
    s = 0
    while s < n:
        if r.bit("code-length table") == 0:
            ln = prev
        elif r.bit("code-length table") == 0:
            ln = prev - 1 if r.bit("code-length table") else prev + 1
        elif r.bit("code-length table") == 0:
            run = r.read_gamma(17, "code-length table run")
            if run > n - s:
                raise StreamError(f"huffman table: run of {run} unused symbols passes the table end ({n})")
            s += run
            continue
        else:
            ln = r.read(4, "code-length table") + 1
        if not 1 <= ln <= m:
            raise StreamError(f"huffman table: code length {ln} of symbol {s} outside 1..{m}")
        lengths[s] = ln
        prev = ln
        s += 1
    if lengths[-1] == 0:
        raise StreamError("huffman table: last table entry has no code")
    if max(lengths) != m:
        raise StreamError(f"huffman table: declared longest code {m} but longest is {max(lengths)}")
    used = sum(1 for ln in lengths if ln)
    if used < 2:
        raise StreamError("huffman table: fewer than two coded symbols")
    kraft = sum(1 << (m - ln) for ln in lengths if ln)
    if kraft != 1 << m:
        state = "over-subscribed" if kraft > 1 << m else "incomplete"
        raise StreamError(f"huffman table: code is {state} (Kraft sum {kraft}/{1 << m})")
    return lengths


# --------------------------------------------------------------------------------------------
# Whole streams
# --------------------------------------------------------------------------------------------

def raw_width(alphabet_size: int) -> int:
    """Bits per symbol of the RAW mode: ceil(log2(alphabet_size)), 0 for a one-symbol alphabet."""
    return (alphabet_size - 1).bit_length()


def encode(symbols: np.ndarray, alphabet_size: int, max_len: int, strict: bool = True) -> bytes:
    """Encode validated symbols (1-D ints, all < alphabet_size) choosing the smallest mode.

    Candidates, smallest total size wins, ties broken in this order: CONST (one distinct symbol),
    RAW, HUFFMAN (two or more distinct symbols). If more symbols are used than ``max_len`` allows,
    ``strict`` raises ValueError, otherwise ``max_len`` is raised to fit.
    """
    symbols = np.asarray(symbols).reshape(-1)
    count = symbols.size
    hist = np.bincount(symbols, minlength=alphabet_size) if count else np.zeros(alphabet_size, np.int64)
    used = np.flatnonzero(hist)
    width = raw_width(alphabet_size)
    candidates = []                                   # (size, tie order, builder)
    if used.size == 1:
        const = bytes([MODE_CONST]) + uvarint(int(used[0]))
        candidates.append((len(const), 0, lambda: const))
    candidates.append((2 + (count * width + 7) // 8, 1,
                       lambda: bytes([MODE_RAW, width]) + pack_bits(symbols, width)))
    if used.size >= 2:
        need = (used.size - 1).bit_length()
        if need > max_len:
            if strict:
                raise ValueError(f"{used.size} distinct symbols need max_code_length >= {need}")
            max_len = need
        lengths = code_lengths(hist, max_len)
        w = BitWriter()
        write_table(w, lengths)
        table = w.getvalue()
        nbits = int(np.dot(hist.astype(np.uint64), lengths.astype(np.uint64)))
        candidates.append((1 + len(table) + (nbits + 7) // 8, 2,
                           lambda: bytes([MODE_HUFFMAN]) + table + encode_payload(symbols, lengths)))
    size, _, build = min(candidates, key=lambda c: (c[0], c[1]))
    out = build()
    assert len(out) == size
    return out


def encode_payload(symbols: np.ndarray, lengths) -> bytes:
    """The codewords of ``symbols`` back to back (LSB-first stream, codeword MSB first), zero-padded."""
    lengths = np.asarray(lengths, dtype=np.uint8)
    codes = canonical_codes(lengths)
    rev = np.array([reverse_bits(c, int(ln)) for c, ln in zip(codes, lengths)], dtype=np.uint64)
    lens = lengths[symbols].astype(np.int64)
    vals = rev[symbols]
    starts = np.cumsum(lens) - lens
    bits = np.zeros(int(lens.sum()), dtype=np.uint8)
    for b in range(int(lengths.max())):
        sel = lens > b
        bits[starts[sel] + b] = ((vals[sel] >> np.uint64(b)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits, bitorder="little").tobytes()


def decode(data: bytes, count: int, out_dtype=np.uint16) -> np.ndarray:
    """Decode a whole stream into ``count`` symbols of ``out_dtype`` (np.uint8 or np.uint16)."""
    data = bytes(data)
    limit = np.iinfo(out_dtype).max
    if not data:
        raise StreamError("huffman stream is empty (no mode byte)")
    mode = data[0]
    if mode == MODE_RAW:
        if len(data) < 2:
            raise StreamError("huffman stream truncated: RAW mode without its width byte")
        width = data[1]
        if width > MAX_RAW_WIDTH:
            raise StreamError(f"huffman stream: RAW width {width} > {MAX_RAW_WIDTH}")
        if (1 << width) - 1 > limit:
            raise StreamError(f"huffman stream: {width}-bit RAW symbols do not fit {np.dtype(out_dtype).name}")
        return unpack_bits(data[2:], width, count, out_dtype)
    if mode == MODE_CONST:
        symbol, shift, pos = 0, 0, 1
        while True:
            if pos >= len(data):
                raise StreamError("huffman stream truncated in the CONST symbol")
            byte = data[pos]
            pos += 1
            symbol |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= 21:
                raise StreamError("huffman stream: CONST symbol longer than 3 bytes")
        if pos != len(data):
            raise StreamError(f"huffman stream: {len(data) - pos} trailing bytes after the CONST symbol")
        if symbol >= MAX_ALPHABET or uvarint(symbol) != data[1:]:
            raise StreamError(f"huffman stream: CONST symbol {symbol} out of range or not minimally encoded")
        if symbol > limit:
            raise StreamError(f"huffman stream: symbol {symbol} does not fit {np.dtype(out_dtype).name}")
        return np.full(count, symbol, dtype=out_dtype)
    if mode == MODE_HUFFMAN:
        reader = BitReader(data, 1)
        lengths = read_table(reader)
        if len(lengths) - 1 > limit:
            raise StreamError(f"huffman stream: symbol {len(lengths) - 1} does not fit {np.dtype(out_dtype).name}")
        start = reader.finish_byte("the code-length table")
        return decode_payload(data, start, lengths, count, out_dtype)
    raise StreamError(f"huffman stream: unknown mode byte {mode}")


def decode_payload(data: bytes, start: int, lengths, count: int, out_dtype) -> np.ndarray:
    """Decode ``count`` codewords from ``data[start:]`` with a single-level lookup table."""
    if count > 8 * (len(data) - start):
        raise StreamError(f"huffman stream truncated: {len(data) - start} payload bytes cannot hold {count} codes")
    m = max(lengths)
    codes = canonical_codes(lengths)
    # table[next m bits, LSB first] = (symbol, length): codeword c of length l is reversed (its
    # first bit lands in bit 0) and repeated for every value of the m - l bits that follow it.
    table = [(0, 0)] * (1 << m)
    for s, (c, ln) in enumerate(zip(codes, lengths)):
        if ln:
            rev = reverse_bits(c, ln)
            for high in range(1 << (m - ln)):
                table[rev | (high << ln)] = (s, ln)
    out = np.empty(count, dtype=out_dtype)
    mask = (1 << m) - 1
    acc = nacc = 0                               # bit buffer and the number of valid bits in it
    pos = start
    for i in range(count):
        while nacc < m and pos < len(data):
            acc |= data[pos] << nacc
            pos += 1
            nacc += 8
        symbol, ln = table[acc & mask]
        if ln > nacc:
            raise StreamError(f"huffman stream truncated at symbol {i} of {count}")
        out[i] = symbol
        acc >>= ln
        nacc -= ln
    if pos != len(data) or nacc >= 8:
        unused = len(data) - pos + nacc // 8
        raise StreamError(f"huffman stream: {unused} trailing bytes after the last code")
    if acc:
        raise StreamError("huffman stream: non-zero padding bits after the last code")
    return out
