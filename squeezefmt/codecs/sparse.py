"""``sparse``: pruned tensors (exact zeros) as a CSR structure plus the non-zero values.

The tensor is viewed as a matrix of ``cols = shape[-1]`` columns (a Dense kernel ``(in, out)`` as
it is; a Conv2D kernel ``(kh, kw, in, out)`` as ``(kh*kw*in, out)``; a vector as one row). Its
non-zero entries are described row by row (CSR):

- the number of non-zeros of every row (the differences of CSR's row pointers), and
- for each non-zero, the number of zeros skipped since the previous non-zero of its row (the
  delta-coded column index: ``col[0]``, ``col[j] - col[j-1] - 1``),

both canonical-Huffman coded with an escape for rare large numbers (see "integer sequences" in
spec/codecs.md). The non-zero values, in row-major order, go through a nested codec: ``raw`` or
``bytegroup`` keep the tensor bit-exact, ``quant`` or ``cluster`` make it lossy and much smaller
(Deep Compression's prune + cluster + Huffman).

"Zero" means the all-zero bit pattern (``+0.0`` for floats): ``-0.0`` and NaN are stored as values,
so a lossless round trip is exact to the bit. With ``sparsity=s`` the encoder first prunes the
tensor by magnitude (the smallest ``|w|`` become zero until a fraction ``s`` of it is zero) --
pruning without retraining, lossy::

    >>> import numpy as np
    >>> from squeezefmt.codecs.sparse import Sparse
    >>> from squeezefmt.codecs.cluster import Cluster
    >>> w = np.random.default_rng(0).normal(0, 0.05, (784, 300)).astype(np.float32)
    >>> enc = Sparse(values=Cluster(bits=5), sparsity=0.9).encode(w)   # prune 90 %, 32 shared values
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..buffers import zeros_aligned
from ..dtypes import FLOAT_NAMES, as_storage, dtype_name, from_storage, numpy_dtype
from ..entropy import huffman
from ..entropy.varint import read_uvarint, uvarint
from ..errors import CodecError, StreamError
from .base import Codec, Encoded, TensorSpec, lossy_stats
from .raw import Raw
from .registry import decode_nested, encode_nested, get_codec, nested_stream_count, register

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}

#: Largest escape class: escaped numbers carry up to 32 extra bits (pack_bits' limit).
MAX_ESCAPE_CLASS = 32
#: Largest literal count L (the Huffman alphabet is L + 33 symbols, at most 65536).
MAX_LITERALS = huffman.MAX_ALPHABET - MAX_ESCAPE_CLASS - 1


# -- integer sequences: Huffman literals with log-class escapes ---------------------------------

def _to_symbols(values: np.ndarray, literals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbols, escape classes, extra bits) of ``values`` with ``literals`` literal symbols."""
    v = values.astype(np.uint64)
    esc = v >= literals
    w = v[esc] - np.uint64(literals) + np.uint64(1)            # >= 1
    k = np.floor(np.log2(w.astype(np.float64))).astype(np.int64)
    # float log2 can be off by one near powers of two for large w: fix exactly
    k += (w >= (np.uint64(1) << (k + 1).astype(np.uint64))).astype(np.int64)
    k -= (w < (np.uint64(1) << k.astype(np.uint64))).astype(np.int64)
    if k.size and int(k.max()) > MAX_ESCAPE_CLASS:
        raise CodecError(f"sparse: number {int(v.max())} is too large to code")
    sym = v.copy()
    sym[esc] = np.uint64(literals) + k.astype(np.uint64)
    extra = w - (np.uint64(1) << k.astype(np.uint64))
    return sym, k, extra


def encode_uints(values: np.ndarray, literals: int | None = None) -> bytes:
    """Code non-negative integers: see spec/codecs.md, "integer sequences".

    Layout: ``L`` (uvarint, literal count), ``H`` (uvarint, Huffman stream length), the Huffman
    stream of one symbol per number (``v < L``: ``v``; else escape class ``L + k`` with
    ``k = floor(log2(v - L + 1))``), then for each class ``k >= 1`` in increasing order the extra
    bits ``v - L + 1 - 2**k`` of its numbers (in sequence order) packed at ``k`` bits each.
    Without an explicit ``literals`` the encoder tries several and keeps the shortest.
    An empty sequence is zero bytes.
    """
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return b""
    top = int(values.max())
    if literals is not None:
        return _encode_uints(values, literals)
    cands = {min(top + 1, MAX_LITERALS)}
    cands.update(1 << b for b in range(1, 16) if (1 << b) <= top)
    best = None
    for lit in sorted(cands):
        out = _encode_uints(values, lit)
        if best is None or len(out) < len(best):
            best = out
    return best


