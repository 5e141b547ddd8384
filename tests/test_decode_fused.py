"""One-pass decoding of Huffman-coded indices into values (C) against the two-stage numpy reference.

``huffman.decode_gather`` / ``huffman.decode_dequant`` decode each codeword straight into its value
(a table entry, or a per-channel dequantised float32) with no symbol array; the reference decodes
the symbols with the readable decoder (``huffman_ref``) and applies ``np.take`` /
``quantize.dequantize_channels_reference``. Both must give the same bits, accept and reject the same
streams, and the codecs (quant, cluster) must decode identically whichever path they take. Lengths
cross the thresholds where the C decoder switches tables (8192 and 65536 symbols).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import squeezefmt
from squeezefmt.codecs.cluster import Cluster
from squeezefmt.codecs.quantize import Quantize, dequantize_channels_reference
from squeezefmt.entropy import huffman
from squeezefmt.errors import StreamError

pytestmark = pytest.mark.skipif("c" not in huffman.BACKENDS, reason="C extension _huffmanc not built")

ITEM = {1: np.uint8, 2: np.uint16, 4: np.float32, 8: np.float64}
SIZES = [0, 1, 2, 7, 31, 8191, 8192, 8193, 65535, 65536, 70001]


def _symbols(rng, alphabet, n, kind):
    if kind == "geometric":       # long codes: the length limit and the second-level tables
        p = 0.6 ** np.arange(min(alphabet, 40), dtype=np.float64)
    elif kind == "peaked":        # quantized weights: a few short codes, several per lookup
        x = np.arange(alphabet) - alphabet // 2
        p = np.exp(-np.abs(x) / max(alphabet / 40, 0.5))
    else:
        p = np.ones(alphabet)
    p /= p.sum()
    return rng.choice(p.size, size=n, p=p)


def _table(rng, k, itemsize):
    raw = rng.integers(0, 256, k * itemsize, dtype=np.uint8)
    return raw.view(ITEM[itemsize])


def _check_bit_flips(data: bytes, table, count: int, rng, flips: int) -> None:
    """``flips`` single-bit flips of ``data``: where C takes the stream, it agrees with the reference."""
    for pos in rng.choice(8 * len(data), flips, replace=False):
        bad = bytearray(data)
        bad[pos >> 3] ^= 1 << (pos & 7)
        taken, got, ref = _both(bytes(bad), table, count)
        if taken:
            _same(got, ref)


def _both(data, table, count):
    """(C result or error, reference result or error) of decoding ``count`` values."""
    got = np.zeros(count, table.dtype)
    try:
        taken = huffman.decode_gather(data, table, got)
    except StreamError as exc:
        taken, got = True, exc
    ref = np.zeros(count, table.dtype)
    try:
        huffman.decode_gather_reference(data, table, ref)
    except StreamError as exc:
        ref = exc
    return taken, got, ref


def _same(got, ref):
    if isinstance(ref, StreamError):
        assert isinstance(got, StreamError), "the C path accepted a stream the reference rejects"
        assert str(got) == str(ref)
    else:
        assert isinstance(got, np.ndarray), got
        assert got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind,alphabet", [("peaked", 256), ("geometric", 300), ("uniform", 5000),
                                           ("peaked", 20000)])
@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_gather_matches_reference(n, kind, alphabet, itemsize):
    rng = np.random.default_rng(n + alphabet + itemsize)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet)
    table = _table(rng, alphabet, itemsize)
    taken, got, ref = _both(data, table, n)
    if data[0] != huffman.MODE_HUFFMAN:
        assert not taken  # raw / const mode: the caller decodes the symbols
        return
    assert taken
    _same(got, ref)
    assert got.tobytes() == table[sym].tobytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20000), alphabet=st.integers(2, 65536),
       kind=st.sampled_from(["geometric", "peaked", "uniform"]), itemsize=st.sampled_from([1, 2, 4, 8]),
       limit=st.sampled_from([None, 16]))
def test_gather_random_streams(seed, n, alphabet, kind, itemsize, limit):
    rng = np.random.default_rng(seed)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet, max_code_length=limit)
    table = _table(rng, alphabet, itemsize)
    taken, got, ref = _both(data, table, n)
    if taken:
        _same(got, ref)
        assert got.tobytes() == table[sym].tobytes()


def test_every_code_length_up_to_16():
    """Counts 2**i give a code with every length 1..16 (the length limit is 16 here)."""
    counts = [1 << i for i in range(17)][::-1]
    sym = np.repeat(np.arange(17), counts)
    np.random.default_rng(0).shuffle(sym)
    data = huffman.encode(sym, 17, max_code_length=16)
    assert huffman.stream_info(data)["max_code_length"] == 16
    table = np.arange(17, dtype=np.float32) * 0.5
    out = np.empty(sym.size, np.float32)
    assert huffman.decode_gather(data, table, out)
    assert np.array_equal(out, table[sym])


def test_short_table_and_other_modes_are_declined():
    rng = np.random.default_rng(1)
    sym = _symbols(rng, 64, 9000, "peaked")
    data = huffman.encode(sym, 64)
    out = np.full(sym.size, 7.0, np.float32)
    # a table shorter than the code table: declined, out untouched (the caller checks the symbols)
    assert not huffman.decode_gather(data, np.zeros(int(sym.max()), np.float32), out)
    assert np.all(out == 7.0)
    for values in (np.full(10, 3), np.arange(8)):  # const and raw mode
        other = huffman.encode(values, 8)
        assert huffman.stream_info(other)["mode"] in ("const", "raw")
        assert not huffman.decode_gather(other, np.zeros(8, np.float32), np.empty(values.size, np.float32))
    assert not huffman.decode_gather(data, np.zeros(64, np.float32), out, backend="python")


def test_corrupt_streams_rejected_like_the_reference():
    rng = np.random.default_rng(2)
    sym = _symbols(rng, 40, 9000, "peaked")
    data = huffman.encode(sym, 40)
    table = _table(rng, 40, 4)
    for cut in list(range(0, 40)) + list(range(len(data) - 40, len(data))):
        taken, got, ref = _both(data[:cut], table, sym.size)
        assert isinstance(ref, StreamError)
        if taken:
            _same(got, ref)
    for extra in (b"\x00", b"\x01"):
        _same(*_both(data + extra, table, sym.size)[1:])
    _check_bit_flips(data, table, sym.size, rng, 300)
    with pytest.raises(StreamError):
        huffman.decode_gather(data[:4], table, np.empty(10**6, np.float32))  # count cannot fit the bytes


# -- per-channel dequantisation --------------------------------------------------------------------

def _dequant_case(rng, shape, ax, bits, n_zero=False):
    channels = shape[ax]
    qmax = (1 << bits) - 1
    zp = rng.integers(0, qmax + 1, channels)
    shift = (int(zp.max()) - zp) if bits <= 8 else np.zeros(channels, np.int64)
    step = (rng.random(channels) * 1e-2).astype(np.float32)
    bshape = [1] * len(shape)
    bshape[ax] = channels
    q = rng.integers(0, qmax + 1, shape) if n_zero else np.clip(
        np.round(rng.standard_t(3, shape) * qmax / 16) + zp.reshape(bshape), 0, qmax).astype(np.int64)
    sym = q + shift.reshape(bshape)
    return sym, [v.reshape(bshape) for v in (shift, zp)] + [step.reshape(bshape)], qmax


@pytest.mark.parametrize("shape,ax", [((300, 70), 1), ((70, 300), 0), ((3, 3, 16, 32), 3), ((3, 3, 16, 32), 2),
                                      ((9000,), 0), ((1, 70000), 0), ((70000, 1), 1), ((2, 40000), 0),
                                      ((129, 513), 1), ((5, 7, 3), 1)])
@pytest.mark.parametrize("bits", [2, 8])
def test_dequant_matches_reference(shape, ax, bits):
    rng = np.random.default_rng(sum(shape) + ax + bits)
    sym, (shift, zp, step), qmax = _dequant_case(rng, shape, ax, bits)
    alphabet = (1 << bits) + int(shift.max())
    data = huffman.encode(sym.reshape(-1), alphabet)
    ref = np.empty(shape, np.float32)
    dequantize_channels_reference(sym, ref, shift, zp, step, ax, qmax, "float32")
    out = np.empty(shape, np.float32)
    inner = int(np.prod(shape[ax + 1:], dtype=np.int64))
    status = huffman.decode_dequant(data, out, shift, zp, step, inner, qmax)
    assert status == (0 if data[0] == huffman.MODE_HUFFMAN else 1)
    if status == 0:
        assert out.tobytes() == ref.tobytes()


def test_dequant_out_of_range_symbol_is_reported():
    rng = np.random.default_rng(3)
    sym, (shift, zp, step), qmax = _dequant_case(rng, (100, 90), 1, 4)
    sym[17, 5] = shift.reshape(-1)[5] + qmax + 1   # one level above channel 5's range
    data = huffman.encode(sym.reshape(-1), int(sym.max()) + 1)
    out = np.empty(sym.shape, np.float32)
    assert huffman.decode_dequant(data, out, shift, zp, step, 1, qmax) == 2
    with pytest.raises(StreamError):
        dequantize_channels_reference(sym, np.empty(sym.shape, np.float32), shift, zp, step, 1, qmax, "float32")
    assert huffman.decode_dequant(data, out, shift, zp, step, 1, qmax, backend="python") == 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 300), cols=st.integers(1, 300), ax=st.integers(0, 1),
       bits=st.sampled_from([1, 3, 8, 16]))
def test_dequant_random(seed, rows, cols, ax, bits):
    rng = np.random.default_rng(seed)
    sym, (shift, zp, step), qmax = _dequant_case(rng, (rows, cols), ax, bits, n_zero=bits == 16)
    data = huffman.encode(sym.reshape(-1), int(sym.max()) + 1)
    ref = np.empty(sym.shape, np.float32)
    dequantize_channels_reference(sym, ref, shift, zp, step, ax, qmax, "float32")
    out = np.empty(sym.shape, np.float32)
    status = huffman.decode_dequant(data, out, shift, zp, step, cols if ax == 0 else 1, qmax)
    if status == 0:
        assert out.tobytes() == ref.tobytes()


# -- the codecs: one-pass path against the two-stage path --------------------------------------------

def _decode_with(backend, data):
    old = huffman.set_backend(backend)
    try:
        with squeezefmt.open(data) as f:
            return f.tensor("w")
    finally:
        huffman.set_backend(old)


@pytest.mark.parametrize("codec", [Quantize(8), Quantize(8, per_channel=True), Quantize(8, per_channel=True, axis=0),
                                   Quantize(4, per_channel=True), Quantize(16), Quantize(1, per_channel=True),
                                   Cluster(5), Cluster(8), Cluster(3, codebook_dtype="float16"), Cluster(10)],
                         ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape", [(300, 257), (3, 3, 8, 40), (1, 1), (9000,)])
def test_codecs_decode_identically_on_both_paths(codec, dtype, shape):
    from squeezefmt.dtypes import numpy_dtype
    rng = np.random.default_rng(5)
    w = (rng.standard_t(4, shape) * 0.05).astype(np.float32)
    try:
        w = w.astype(numpy_dtype(dtype))
    except TypeError:
        pytest.skip(f"{dtype} not available")
    data = squeezefmt.save({"w": w}, codecs={"w": codec})
    fused, reference = _decode_with("c", data), _decode_with("python", data)
    assert fused.dtype == reference.dtype and fused.shape == reference.shape
    assert fused.tobytes() == reference.tobytes()


# -- long outputs: two decoders in one loop (from bit 0 and from the middle), joined at a common boundary --

# long streams (from the two-decoder threshold, 2**18 values, up), symbol distributions, item sizes
long_streams = [pytest.mark.parametrize("n", [1 << 18, 300001, 1 << 20]),
                pytest.mark.parametrize("kind,alphabet", [("peaked", 256), ("uniform", 200), ("geometric", 40),
                                                          ("uniform", 3000)]),
                pytest.mark.parametrize("itemsize", [1, 2, 4, 8])]


def _long_stream_cases(fn):
    for mark in reversed(long_streams):
        fn = mark(fn)
    return fn


def test_long_cases_reach_the_wide_value_table():
    """Outputs of VT_WIDE_MIN_COUNT values and more with long codes (uniform 200 and 3000 symbols) use
    14-bit value tables: the long-stream cases must include such a length, or that path goes untested."""
    assert huffman._c.VT_WIDE_MIN_COUNT in long_streams[0].args[1]


@_long_stream_cases
def test_split_decode_matches_reference(n, kind, alphabet, itemsize):
    rng = np.random.default_rng(n % 1000 + alphabet + itemsize)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet)
    assert data[0] == huffman.MODE_HUFFMAN
    table = _table(rng, alphabet, itemsize)
    out = np.zeros(n, table.dtype)
    assert huffman.decode_gather(data, table, out)
    assert out.tobytes() == table[sym].tobytes()


def test_split_decode_when_the_halves_differ():
    """Short codes in the first half of the stream, long ones in the second (and the reverse): the
    middle bit falls far from the middle symbol."""
    rng = np.random.default_rng(7)
    common = _symbols(rng, 256, 400000, "peaked")
    rare = rng.integers(0, 256, 60000)
    table = _table(rng, 256, 4)
    for sym in (np.concatenate([common, rare]), np.concatenate([rare, common])):
        data = huffman.encode(sym, 256)
        out = np.zeros(sym.size, np.float32)
        assert huffman.decode_gather(data, table, out)
        assert out.tobytes() == table[sym].tobytes()


def test_split_decode_corruption_like_the_reference():
    rng = np.random.default_rng(8)
    sym = _symbols(rng, 200, 1 << 18, "peaked")
    data = huffman.encode(sym, 200)
    table = _table(rng, 200, 4)
    for count in (sym.size - 1, sym.size + 1, sym.size + 50):   # more / fewer codes than the stream holds
        taken, got, ref = _both(data, table, count)   # (zero padding bits can also read as one more code)
        assert taken
        _same(got, ref)
    assert isinstance(_both(data, table, sym.size + 50)[1], StreamError)
    for bad in (data[:-1], data[:-3000], data + b"\x00", data[:-1] + bytes([data[-1] | 0x80])):
        taken, got, ref = _both(bad, table, sym.size)
        if taken:
            _same(got, ref)
    _check_bit_flips(data, table, sym.size, rng, 40)


@pytest.mark.parametrize("shape,ax", [((512, 600), 1), ((600, 512), 0), ((3, 3, 128, 256), 3), ((1, 300000), 0),
                                      ((300001,), 0)])
@pytest.mark.parametrize("bits", [4, 8])
def test_split_dequant_matches_reference(shape, ax, bits):
    rng = np.random.default_rng(sum(shape) + bits)
    sym, (shift, zp, step), qmax = _dequant_case(rng, shape, ax, bits)
    data = huffman.encode(sym.reshape(-1), (1 << bits) + int(shift.max()))
    assert data[0] == huffman.MODE_HUFFMAN
    ref = np.empty(shape, np.float32)
    dequantize_channels_reference(sym, ref, shift, zp, step, ax, qmax, "float32")
    out = np.empty(shape, np.float32)
    assert huffman.decode_dequant(data, out, shift, zp, step, int(np.prod(shape[ax + 1:], dtype=np.int64)), qmax) == 0
    assert out.tobytes() == ref.tobytes()
    last_axis = ax == len(shape) - 1   # then element size-5 has channel -5 % C: one level above its range
    sym.reshape(-1)[sym.size - 5] = int(shift.reshape(-1)[-5 % shape[ax]]) + qmax + 1 if last_axis else sym.max()
    bad = huffman.encode(sym.reshape(-1), int(sym.max()) + 1)
    status = huffman.decode_dequant(bad, out, shift, zp, step, int(np.prod(shape[ax + 1:], dtype=np.int64)), qmax)
    try:
        dequantize_channels_reference(sym, ref, shift, zp, step, ax, qmax, "float32")
        assert status == 0 and out.tobytes() == ref.tobytes()
    except StreamError:
        assert status == 2


# -- repeated long decodes: NWAY decoders from the code boundaries an earlier decode found ------------

SPLIT_MIN = 1 << 18   # _huffmanc.SPLIT_MIN_COUNT: the two-decoder loop and the hints start here


def _stats():
    return huffman._c.hint_stats()


def _learnt_stream(seed, alphabet, n, kind, itemsize=4):
    """(symbols, stream bytes, table, a writable copy of the stream decoded twice: its hints learnt)."""
    rng = np.random.default_rng(seed)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet)
    table = _table(rng, alphabet, itemsize)
    buf = np.frombuffer(data, np.uint8).copy()
    _decode_twice(buf, table, sym.size)
    return rng, sym, data, table, buf


def _decode_twice(buf, table, count):
    """Decode ``buf`` twice (the same memory: the first call learns the hints, the second uses them)."""
    first, second = np.zeros(count, table.dtype), np.zeros(count, table.dtype)
    huffman._c.hint_stats(True)
    assert huffman.decode_gather(buf, table, first)
    assert _stats()[1] == 1, "the two-decoder loop did not record the segment starts"
    assert huffman.decode_gather(buf, table, second)
    assert _stats()[0] == 1, "the second decode did not run on the hints"
    return first, second


@_long_stream_cases
def test_hinted_decode_matches_reference(n, kind, alphabet, itemsize):
    rng = np.random.default_rng(n % 997 + alphabet + itemsize)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet)
    table = _table(rng, alphabet, itemsize)
    first, second = _decode_twice(data, table, n)
    assert first.tobytes() == table[sym].tobytes()
    assert second.tobytes() == first.tobytes()


def _same_length_stream(shuffled, alphabet, data, limit=None):
    """The stream of ``shuffled`` (a permutation of ``data``'s symbols): the same code, the same length."""
    other = huffman.encode(shuffled, alphabet, max_code_length=limit)
    assert len(other) == len(data)
    return other


def test_stale_hints_are_rejected_and_the_stream_decoded_right():
    """Hints learnt on one stream, then another stream of the same size at the same address: the
    segment checks fail, the decode starts again and gives the new stream's values (and new hints)."""
    rng, sym, data, table, buf = _learnt_stream(11, 256, 400000, "peaked")
    for _ in range(3):
        sym = rng.permutation(sym)
        buf[:] = np.frombuffer(_same_length_stream(sym, 256, data), np.uint8)
        out = np.zeros(sym.size, np.float32)
        used, stored, rejected = _stats()
        assert huffman.decode_gather(buf, table, out)
        assert out.tobytes() == table[sym].tobytes()
        assert _stats() == (used, stored + 1, rejected + 1)


def test_hinted_decode_corruption_like_the_reference():
    """Hints learnt on the good stream, then bit flips, a bad padding bit and a changed last byte in the
    same memory: the C path raises or returns exactly what the reference does."""
    rng, sym, data, table, buf = _learnt_stream(12, 200, SPLIT_MIN + 5000, "peaked")
    tail = [8 * len(data) - 1 - i for i in range(24)]          # in the last segment (the hints hold there)
    spread = list(rng.choice(8 * len(data), 30, replace=False))
    held = 0
    for pos in tail + spread:
        buf[:] = np.frombuffer(data, np.uint8)
        assert huffman.decode_gather(buf, table, np.zeros(sym.size, np.float32))   # hints of the good stream
        buf[pos >> 3] ^= 1 << (pos & 7)
        used = _stats()[0]
        got = np.zeros(sym.size, np.float32)
        try:
            assert huffman.decode_gather(buf, table, got)
        except StreamError as exc:
            got = exc
        held += _stats()[0] - used
        ref = np.zeros(sym.size, np.float32)
        try:
            huffman.decode_gather_reference(buf.tobytes(), table, ref)
        except StreamError as exc:
            ref = exc
        _same(got, ref)
    assert held >= len(tail) // 2, "the corrupted tails were not decoded on the hints"


def test_hinted_decode_count_mismatch_like_the_reference():
    rng = np.random.default_rng(13)
    sym = _symbols(rng, 300, SPLIT_MIN + 123, "uniform")
    data = huffman.encode(sym, 300)
    table = _table(rng, 300, 2)
    _decode_twice(data, table, sym.size)
    for count in (sym.size - 1, sym.size + 1, sym.size + 50, sym.size - 40000):
        huffman._c.hint_stats(True)
        _both(data, table, count)                       # learns hints for this count (when it decodes)
        taken, got, ref = _both(data, table, count)     # and runs on them
        assert taken
        _same(got, ref)


def test_split_decode_segments_that_never_resynchronise():
    """Codes of 3 and 6 bits: every code boundary is a multiple of 3, so the second decoder, started at
    a middle bit that is not, never falls into step: one decoder decodes the stream, and records where
    its eighths start; the next decode runs on them."""
    rng = np.random.default_rng(14)
    weights = np.array([8.0] * 3 + [1.0] * 40)
    for n in range(SPLIT_MIN, SPLIT_MIN + 40):
        sym = rng.choice(43, size=n, p=weights / weights.sum())
        data = huffman.encode(sym, 43)
        info = huffman.stream_info(data)
        lengths, payload = set(info["code_lengths"].values()), len(data) - info["payload_offset"]
        if lengths == {3, 6} and (4 * payload) % 3:
            break
    assert lengths == {3, 6} and (4 * payload) % 3, "no stream whose middle bit is off the code grid"
    table = _table(rng, 43, 4)
    first, second = _decode_twice(data, table, n)
    assert first.tobytes() == second.tobytes() == table[sym].tobytes()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(SPLIT_MIN, SPLIT_MIN + 60000), alphabet=st.integers(2, 4096),
       kind=st.sampled_from(["geometric", "peaked", "uniform"]), itemsize=st.sampled_from([1, 2, 4, 8]),
       limit=st.sampled_from([None, 12, 16]))
