"""Canonical Huffman coding of small-integer symbols, with a raw bit-packing fallback.

Symbols are integers ``0 <= s < alphabet_size <= 65536`` (cluster indices, byte planes, quantized
ints). The stream is self-describing: decoding needs only the bytes and the number of symbols,
which the caller keeps as side information (tensorflow-compression style)::

    import numpy as np
    from squeezefmt.entropy import huffman

    idx = np.random.default_rng(0).choice(16, 100_000, p=probs)   # e.g. 16 cluster indices
    data = huffman.encode(idx, alphabet_size=16)                    # bytes
    back = huffman.decode(data, count=idx.size, dtype=np.uint8)
    assert np.array_equal(back, idx)
    huffman.stream_info(data)      # {'mode': 'huffman', 'max_code_length': 9, ...}

The encoder writes whichever of three modes is smallest (``spec/entropy-huffman.md``):

- ``raw``: the symbols packed at ``ceil(log2(alphabet_size))`` bits each (:func:`pack_bits`), so
  a Huffman stream is never bigger than plain bit packing plus one byte;
- ``const``: one distinct symbol, stored once (no payload at all);
- ``huffman``: a compact code-length table, then the codewords. Code lengths are limited to
  ``max_code_length`` (default 15) and the code is canonical, as in Deflate.

Decoding untrusted bytes raises :class:`squeezefmt.errors.StreamError` for any malformed stream
(bad table, truncation, trailing data, non-zero padding); it never allocates more than the
``count`` outputs plus a table of at most 2**16 entries.

Backends: the C extension ``_huffmanc`` when it is built (``"c"``), else the readable reference
:mod:`squeezefmt.entropy.huffman_ref` (``"python"``). Both produce identical bytes and accept
and reject the same streams. :func:`get_backend` / :func:`set_backend` choose the default (the
environment variable ``SQUEEZEFMT_PURE_PYTHON=1`` selects ``"python"`` at import); every function
also takes ``backend=`` for one call.
"""
from __future__ import annotations

import operator

import numpy as np

from ..buffers import empty_aligned
from ..errors import CodecError, StreamError
from ..threads import helper, split_here
from . import huffman_ref as _ref
from .backend_switch import BackendSwitch
from .huffman_ref import (  # noqa: F401  (re-exported constants)
    MAX_ALPHABET, MAX_CODE_LENGTH, MAX_PACK_WIDTH, MAX_RAW_WIDTH, MODE_CONST, MODE_HUFFMAN, MODE_NAMES,
    MODE_RAW, raw_width,
)

try:  # optional C fast path; huffman_ref is the reference it is tested against
    from . import _huffmanc as _c  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _c = None

#: Outputs from which a stream decoded before is decoded in two halves at once: at 2**18 values the
#: second thread's start-up and tables cost about what it saves (0.85-1.7x in two runs), from 2**19
#: it pays (1.1-1.8x), at 2**22 1.7-2.0x (random 8-bit Gaussian codes into float32; the C module
#: keeps hints from its SPLIT_MIN_COUNT = 2**18 values up).
_HALVES_MIN = 1 << 19

DEFAULT_MAX_CODE_LENGTH = 15

BACKENDS = ("c", "python") if _c is not None else ("python",)
_switch = BackendSwitch("huffman", "_huffmanc", _c)

__all__ = [
    "encode", "decode", "pack_bits", "unpack_bits", "code_lengths", "stream_info", "get_backend",
    "set_backend", "decode_gather", "decode_gather_reference", "decode_dequant", "BACKENDS",
    "DEFAULT_MAX_CODE_LENGTH", "MAX_CODE_LENGTH", "MAX_ALPHABET",
]


def get_backend() -> str:
    """The default backend: ``"c"`` (the ``_huffmanc`` extension) or ``"python"`` (the reference)."""
    return _switch.default


def set_backend(name: str) -> str:
    """Set the default backend (``"c"``, ``"python"`` or ``"auto"``); returns the previous one."""
    return _switch.set(name)


_resolve = _switch.resolve


# --------------------------------------------------------------------------------------------
# Input checks shared by both backends
# --------------------------------------------------------------------------------------------

def _int_array(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "ui":
        if arr.size == 0 and arr.dtype.kind == "f":  # np.asarray([]) is float64
            return np.zeros(0, dtype=np.uint8)
        raise CodecError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.reshape(-1)


def _as_buffer(data) -> bytes | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)
    if not view.c_contiguous or view.itemsize != 1:
        return view.tobytes()
    return view.cast("B") if view.ndim != 1 else view