def _encode_uints(values: np.ndarray, literals: int) -> bytes:
    if not 1 <= literals <= MAX_LITERALS:
        raise CodecError(f"sparse: literal count {literals} outside 1..{MAX_LITERALS}")
    sym, k, extra = _to_symbols(values, literals)
    alphabet = literals + (int(k.max()) + 1 if k.size else 0)
    dtype = np.uint8 if alphabet <= 256 else np.uint16
    payload = huffman.encode(sym.astype(dtype), alphabet_size=alphabet)
    parts = [uvarint(literals), uvarint(len(payload)), payload]
    for cls in range(1, int(k.max()) + 1 if k.size else 1):
        sel = extra[k == cls]
        if sel.size:
            parts.append(huffman.pack_bits(sel.astype(np.uint64 if cls > 32 else np.uint32), cls))
    return b"".join(parts)


def decode_uints(data, count: int, upper: int, what: str) -> np.ndarray:
    """Decode ``count`` integers, each ``<= upper``, from exactly ``data``.

    The result is int32 when ``upper`` fits (so decoding a tensor's structure allocates about as
    much as the tensor), else int64.
    """
    data = memoryview(data)
    itype = np.int32 if upper < 2**31 - 1 else np.int64
    if count == 0:
        if len(data):
            raise StreamError(f"sparse {what}: {len(data)} bytes for an empty sequence")
        return np.zeros(0, itype)
    literals, pos = read_uvarint(data, 0, f"sparse {what} literal count", MAX_LITERALS)
    if literals < 1:
        raise StreamError(f"sparse {what}: literal count must be >= 1")
    hlen, pos = read_uvarint(data, pos, f"sparse {what} Huffman length", len(data) - pos)
    alphabet = literals + MAX_ESCAPE_CLASS + 1
    sym = huffman.decode(data[pos:pos + hlen], count, dtype=np.uint8 if alphabet <= 256 else np.uint16)
    pos += hlen
    top = int(sym.max())
    if top >= literals + MAX_ESCAPE_CLASS + 1:
        raise StreamError(f"sparse {what}: escape class {top - literals} > {MAX_ESCAPE_CLASS}")
    if top < literals:                              # no escapes: the symbols are the numbers
        if pos != len(data):
            raise StreamError(f"sparse {what}: {len(data) - pos} trailing bytes")
        if top > upper:
            raise StreamError(f"sparse {what}: value {top} exceeds {upper}")
        return sym.astype(itype)
    kmax = top - literals
    if upper - literals + 1 < (1 << kmax):
        raise StreamError(f"sparse {what}: escape class {kmax} exceeds the bound {upper}")
    out = sym.astype(itype)
    esc = np.flatnonzero(sym >= literals)
    k = out[esc] - literals
    vals = np.zeros(esc.size, np.int64)
    for cls in range(1, kmax + 1):
        sel = k == cls
        cnt = int(np.count_nonzero(sel))
        if not cnt:
            continue
        nbytes = (cnt * cls + 7) // 8
        if pos + nbytes > len(data):
            raise StreamError(f"sparse {what}: extra bits truncated")
        vals[sel] = huffman.unpack_bits(data[pos:pos + nbytes], cls, cnt, dtype=np.uint32)
        pos += nbytes
    if pos != len(data):
        raise StreamError(f"sparse {what}: {len(data) - pos} trailing bytes")
    full = literals - 1 + (np.int64(1) << k.astype(np.int64)) + vals
    biggest = max(int(full.max()), int(sym[sym < literals].max(initial=0)))
    if biggest > upper:
        raise StreamError(f"sparse {what}: value {biggest} exceeds {upper}")
    out[esc] = full.astype(itype)
    return out


# -- CSR ---------------------------------------------------------------------------------------

def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the CSR view of a tensor of ``shape``."""
    n = math.prod(shape)
    if len(shape) == 0:
        return 1, 1
    cols = int(shape[-1])
    return (n // cols if cols else 0), cols


def csr_structure(mask: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(non-zeros per row, zeros skipped before each non-zero within its row) of a flat mask."""
    rows = mask.size // cols if cols else 0
    pos = np.flatnonzero(mask)
    r, c = np.divmod(pos, cols) if cols else (pos, pos)
    rowlens = np.bincount(r, minlength=rows)
    prev = np.empty_like(c)
    if c.size:
        prev[0] = -1
        prev[1:] = np.where(r[1:] == r[:-1], c[:-1], -1)
    return rowlens, c - prev - 1