def test_hinted_decode_random_streams(seed, n, alphabet, kind, itemsize, limit):
    rng = np.random.default_rng(seed)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet, max_code_length=limit)
    table = _table(rng, alphabet, itemsize)
    buf = np.frombuffer(data, np.uint8).copy()
    out = np.zeros(n, table.dtype)
    huffman._c.hint_stats(True)
    if not huffman.decode_gather(buf, table, out):
        return                                                   # raw / const mode
    assert out.tobytes() == table[sym].tobytes()
    out[:] = 0
    assert huffman.decode_gather(buf, table, out)                # on the hints, when the first decode found them
    assert out.tobytes() == table[sym].tobytes()
    assert _stats()[0] == _stats()[1] <= 1
    if data[0] == huffman.MODE_HUFFMAN:                          # another stream at the same address
        sym2 = rng.permutation(sym)
        buf[:] = np.frombuffer(_same_length_stream(sym2, alphabet, data, limit), np.uint8)
        assert huffman.decode_gather(buf, table, out)
        assert out.tobytes() == table[sym2].tobytes()


# -- a stream decoded before, in two halves on two threads (squeezefmt.threads) -----------------------

HALVES_MIN = huffman._HALVES_MIN


@pytest.fixture
def two_threads():
    from squeezefmt import threads
    before = threads.decode_threads()
    threads.set_decode_threads(2)
    yield
    threads.set_decode_threads(before)