def _narrow(arr: np.ndarray, upper: int, what: str) -> np.ndarray:
    """``arr`` as uint8/uint16/uint32 after checking ``0 <= arr < upper`` (``upper <= 2**32``)."""
    target = np.uint8 if upper <= 1 << 8 else np.uint16 if upper <= 1 << 16 else np.uint32
    if arr.size == 0:
        return arr.astype(target)
    if arr.dtype == target:
        hi = int(arr.max())
        lo = 0
    else:
        lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise CodecError(f"{what} must be non-negative (found {lo})")
    if hi >= upper:
        raise CodecError(f"{what}: value {hi} >= {upper}")
    return np.ascontiguousarray(arr, dtype=target)


# --------------------------------------------------------------------------------------------
# Huffman streams
# --------------------------------------------------------------------------------------------

def encode(symbols, alphabet_size: int | None = None, max_code_length: int | None = None, *,
           backend: str | None = None) -> bytes:
    """Encode integer ``symbols`` (any shape, flattened) as a self-describing stream.

    ``alphabet_size`` (default: ``max(symbols) + 1``) sets the width of the raw fallback,
    ``ceil(log2(alphabet_size))`` bits per symbol; all symbols must be below it (<= 65536).
    ``max_code_length`` (1..16) limits codeword lengths; by default 15, raised to 16 only when
    more than 32768 distinct symbols occur. An explicit limit that cannot fit the number of
    distinct symbols (``2**max_code_length < distinct``) is an error.
    """
    impl = _resolve(backend)
    arr = _int_array(symbols, "symbols")
    if alphabet_size is None:
        alphabet_size = int(arr.max()) + 1 if arr.size else 1
        if alphabet_size > MAX_ALPHABET:
            raise CodecError(f"symbols: value {alphabet_size - 1} >= {MAX_ALPHABET}")
    alphabet_size = operator.index(alphabet_size)
    if not 1 <= alphabet_size <= MAX_ALPHABET:
        raise ValueError(f"alphabet_size {alphabet_size} outside 1..{MAX_ALPHABET}")
    strict = max_code_length is not None
    max_len = DEFAULT_MAX_CODE_LENGTH if max_code_length is None else operator.index(max_code_length)
    if not 1 <= max_len <= MAX_CODE_LENGTH:
        raise ValueError(f"max_code_length {max_len} outside 1..{MAX_CODE_LENGTH}")
    if impl == "c" and arr.dtype in (np.uint8, np.uint16):
        arr = np.ascontiguousarray(arr)            # C checks the range while it counts
    else:
        arr = _narrow(arr, alphabet_size, "symbols")
    if impl == "c":
        return _c.encode(arr, alphabet_size, max_len, strict)
    if strict:
        distinct = int(np.count_nonzero(np.bincount(arr, minlength=1))) if arr.size else 0
        if distinct > 1 << max_len:
            raise ValueError(f"{distinct} distinct symbols need max_code_length >= {(distinct - 1).bit_length()}")
    return _ref.encode(arr, alphabet_size, max_len, strict=False)


def _check_count_fits(data, count: int) -> None:
    """Cheap bound before allocating ``count`` outputs: each code takes >= 1 bit, raw ones ``width``."""
    if len(data) < 1:
        return  # the backend reports the missing mode byte
    mode = data[0]
    if mode == MODE_HUFFMAN and count > 8 * (len(data) - 1):
        raise StreamError(f"huffman stream truncated: {len(data) - 1} bytes cannot hold {count} codes")
    if mode == MODE_RAW and len(data) >= 2 and data[1] <= MAX_RAW_WIDTH:
        need = (count * data[1] + 7) // 8
        if len(data) - 2 < need:
            raise StreamError(f"bit-packed data truncated: {len(data) - 2} bytes for {count} values of "
                              f"{data[1]} bits (expected {need})")


