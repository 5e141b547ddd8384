"""Canonical Huffman coder and bit packing: golden vectors, C vs reference, properties, corruption.

The stream is specified in spec/entropy-huffman.md; spec/vectors/huffman/*.json are frozen vectors
(never regenerated: a change that breaks one is a format change). Every behaviour is checked on
both backends: the C extension ``_huffmanc`` and the readable reference ``huffman_ref``.
"""
from __future__ import annotations

import heapq
import json
import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from squeezefmt.entropy import huffman, huffman_ref
from squeezefmt.errors import CodecError, SqueezeError, StreamError

from conftest import VECTORS

HUFF_VECTORS = os.path.join(VECTORS, "huffman")
BACKENDS = list(huffman.BACKENDS)
needs_c = pytest.mark.skipif("c" not in huffman.BACKENDS, reason="C extension _huffmanc not built")


def _load(name):
    with open(os.path.join(HUFF_VECTORS, name)) as f:
        return json.load(f)["vectors"]


VALID = _load("valid.json")
INVALID = _load("invalid.json")

SPEC_SYMBOLS = [0, 0, 1, 0, 0, 2, 0, 0, 1, 0, 0, 3, 0, 0]
SPEC_STREAM = bytes.fromhex("02420e09c48803")


def _skewed(rng, alphabet, n, kind):
    """Symbols drawn from a few shapes of distribution over ``alphabet`` values."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(alphabet, int(rng.integers(1, 3000)))
    support = rng.choice(alphabet, size=k, replace=False) if k < alphabet else np.arange(alphabet)
    if kind == "geometric":
        p = 0.7 ** np.arange(k, dtype=np.float64)
    elif kind == "dirichlet":
        p = rng.dirichlet(np.full(k, 0.2))
    elif kind == "uniform":
        p = np.ones(k)
    else:  # "fibonacci"-like: extreme skew, forces the length limit
        p = 0.55 ** np.arange(k, dtype=np.float64)
    p = np.maximum(p, 1e-300)
    p /= p.sum()
    return support[rng.choice(k, size=n, p=p)]


def _dtype(alphabet):
    return np.uint8 if alphabet <= 256 else np.uint16


def _decode_all(data, count, dtype):
    """Decode with every backend (and both C loops); all must agree. Returns the result or the error class."""
    results = []
    for be in BACKENDS:
        try:
            results.append(huffman.decode(data, count, dtype, backend=be))
        except StreamError as exc:
            results.append(exc)
    if "c" in BACKENDS and count:
        out = np.empty(count, dtype=dtype)
        try:
            huffman._check_count_fits(data, count)  # what decode() checks before allocating
            huffman._c.decode(data, out, False)     # single-symbol loop, no multi-symbol table
            results.append(out)
        except StreamError as exc:
            results.append(exc)
    first = results[0]
    for other in results[1:]:
        if isinstance(first, StreamError):
            assert isinstance(other, StreamError) and str(other) == str(first)
        else:
            assert isinstance(other, np.ndarray) and np.array_equal(other, first)
    return first


# ------------------------------------------------------------------------------------------------
# Golden vectors
# ------------------------------------------------------------------------------------------------

def test_spec_example_bytes():
    assert huffman.encode(SPEC_SYMBOLS, alphabet_size=8) == SPEC_STREAM
    info = huffman.stream_info(SPEC_STREAM)
    assert info["code_lengths"] == {0: 1, 1: 2, 2: 3, 3: 3} and info["payload_offset"] == 4
    assert huffman.decode(SPEC_STREAM, 14).tolist() == SPEC_SYMBOLS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vec", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector(vec, backend):
    data = bytes.fromhex(vec["hex"])
    got = huffman.decode(data, vec["count"], np.dtype(vec["dtype"]), backend=backend)
    assert got.dtype == np.dtype(vec["dtype"]) and got.tolist() == vec["symbols"]
    assert huffman.stream_info(data)["mode"] == vec["mode"]
    # our encoder is deterministic and frozen to these bytes
    again = huffman.encode(np.array(vec["symbols"], dtype=np.int64), vec["alphabet_size"], vec["max_code_length"],
                           backend=backend)
    assert again == data


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vec", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector(vec, backend):
    with pytest.raises(StreamError, match=vec["error"].replace("(", r"\(")):
        huffman.decode(bytes.fromhex(vec["hex"]), vec["count"], np.dtype(vec["dtype"]), backend=backend)


def test_errors_are_value_errors():
    assert issubclass(StreamError, SqueezeError) and issubclass(StreamError, ValueError)
    with pytest.raises(ValueError):
        huffman.decode(b"\x07", 1)


# ------------------------------------------------------------------------------------------------
# Round trips, C vs reference
# ------------------------------------------------------------------------------------------------

@given(seed=st.integers(0, 2**32 - 1),
       alphabet=st.one_of(st.integers(1, 40), st.sampled_from([256, 257, 4096, 65535, 65536]),
                          st.integers(1, 65536)),
       n=st.one_of(st.integers(0, 64), st.integers(0, 5000), st.sampled_from([8191, 8192, 20000, 100_000])),
       kind=st.sampled_from(["geometric", "dirichlet", "uniform", "fibonacci"]),
       limit=st.one_of(st.none(), st.integers(1, 16)))
def test_round_trip_c_vs_reference(seed, alphabet, n, kind, limit):
    rng = np.random.default_rng(seed)
    symbols = _skewed(rng, alphabet, n, kind)
    distinct = np.unique(symbols).size
    if limit is not None and distinct > 1 << limit:
        with pytest.raises(ValueError, match="max_code_length"):
            huffman.encode(symbols, alphabet, limit)
        return
    streams = {be: huffman.encode(symbols, alphabet, limit, backend=be) for be in BACKENDS}
    data = streams[BACKENDS[0]]
    assert all(s == data for s in streams.values())
    # never bigger than plain bit packing (+ its 2-byte header)
    width = huffman.raw_width(alphabet)
    assert len(data) <= 2 + (n * width + 7) // 8
    info = huffman.stream_info(data)
    if info["mode"] == "huffman":
        assert info["max_code_length"] <= (limit or 16)
    dtype = _dtype(alphabet)
    if n <= 20000:
        got = _decode_all(data, n, dtype)
    else:  # the pure-Python decoder is slow (~1 us/symbol); C paths only
        got = huffman.decode(data, n, dtype)
        if "c" in BACKENDS:
            out = np.empty(n, dtype=dtype)
            huffman._c.decode(data, out, False)
            assert np.array_equal(out, got)
    assert isinstance(got, np.ndarray) and got.dtype == dtype and np.array_equal(got, symbols)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_65536_symbols_distinct(backend):
    rng = np.random.default_rng(7)
    symbols = rng.permutation(65536)
    data = huffman.encode(symbols, backend=backend)
    assert huffman.stream_info(data) == {"mode": "raw", "size": 2 + 2 * 65536, "width": 16, "payload_offset": 2}
    assert np.array_equal(huffman.decode(data, symbols.size, np.uint16, backend=backend), symbols)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_code_length_default_rises_to_16(backend):
    # 40000 > 2**15 distinct symbols, skewed: needs 16-bit codes, which the default (15) allows by rising
    rng = np.random.default_rng(3)
    symbols = np.concatenate([np.arange(40000), np.zeros(300_000, dtype=np.int64), rng.integers(0, 50, 100_000)])
    rng.shuffle(symbols)
    data = huffman.encode(symbols, backend=backend)
    info = huffman.stream_info(data)
    assert info["mode"] == "huffman" and info["max_code_length"] == 16
    if backend == "c":  # the reference decoder would take a few seconds here
        assert np.array_equal(huffman.decode(data, symbols.size, np.uint16), symbols)
    with pytest.raises(ValueError, match="max_code_length >= 16"):
        huffman.encode(symbols, max_code_length=15, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_inputs(backend):
    enc = lambda *a, **k: huffman.encode(*a, backend=backend, **k)  # noqa: E731
    # empty: a RAW header only
    assert enc([]) == b"\x00\x00"
    assert enc(np.zeros(0, np.uint16), alphabet_size=300) == b"\x00\x09"
    assert huffman.decode(b"\x00\x09", 0, np.uint16, backend=backend).shape == (0,)
    # one distinct symbol: CONST, no bits per symbol whatever the count
    for n in (1, 10, 1_000_000):
        data = enc(np.full(n, 17, np.uint8), alphabet_size=32)
        assert data == b"\x01\x11"
        assert np.array_equal(huffman.decode(data, n, backend=backend), np.full(n, 17))
    assert enc([65535] * 3) == b"\x01\xff\xff\x03"
    # two symbols, plenty of data: 1 bit each either way, RAW wins the tie
    assert huffman.stream_info(enc(np.arange(1000) % 2))["mode"] == "raw"


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_fallback_chosen_when_huffman_does_not_pay(backend):
    rng = np.random.default_rng(11)
    uniform = rng.integers(0, 16, 10_000)
    data = huffman.encode(uniform, 16, backend=backend)
    assert huffman.stream_info(data)["mode"] == "raw" and len(data) == 2 + 5000
    # a few symbols over a big alphabet: the table costs more than it saves
    few = np.array([1, 2, 3, 0, 5])
    assert huffman.stream_info(huffman.encode(few, 8, backend=backend))["mode"] == "raw"
    # skewed: Huffman, close to the order-0 entropy
    p = np.exp(-np.abs(np.arange(16) - 7.5) / 2.0)
    p /= p.sum()
    skewed = rng.choice(16, 50_000, p=p)
    data = huffman.encode(skewed, 16, backend=backend)
    assert huffman.stream_info(data)["mode"] == "huffman"
    counts = np.bincount(skewed, minlength=16) / skewed.size
    entropy_bits = -(counts * np.log2(counts)).sum() * skewed.size
    assert 8 * len(data) < entropy_bits * 1.03 + 200
    assert 8 * len(data) < 4 * skewed.size * 0.9


# ------------------------------------------------------------------------------------------------
# Code lengths: Kraft equality, the length limit, optimality when the limit does not bind
# ------------------------------------------------------------------------------------------------

def _huffman_cost(counts):
    """Optimal (unlimited) prefix-code cost: sum of the merge weights of a textbook heap Huffman."""
    heap = [int(c) for c in counts if c > 0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


counts_strategy = st.one_of(
    st.lists(st.integers(0, 1000), min_size=1, max_size=300),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=40),
    st.integers(2, 40).map(lambda k: [int(1.618 ** i) + 1 for i in range(k)]),      # Fibonacci-like
    st.integers(2, 60).map(lambda k: [2 ** min(i, 62) for i in range(k)]),            # powers of two
)


@given(counts=counts_strategy, limit=st.integers(1, 16))
def test_code_lengths_kraft_and_limit(counts, limit):
    used = sum(1 for c in counts if c)
    if used > 1 << limit:
        with pytest.raises(ValueError):
            huffman.code_lengths(counts, limit)
        return
    results = [huffman.code_lengths(counts, limit, backend=be) for be in BACKENDS]
    lengths = results[0]
    for other in results[1:]:
        assert np.array_equal(other, lengths)
    assert lengths.dtype == np.uint8 and lengths.size == len(counts)
    if used < 2:
        assert not lengths.any()     # one symbol: the CONST mode, length 0
        return
    assert all((ln == 0) == (c == 0) for ln, c in zip(lengths, counts))
    assert int(lengths.max()) <= limit
    assert sum(Fraction(1, 2 ** int(ln)) for ln in lengths if ln) == 1          # complete prefix code
    # more frequent symbols never get longer codes
    pairs = sorted((c, -int(ln)) for c, ln in zip(counts, lengths) if c)
    assert all(pairs[i][1] <= pairs[i + 1][1] or pairs[i][0] == pairs[i + 1][0] for i in range(len(pairs) - 1))
    cost = sum(int(c) * int(ln) for c, ln in zip(counts, lengths))
    optimal = _huffman_cost(counts)
    assert cost >= optimal
    unlimited = huffman.code_lengths(counts, 16)
    if int(unlimited.max()) <= limit and limit < 16:
        assert cost == optimal       # the limit did not bind: plain Huffman


def test_length_limit_fix_up_example():
    fib = [1, 1]
    while len(fib) < 18:
        fib.append(fib[-1] + fib[-2])
    for be in BACKENDS:
        assert huffman.code_lengths(fib, 16, backend=be).tolist() == \
            [16, 16, 16, 16, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
        assert huffman.code_lengths(fib, 5, backend=be).tolist() == [5] * 16 + [2, 2]


def test_canonical_codes_reference():
    assert huffman_ref.canonical_codes([1, 2, 3, 3]) == [0b0, 0b10, 0b110, 0b111]
    # Deflate's RFC 1951 example: lengths (3,3,3,3,3,2,4,4) -> 010 011 100 101 110 00 1110 1111
    assert huffman_ref.canonical_codes([3, 3, 3, 3, 3, 2, 4, 4]) == [2, 3, 4, 5, 6, 0, 14, 15]


# ------------------------------------------------------------------------------------------------
# Corruption: truncation at every position, every single-bit flip
# ------------------------------------------------------------------------------------------------

def _corruption_streams():
    rng = np.random.default_rng(99)
    p = np.exp(-np.arange(16) / 2.5)
    p /= p.sum()
    cluster = rng.choice(16, 120, p=p)
    return [
        ("huffman", cluster, 16, np.uint8),
        ("huffman16", rng.choice(rng.choice(65536, 9, replace=False), 40), 65536, np.uint16),
        ("spec", np.array(SPEC_SYMBOLS), 8, np.uint8),
        ("raw", np.array([1, 2, 3, 0, 5, 7, 6]), 8, np.uint8),
        ("const", np.full(9, 300), None, np.uint16),
    ]


@pytest.mark.parametrize("name,symbols,alphabet,dtype", _corruption_streams(), ids=lambda x: x if isinstance(x, str) else None)
def test_truncation_at_every_position(name, symbols, alphabet, dtype):
    data = huffman.encode(symbols, alphabet)
    for cut in range(len(data)):
        result = _decode_all(data[:cut], symbols.size, dtype)
        assert isinstance(result, StreamError), (name, cut)
    for extra in (b"\x00", b"\x01", b"\xff\xff"):
        assert isinstance(_decode_all(data + extra, symbols.size, dtype), StreamError)


@pytest.mark.parametrize("name,symbols,alphabet,dtype", _corruption_streams(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_bit_flip(name, symbols, alphabet, dtype):
    """A flip gives StreamError or another valid stream of `count` symbols (the container CRC catches those)."""
    data = huffman.encode(symbols, alphabet)
    rejected = 0
    for pos in range(8 * len(data)):
        bad = bytearray(data)
        bad[pos >> 3] ^= 1 << (pos & 7)
        result = _decode_all(bytes(bad), symbols.size, dtype)
        if isinstance(result, StreamError):
            rejected += 1
        else:
            assert result.shape == symbols.shape and result.dtype == dtype
    assert rejected > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_garbage_never_crashes(backend):
    rng = np.random.default_rng(2024)
    for _ in range(3000):
        n = int(rng.integers(0, 40))
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        if data:
            data = bytes([int(rng.integers(0, 3))]) + data[1:]    # mostly valid modes
        count = int(rng.integers(0, 100))
        try:
            out = huffman.decode(data, count, np.uint16, backend=backend)
        except StreamError:
            continue
        assert out.shape == (count,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_count_rejected_before_allocating(backend):
    for data in (SPEC_STREAM, b"\x00\x03\xd1\x50"):
        with pytest.raises(StreamError, match="truncated"):
            huffman.decode(data, 10**15, backend=backend)


# ------------------------------------------------------------------------------------------------
# Bit packing
# ------------------------------------------------------------------------------------------------

@given(width=st.integers(0, 32), n=st.integers(0, 3000), seed=st.integers(0, 2**32 - 1))
def test_pack_bits_round_trip(width, n, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**width, n, dtype=np.uint64) if width else np.zeros(n, np.uint64)
    packed = [huffman.pack_bits(values, width, backend=be) for be in BACKENDS]
    assert all(p == packed[0] for p in packed) and len(packed[0]) == (n * width + 7) // 8
    for be in BACKENDS:
        out = huffman.unpack_bits(packed[0], width, n, backend=be)
        assert out.dtype == (np.uint8 if width <= 8 else np.uint16 if width <= 16 else np.uint32)
        assert np.array_equal(out, values)
    # matches numpy's own little-endian bit order
    if n and width:
        bits = ((values[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
        assert packed[0] == np.packbits(bits.ravel(), bitorder="little").tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pack_bits_known_bytes_and_errors(backend):
    assert huffman.pack_bits([1, 2, 3, 0, 5], 3, backend=backend) == b"\xd1\x50"
    assert huffman.pack_bits(np.array([0xABCD], np.uint16), 16, backend=backend) == b"\xcd\xab"
    assert huffman.pack_bits([5, 6], 0 + 3, backend=backend) == b"\x35"
    with pytest.raises(CodecError, match="8 >= 8"):
        huffman.pack_bits([8], 3, backend=backend)
    with pytest.raises(CodecError, match="non-negative"):
        huffman.pack_bits([-1], 3, backend=backend)
    with pytest.raises(ValueError):
        huffman.pack_bits([1], 33, backend=backend)
    with pytest.raises(StreamError, match="truncated"):
        huffman.unpack_bits(b"\xd1", 3, 5, backend=backend)
    with pytest.raises(StreamError, match="trailing"):
        huffman.unpack_bits(b"\xd1\x50\x00", 3, 5, backend=backend)
    with pytest.raises(StreamError, match="padding"):
        huffman.unpack_bits(b"\xd1\xd0", 3, 5, backend=backend)
    assert huffman.unpack_bits(b"", 0, 7, backend=backend).tolist() == [0] * 7
    assert huffman.unpack_bits(b"\xd1\x50", 3, 5, np.int64, backend=backend).dtype == np.int64


# ------------------------------------------------------------------------------------------------
# API: dtypes, argument checks, backends
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_input_and_output_dtypes(backend):
    ref = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 9, 1, 1, 1, 1])
    data = huffman.encode(ref, 10, backend=backend)
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        assert huffman.encode(ref.astype(dt), 10, backend=backend) == data
        assert np.array_equal(huffman.decode(data, ref.size, dt, backend=backend), ref)
        assert huffman.decode(data, ref.size, dt, backend=backend).dtype == dt
    assert huffman.encode(ref.reshape(4, 4), 10, backend=backend) == data
    assert huffman.encode(ref.tolist(), 10, backend=backend) == data
    assert huffman.decode(bytearray(data), ref.size, backend=backend).tolist() == ref.tolist()
    assert huffman.decode(memoryview(data), ref.size, backend=backend).tolist() == ref.tolist()
    assert huffman.decode(np.frombuffer(data, np.uint8), ref.size, backend=backend).tolist() == ref.tolist()
    with pytest.raises(CodecError, match="non-negative"):
        huffman.encode(np.array([1, -2]), 10, backend=backend)
    with pytest.raises(CodecError, match="integers"):
        huffman.encode(np.array([1.0, 2.0]), 10, backend=backend)
    with pytest.raises(CodecError, match="10"):
        huffman.encode(np.array([1, 10], np.uint8), 10, backend=backend)
    with pytest.raises(CodecError):
        huffman.encode(np.array([70000]), backend=backend)
    with pytest.raises(ValueError):
        huffman.encode([1], 65537, backend=backend)
    with pytest.raises(ValueError):
        huffman.encode([1], 4, max_code_length=17, backend=backend)
    with pytest.raises(ValueError, match="max_code_length >= 2"):
        huffman.encode([0, 1, 2, 3], 4, max_code_length=1, backend=backend)
    with pytest.raises(ValueError):
        huffman.decode(data, -1, backend=backend)
    with pytest.raises(ValueError):
        huffman.decode(data, ref.size, np.float32, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbol_that_does_not_fit_the_dtype(backend):
    data = huffman.encode(np.array([0, 200] + [300] * 30), backend=backend)
    assert huffman.stream_info(data)["mode"] == "huffman"
    with pytest.raises(StreamError, match="does not fit uint8"):
        huffman.decode(data, 32, np.uint8, backend=backend)
    with pytest.raises(StreamError, match="does not fit int8"):
        huffman.decode(huffman.encode([0, 200, 200, 200, 200], 256, backend=backend), 5, np.int8, backend=backend)


def test_backend_selection():
    assert huffman.get_backend() in huffman.BACKENDS
    previous = huffman.set_backend("python")
    try:
        assert huffman.get_backend() == "python"
        assert huffman.encode(SPEC_SYMBOLS, 8) == SPEC_STREAM
    finally:
        huffman.set_backend(previous)
    assert huffman.set_backend("auto") == previous
    assert huffman.get_backend() == ("c" if "c" in huffman.BACKENDS else "python")
    huffman.set_backend(previous)
    with pytest.raises(ValueError, match="unknown huffman backend"):
        huffman.set_backend("rust")


@needs_c
def test_c_backend_is_default_when_built():
    if os.environ.get("SQUEEZEFMT_PURE_PYTHON") != "1":
        assert huffman.get_backend() == "c"


@needs_c
def test_c_decode_releases_gil_and_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    streams = []
    for k in (2, 16, 256, 5000):
        s = _skewed(rng, k, 50_000, "dirichlet")
        streams.append((s, huffman.encode(s, k)))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda sd: huffman.decode(sd[1], sd[0].size, _dtype(int(sd[0].max()) + 1)),
                                streams * 4))
    for (s, _), got in zip(streams * 4, results):
        assert np.array_equal(got, s)