def _halves(buf, table, count, *, parallel=True):
    """decode_gather_half of both halves (the second on the helper thread when ``parallel``)."""
    from squeezefmt.threads import helper
    out = np.zeros(count, table.dtype)
    bits = np.dtype(f"u{table.itemsize}")
    t, o = table.view(bits), out.view(bits)
    if parallel:
        other = helper().submit(huffman._c.decode_gather_half, buf, t, o, 1)
        mine = huffman._c.decode_gather_half(buf, t, o, 0)
        return mine, other.result(), out
    return huffman._c.decode_gather_half(buf, t, o, 0), huffman._c.decode_gather_half(buf, t, o, 1), out


@pytest.mark.parametrize("n, kind, alphabet, itemsize", [
    (HALVES_MIN, "peaked", 256, 4), (1 << 20, "peaked", 256, 4), ((1 << 20) + 777, "geometric", 40, 2),
    (HALVES_MIN + 3, "peaked", 4096, 8), (HALVES_MIN + 11, "uniform", 200, 1)])
def test_halves_match_the_reference(n, kind, alphabet, itemsize, two_threads):
    rng = np.random.default_rng(n + alphabet)
    sym = _symbols(rng, alphabet, n, kind)
    data = huffman.encode(sym, alphabet)
    table = _table(rng, alphabet, itemsize)
    buf = np.frombuffer(data, np.uint8).copy()
    assert not huffman._c.has_hints(buf, n)
    assert _halves(buf, table, n)[:2] == (False, False), "a half decoded without hints"
    first, second = _decode_twice(buf, table, n)                  # the second decode: in halves
    assert huffman._c.has_hints(buf, n) and not huffman._c.has_hints(buf, n + 1)
    for parallel in (True, False):
        a, b, out = _halves(buf, table, n, parallel=parallel)
        assert a and b
        assert out.tobytes() == table[sym].tobytes()
    assert first.tobytes() == second.tobytes() == table[sym].tobytes()