def decode(data, count: int, dtype=np.uint8, *, backend: str | None = None) -> np.ndarray:
    """Decode ``count`` symbols from a stream made by :func:`encode`.

    ``dtype`` is the output dtype: ``np.uint8`` (alphabets up to 256) or ``np.uint16`` are decoded
    directly; any other integer dtype is filled from uint16. A stream whose symbols cannot fit
    ``dtype`` raises :class:`StreamError`, as does any malformed stream.
    """
    impl = _resolve(backend)
    count = operator.index(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    dtype = np.dtype(dtype)
    if dtype.kind not in "ui":
        raise ValueError(f"dtype must be an integer dtype, got {dtype}")
    native = np.dtype(np.uint8) if dtype.itemsize == 1 else np.dtype(np.uint16)
    data = _as_buffer(data)
    _check_count_fits(data, count)
    if impl == "c":
        out = empty_aligned(count, native, populate=True)  # the decoder writes every symbol or fails
        _c.decode(data, out)
    else:
        out = _ref.decode(data, count, native.type)
    if out.dtype == dtype:
        return out
    top = np.iinfo(dtype).max
    if top < np.iinfo(native).max and out.size and int(out.max()) > top:
        raise StreamError(f"huffman stream: symbol {int(out.max())} does not fit {dtype.name}")
    return out.astype(dtype)


def stream_info(data) -> dict:
    """Peek at a stream's header without decoding the payload (mode, widths, table summary)."""
    data = bytes(_as_buffer(data))
    if not data:
        raise StreamError("huffman stream is empty (no mode byte)")
    mode = data[0]
    if mode not in MODE_NAMES:
        raise StreamError(f"huffman stream: unknown mode byte {mode}")
    info: dict = {"mode": MODE_NAMES[mode], "size": len(data)}
    if mode == MODE_RAW:
        if len(data) < 2:
            raise StreamError("huffman stream truncated: RAW mode without its width byte")
        info.update(width=data[1], payload_offset=2)
    elif mode == MODE_CONST:
        info["symbol"] = int(_ref.decode(data, 1, np.uint16)[0])
    else:
        reader = _ref.BitReader(data, 1)
        lengths = _ref.read_table(reader)
        start = reader.finish_byte("the code-length table")
        info.update(max_code_length=max(lengths), table_size=len(lengths),
                    used_symbols=sum(1 for x in lengths if x), payload_offset=start,
                    code_lengths={s: ln for s, ln in enumerate(lengths) if ln})
    return info


def code_lengths(counts, max_code_length: int = DEFAULT_MAX_CODE_LENGTH, *,
                 backend: str | None = None) -> np.ndarray:
    """Length-limited Huffman code lengths (uint8 per symbol, 0 = unused) for a histogram.

    The code is complete (Kraft sum exactly 1) when two or more symbols are used; a single used
    symbol gets length 0 (the stream's ``const`` mode). Same algorithm in both backends.
    """
    impl = _resolve(backend)
    arr = _int_array(counts, "counts")
    if arr.size > MAX_ALPHABET:
        raise ValueError(f"at most {MAX_ALPHABET} symbols")
    if arr.size and int(arr.min()) < 0:
        raise CodecError("counts must be non-negative")
    max_len = operator.index(max_code_length)
    if not 1 <= max_len <= MAX_CODE_LENGTH:
        raise ValueError(f"max_code_length {max_len} outside 1..{MAX_CODE_LENGTH}")
    arr = arr.astype(np.uint64)
    if impl == "c":
        return np.frombuffer(_c.code_lengths(np.ascontiguousarray(arr), max_len), dtype=np.uint8).copy()
    return _ref.code_lengths(arr, max_len)


# --------------------------------------------------------------------------------------------
# Fixed-width bit packing
# --------------------------------------------------------------------------------------------

def pack_bits(values, width: int, *, backend: str | None = None) -> bytes:
    """Pack non-negative ints ``< 2**width`` at ``width`` (0..32) bits each, LSB first, zero-padded.

    Value ``i`` occupies bits ``[i*width, (i+1)*width)`` of the output, where bit ``j`` of a byte
    string is bit ``j % 8`` of byte ``j // 8``; the last byte is padded with zero bits.
    """
    impl = _resolve(backend)
    width = operator.index(width)
    if not 0 <= width <= MAX_PACK_WIDTH:
        raise ValueError(f"width {width} outside 0..{MAX_PACK_WIDTH}")
    arr = _narrow(_int_array(values, "values"), 1 << width, "values")
    if impl == "c":
        return _c.pack_bits(arr, width)
    return _ref.pack_bits(arr, width)


def unpack_bits(data, width: int, count: int, dtype=None, *, backend: str | None = None) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values of ``width`` bits from exactly their bytes.

    ``dtype`` defaults to the smallest of uint8/uint16/uint32 holding ``width`` bits. Wrong length
    or non-zero padding bits raise :class:`StreamError`.
    """
    impl = _resolve(backend)
    width, count = operator.index(width), operator.index(count)
    if not 0 <= width <= MAX_PACK_WIDTH:
        raise ValueError(f"width {width} outside 0..{MAX_PACK_WIDTH}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    native = np.dtype(np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32)
    dtype = native if dtype is None else np.dtype(dtype)
    if dtype.kind not in "ui" or (width and np.iinfo(dtype).max < (1 << width) - 1):
        raise ValueError(f"dtype {dtype} cannot hold {width}-bit values")
    data = _as_buffer(data)
    need = (count * width + 7) // 8
    if len(data) < need:
        raise StreamError(f"bit-packed data truncated: {len(data)} bytes for {count} values of {width} bits "
                          f"(expected {need})")
    if impl == "c":
        out = np.empty(count, dtype=native)
        _c.unpack_bits(data, width, out)
    else:
        out = _ref.unpack_bits(bytes(data), width, count, native.type)
    return out if out.dtype == dtype else out.astype(dtype)


# --------------------------------------------------------------------------------------------
# Decoding straight into values (quant / cluster)
# --------------------------------------------------------------------------------------------

def decode_gather(data, table: np.ndarray, out: np.ndarray, *, backend: str | None = None) -> bool:
    """``out[i] = table[symbol i]`` for the ``out.size`` symbols of ``data``, with no symbol array.

    The C backend decodes each codeword straight into its table value (``table`` and ``out``
    C-contiguous with the same item size of 1, 2, 4 or 8 bytes). Returns False, ``out`` untouched,
    when it does not take the stream: the ``"python"`` backend, a stream not in ``huffman`` mode, or
    a code table with symbols ``>= table.size``; the caller then runs :func:`decode_gather_reference`
    (or its own checks). Malformed streams raise :class:`StreamError` either way.
    """
    width = out.dtype.itemsize
    if (_resolve(backend) != "c" or table.dtype.itemsize != width or width not in (1, 2, 4, 8)
            or not (table.flags.c_contiguous and out.flags.c_contiguous)):
        return False
    data = _as_buffer(data)
    _check_count_fits(data, out.size)
    bits = np.dtype(f"u{width}")  # copied as bit patterns (bfloat16 has no buffer format)
    table, flat = table.view(bits), out.reshape(-1).view(bits)
    if _in_halves(data, table, flat):
        return True
    return bool(_c.decode_gather(data, table, flat))


def _in_halves(data, table: np.ndarray, out: np.ndarray) -> bool:
    """A long stream decoded before, in two halves at once: this thread and a helper (module
    :mod:`squeezefmt.threads`). True when both halves held; else the caller decodes the whole stream
    (a stream whose hints fail, or a malformed one, which the whole decode then rejects)."""
    if out.size < _HALVES_MIN or not split_here() or not _c.has_hints(data, out.size):
        return False
    other = helper().submit(_c.decode_gather_half, data, table, out, 1)
    mine = _c.decode_gather_half(data, table, out, 0)
    return bool(other.result()) and mine


def decode_gather_reference(data, table: np.ndarray, out: np.ndarray) -> np.ndarray:
    """numpy reference of :func:`decode_gather`: the reference decoder, then ``np.take`` (symbols checked)."""
    sym = decode(data, out.size, np.uint16, backend="python")
    if sym.size and int(sym.max()) >= table.size:
        raise StreamError(f"huffman stream: symbol {int(sym.max())} outside a table of {table.size} values")
    np.take(table, sym, out=out.reshape(-1))
    return out


def decode_dequant(data, out: np.ndarray, shift: np.ndarray, zp: np.ndarray, step: np.ndarray, inner: int,
                   qmax: int, *, backend: str | None = None) -> int:
    """Per-channel dequantisation of quant symbols straight into float32 ``out`` (one pass, C).

    Element ``i`` belongs to channel ``c = (i // inner) % C`` (``C = step.size``); with ``q = s - shift[c]``
    it must hold ``0 <= q <= qmax`` and ``out[i] = float32(q - zp[c]) * step[c]``. Returns 0 (done),
    1 (not taken: ``"python"`` backend, not ``huffman`` mode; ``out`` untouched) or 2 (a symbol outside
    its channel's range). Reference: :func:`decode` then ``quantize.dequantize_channels_reference``.
    """
    if _resolve(backend) != "c" or out.dtype != np.float32 or not out.flags.c_contiguous:
        return 1
    data = _as_buffer(data)
    _check_count_fits(data, out.size)
    as32 = [np.ascontiguousarray(v.reshape(-1), dtype=np.int32) for v in (shift, zp)]
    return int(_c.decode_dequant(data, out.reshape(-1), as32[0], as32[1],
                                 np.ascontiguousarray(step.reshape(-1), dtype=np.float32), int(inner), int(qmax)))