def encode_structure(mask: np.ndarray, cols: int, negzero: np.ndarray | None = None) -> bytes:
    """The CSR structure stream of a flat non-zero mask (see spec/codecs.md, "sparse").

    ``negzero`` (flat bool, optional) marks the zeros that are ``-0.0``; they are listed after the
    CSR part so that a lossless round trip keeps the sign of every zero.
    """
    rowlens, gaps = csr_structure(mask, cols)
    a = encode_uints(rowlens)
    b = encode_uints(gaps)
    out = [uvarint(len(a)), a, uvarint(len(b)), b]
    neg = np.flatnonzero(negzero[~mask]) if negzero is not None else np.zeros(0, np.int64)
    out.append(uvarint(neg.size))
    if neg.size:
        prev = np.concatenate([[-1], neg[:-1]])
        out.append(encode_uints(neg - prev - 1))
    return b"".join(out)


def decode_structure(data, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat positions of the non-zeros, flat positions of the ``-0.0`` zeros), both increasing."""
    data = memoryview(data)
    n = rows * cols
    alen, pos = read_uvarint(data, 0, "sparse row counts length", len(data))
    rowlens = decode_uints(data[pos:pos + alen], rows, cols, "row counts")
    pos += alen
    nnz = int(rowlens.sum())
    blen, pos = read_uvarint(data, pos, "sparse column gaps length", len(data) - pos)
    gaps = decode_uints(data[pos:pos + blen], nnz, max(cols - 1, 0), "column gaps")
    pos += blen
    zeros = n - nnz
    m, pos = read_uvarint(data, pos, "sparse negative zero count", zeros)
    neg_gaps = decode_uints(data[pos:], m, max(zeros - 1, 0), "negative zeros")
    itype = np.int32 if n < 2**31 - 1 else np.int64
    if nnz == 0:
        nz_pos = np.zeros(0, itype)
    else:
        csum = np.cumsum(gaps, dtype=np.int64) + np.arange(1, nnz + 1)   # int64: a lying stream cannot wrap
        ends = np.cumsum(rowlens, dtype=np.int64)
        starts = ends - rowlens
        base = np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0)
        last = csum[ends[rowlens > 0] - 1] - base[rowlens > 0] - 1
        if int(last.max()) >= cols:
            raise StreamError(f"sparse: a column index passes the row end ({cols} columns)")
        col = (csum - np.repeat(base, rowlens) - 1).astype(itype)
        del csum
        nz_pos = np.repeat(np.arange(rows, dtype=itype) * itype(cols), rowlens) + col
    if m == 0:
        return nz_pos, np.zeros(0, itype)
    nth = np.cumsum(neg_gaps + 1) - 1             # indices among the zeros, increasing
    if int(nth[-1]) >= zeros:
        raise StreamError("sparse: a negative zero lies past the last zero")
    is_zero = np.ones(n, bool)
    is_zero[nz_pos] = False
    return nz_pos, np.flatnonzero(is_zero)[nth]


def prune_mask(array: np.ndarray, sparsity: float) -> np.ndarray:
    """Flat keep-mask after magnitude pruning to ``sparsity`` (existing zeros count as pruned).

    The ``ceil(sparsity * n)`` smallest ``|w|`` are dropped; among equal magnitudes at the
    threshold, the first in C order go first (deterministic).
    """
    x = np.abs(np.asarray(array, dtype=np.float64).reshape(-1))
    n = x.size
    drop = min(n, int(math.ceil(sparsity * n - 1e-9)))
    keep = x != 0
    if drop <= n - int(keep.sum()):
        return keep
    t = np.partition(x, drop - 1)[drop - 1]
    keep = x > t
    ties = np.flatnonzero(x == t)
    still = drop - int(np.count_nonzero(x < t))   # how many of the ties must go
    keep[ties[still:]] = True
    keep &= x != 0
    return keep


@register
class Sparse(Codec):
    """CSR structure of the non-zeros + their values through a nested codec (default ``raw``)."""

    codec_id = "sparse"
    version = 1
    lossless = True

    def __init__(self, values: Any = None, sparsity: float = 0.0):
        if values is None:
            values = Raw()
        elif isinstance(values, dict):
            values = get_codec(values)
        if not isinstance(values, Codec):
            raise StreamError(f"sparse: values must be a codec or its description, got {values!r}")
        if isinstance(values, Sparse):
            raise StreamError("sparse: the values codec cannot itself be sparse")
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity <= 1.0:
            raise StreamError(f"sparse: sparsity must be a number in [0, 1], got {sparsity!r}")
        self.values = values
        self.sparsity = float(sparsity)
        self.lossless = bool(values.lossless) and self.sparsity == 0.0

    def get_config(self):
        cfg: dict[str, Any] = {"values": self.values.describe()}
        if self.sparsity:
            cfg["sparsity"] = self.sparsity
        return cfg

    def encode(self, array: np.ndarray) -> Encoded:
        array = np.asarray(array)
        name = dtype_name(array.dtype)
        storage = as_storage(array).reshape(-1)
        mask, negzero = _nonzero_mask(storage, name)
        if self.sparsity > 0:
            if name not in FLOAT_NAMES:
                raise CodecError(f"sparse: magnitude pruning needs a float tensor, got {name}")
            if not np.all(np.isfinite(np.asarray(array, dtype=np.float64))):
                raise CodecError("sparse: cannot prune a tensor with NaN or infinite values")
            mask &= prune_mask(array, self.sparsity)
        _, cols = matrix_shape(array.shape)
        structure = encode_structure(mask, cols, negzero if self.lossless else None)
        vals = from_storage(storage[mask], name)
        desc, streams, _ = encode_nested(self.values, vals)
        enc = Encoded(streams=[structure] + streams, side={"values": desc})
        if not self.lossless:  # error over the whole tensor: pruning plus the values codec
            dec = self.values.decode([memoryview(s) for s in streams], desc["side"], TensorSpec(name, (vals.size,)))
            out = np.zeros(storage.size, storage.dtype)
            out[mask] = as_storage(dec).reshape(-1)
            enc.stats = lossy_stats(array, from_storage(out.reshape(array.shape), name))
        return enc

    @classmethod
    def stream_alignment(cls, side, lengths):
        """The structure stream back to back; the values streams as their codec declares."""
        from .registry import nested_alignment  # noqa: PLC0415

        return [1] + nested_alignment(side["values"], lengths[1:])

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        if len(streams) < 1:
            raise StreamError("sparse: expects a structure stream")
        desc = side.get("values") if isinstance(side, dict) else None
        count = nested_stream_count(desc, len(streams) - 1)
        if count != len(streams) - 1:
            raise StreamError(f"sparse: values codec declares {count} streams, {len(streams) - 1} follow the structure")
        if isinstance(desc.get("codec"), dict) and desc["codec"].get("id") == self.codec_id:
            raise StreamError("sparse: nested sparse values are not allowed")
        rows, cols = matrix_shape(spec.shape)
        pos, negzero = decode_structure(streams[0], rows, cols)
        storage = numpy_dtype(spec.dtype, storage=True)
        if negzero.size and spec.dtype not in FLOAT_NAMES:
            raise StreamError(f"sparse: negative zeros listed for a {spec.dtype} tensor")
        values = decode_nested(desc, streams[1:], TensorSpec(spec.dtype, (int(pos.size),)))
        out = zeros_aligned(spec.size, storage)
        out[pos] = as_storage(values).reshape(-1)
        if negzero.size:
            out.view(_UINT[storage.itemsize])[negzero] = _sign_bit(storage.itemsize)
        return from_storage(out.reshape(spec.shape), spec.dtype)


def _sign_bit(width: int):
    return _UINT[width](1 << (8 * width - 1))


def _nonzero_mask(storage: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(non-zero mask, ``-0.0`` mask or None) of a flat storage array; floats: both zeros are zero."""
    width = storage.dtype.itemsize
    bits = storage.view(_UINT[width]) if storage.dtype.kind != "b" else storage.view(np.uint8)
    if name not in FLOAT_NAMES:
        return bits != 0, None
    sign = _sign_bit(width)
    mag = bits & ~sign
    return mag != 0, (bits == sign)


def zero_fraction(array: np.ndarray) -> float:
    """Fraction of exact zeros (``+0.0`` or ``-0.0`` for floats), as pruning leaves them."""
    array = np.asarray(array)
    if array.size == 0:
        return 0.0
    mask, _ = _nonzero_mask(as_storage(array).reshape(-1), dtype_name(array.dtype))
    return 1.0 - np.count_nonzero(mask) / mask.size