def test_halves_of_another_stream_at_the_same_address_fall_back(two_threads):
    """Hints of one stream, then a permutation of it in the same memory: a half whose segment ends do
    not meet says False, and decode_gather decodes the whole new stream right."""
    rng, sym, data, table, buf = _learnt_stream(21, 256, HALVES_MIN + 4321, "peaked")
    failed = 0
    for _ in range(3):
        sym = rng.permutation(sym)
        buf[:] = np.frombuffer(_same_length_stream(sym, 256, data), np.uint8)
        a, b, _ = _halves(buf, table, sym.size)
        failed += not (a and b)
        out = np.zeros(sym.size, np.float32)
        assert huffman.decode_gather(buf, table, out)
        assert out.tobytes() == table[sym].tobytes()
        buf[:] = np.frombuffer(data, np.uint8)                    # back to the stream the hints were learnt on
        huffman.decode_gather(buf, table, out)
    assert failed == 3


def test_corrupted_halves_decode_like_the_reference(two_threads):
    """Hints of the good stream, then bit flips in the same memory (the last segment's tail, and spread):
    decode_gather, which tries the halves first, returns or raises exactly what the reference does."""
    rng, sym, data, table, buf = _learnt_stream(22, 200, HALVES_MIN + 999, "peaked")
    tail = [8 * len(data) - 1 - i for i in range(10)]
    for pos in tail + list(rng.choice(8 * len(data), 10, replace=False)):
        buf[:] = np.frombuffer(data, np.uint8)
        assert huffman.decode_gather(buf, table, np.zeros(sym.size, np.float32))
        buf[pos >> 3] ^= 1 << (pos & 7)
        taken, got, ref = _both(buf, table, sym.size)
        assert taken
        _same(got, ref)


def test_one_thread_never_splits():
    from squeezefmt import threads
    before = threads.decode_threads()
    try:
        threads.set_decode_threads(1)
        rng = np.random.default_rng(23)
        sym = _symbols(rng, 256, HALVES_MIN, "peaked")
        data = huffman.encode(sym, 256)
        table = _table(rng, 256, 4)
        calls = []
        real = huffman._c

        class Spy:
            def __getattr__(self, name):
                if name == "decode_gather_half":
                    calls.append(name)
                return getattr(real, name)

        huffman._c = Spy()
        try:
            first, second = _decode_twice(data, table, sym.size)
        finally:
            huffman._c = real
        assert not calls
        assert second.tobytes() == table[sym].tobytes()
    finally:
        threads.set_decode_threads(before)
