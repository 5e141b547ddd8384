"""Run-length Elias gamma: frozen vectors, backends against the reference, corruption handling.

Cross-implementation tests against tensorflow-compression itself are in test_gamma_tfc.py.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from squeezefmt.entropy import gamma, gamma_ref
from squeezefmt.errors import CodecError, StreamError

from conftest import ROOT, VECTORS
from sqzdev.harness import run_without_tensorflow

VECTOR_FILE = os.path.join(VECTORS, "gamma", "vectors.json")
# The vectors are frozen: bytes written by tfc 2.14.1 once. Editing the file is a format change.
VECTOR_SHA256 = "4a82073cd5c7700678998d2ec69556c8d8a1e8a645c4ba164135fc329de3dfb4"

BACKENDS = gamma.available_backends()
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def load_vectors():
    with open(VECTOR_FILE, "rb") as f:
        raw = f.read()
    return raw, json.loads(raw)


RAW, VEC = load_vectors()


def expected_decode(values):
    """What decoding the code of ``values`` gives: INT32_MIN comes back as -INT32_MAX."""
    a = np.asarray(values, dtype=np.int64).reshape(-1)
    return np.where(a == INT32_MIN, -INT32_MAX, a).astype(np.int32)


def outcome(fn):
    """('ok', list) or (error class name, message), to compare backends exactly."""
    try:
        return ("ok", fn().tolist())
    except (StreamError, CodecError) as e:
        return (type(e).__name__, str(e))


# ---------------------------------------------------------------------------------------------
# frozen vectors


def test_vector_file_is_frozen():
    assert hashlib.sha256(RAW).hexdigest() == VECTOR_SHA256, "spec/vectors/gamma/vectors.json changed"


def test_tfc_reference_vector_is_present():
    (case,) = [c for c in VEC["valid"] if c["name"] == "tfc_encode_consistent"]
    assert case["values"] == [-6, 3, 0, 0] and case["hex"] == "d16d"


def test_backends_available():
    assert "python" in BACKENDS and "numpy" in BACKENDS
    assert gamma.BACKEND in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", VEC["valid"], ids=lambda c: c["name"])
def test_valid_vectors(case, backend):
    values = np.array(case["values"], dtype=np.int64)
    data = bytes.fromhex(case["hex"])
    assert gamma.encode(values, backend=backend) == data
    got = gamma.decode(data, len(case["values"]), backend=backend)
    assert got.dtype == np.int32 and got.shape == (len(case["values"]),)
    assert got.tolist() == case.get("decoded", case["values"])


@pytest.mark.parametrize("case", VEC["valid"], ids=lambda c: c["name"])
def test_vector_bit_annotations_match_bytes(case):
    """The annotated bit strings in the vectors (and spec) read LSB first give the bytes."""
    bits = "".join(tok for tok in case["bits"].replace("(padding)", "").split())
    assert len(bits) % 8 == 0
    data = bytes(int(bits[k:k + 8][::-1], 2) for k in range(0, len(bits), 8))
    assert data.hex() == case["hex"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", VEC["units"], ids=lambda c: c["name"])
def test_unit_vectors(case, backend):
    x = np.array(case["values"], dtype=np.int32).reshape(case["shape"])
    strings = gamma.encode_units(x, case["coding_rank"], backend=backend)
    assert [s.hex() for s in strings] == case["hex"]
    assert gamma.unit_shape(x.shape, case["coding_rank"])[0] == tuple(case["strings_shape"])
    back = gamma.decode_units([bytes.fromhex(h) for h in case["hex"]], case["shape"], case["coding_rank"],
                              backend=backend)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", VEC["invalid"], ids=lambda c: c["name"])
def test_invalid_vectors(case, backend):
    data = bytes.fromhex(case["hex"])
    with pytest.raises(StreamError, match=case["strict_error"]):
        gamma.decode(data, case["count"], backend=backend)
    # strict=False accepts exactly what tfc's decoder accepts, with the same values
    if "values" in case["tfc"]:
        assert gamma.decode(data, case["count"], strict=False, backend=backend).tolist() == case["tfc"]["values"]
    else:
        with pytest.raises(StreamError, match=case["strict_error"]):
            gamma.decode(data, case["count"], strict=False, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", VEC["undetectable"], ids=lambda c: c["name"])
def test_undetectable_corruption_is_documented(case, backend):
    """Some flipped bits still form a valid stream: the format cannot tell (the container CRC does)."""
    got = gamma.decode(bytes.fromhex(case["hex"]), case["count"], backend=backend)
    assert got.tolist() == case["values"] != case["original_values"]


# ---------------------------------------------------------------------------------------------
# property tests: every backend equals the reference


def latents(max_size=300):
    """Integer arrays like EPR latents plus the corner cases of the format."""
    elements = st.one_of(
        st.integers(-3, 3),
        st.sampled_from([0, 0, 0, 0, 1, -1]),
        st.integers(INT32_MIN, INT32_MAX),
        st.sampled_from([INT32_MIN, INT32_MAX, -INT32_MAX, 2**28, -(2**29) - 5, 2**30, 0]),
    )
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)
    small = hnp.arrays(np.int32, shapes, elements=elements)
    runs = st.lists(st.tuples(st.integers(0, 2000), st.integers(INT32_MIN, INT32_MAX)), max_size=8).map(
        lambda rs: np.array([x for z, v in rs for x in [0] * z + [v]], dtype=np.int32))
    sparse = st.builds(
        lambda seed, n, p, scale: _laplace(seed, n, p, scale),
        st.integers(0, 2**32 - 1), st.integers(0, max_size), st.floats(0, 1), st.floats(0.1, 1000))
    return st.one_of(small, runs, sparse, st.builds(lambda n: np.zeros(n, np.int32), st.integers(0, 5000)))


def _laplace(seed, n, p, scale):
    rng = np.random.default_rng(seed)
    v = np.round(rng.laplace(0, scale, n)) * (rng.random(n) < p)
    return v.astype(np.int32)


@given(latents())
def test_backends_agree_and_round_trip(values):
    ref = gamma_ref.encode(values.reshape(-1).tolist())
    for backend in BACKENDS:
        assert gamma.encode(values, backend=backend) == ref, backend
        got = gamma.decode(ref, values.size, backend=backend)
        np.testing.assert_array_equal(got, expected_decode(values))


def damaged(data: bytes, rng) -> list:
    """``data`` intact, with a byte appended, and (when not empty) with one bit flipped and truncated."""
    out = [data, data + bytes([int(rng.integers(256))])]
    if data:
        flipped = bytearray(data)
        flipped[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        out += [bytes(flipped), data[: int(rng.integers(len(data)))]]
    return out


@given(latents(60), st.integers(0, 2**32 - 1))
def test_corrupted_streams_same_outcome_on_every_backend(values, seed):
    """Flipped bits, truncation, appended bytes, wrong counts: identical results or errors."""
    rng = np.random.default_rng(seed)
    data = gamma.encode(values, backend="python")
    candidates = damaged(data, rng) + [bytes(rng.integers(0, 256, 6, dtype=np.uint8))]
    for cand in candidates:
        for count in {values.size, values.size + 1, max(values.size - 1, 0)}:
            for strict in (True, False):
                results = {b: outcome(lambda: gamma.decode(cand, count, strict=strict, backend=b)) for b in BACKENDS}
                assert len(set(map(repr, results.values()))) == 1, (cand.hex(), count, strict, results)


@given(st.binary(max_size=40), st.integers(0, 200))
def test_strict_accepts_only_canonical_streams(data, count):
    """Strict decoding is the exact inverse of encoding: accepted streams re-encode to themselves."""
    results = {b: outcome(lambda: gamma.decode(data, count, backend=b)) for b in BACKENDS}
    assert len(set(map(repr, results.values()))) == 1, results
    kind, got = results["python"]
    if kind == "ok":
        assert gamma_ref.encode(got) == data


@given(latents(200), st.randoms(use_true_random=False))
def test_every_truncation_is_an_error(values, rnd):
    """Cutting whole bytes always removes needed bits: never a silently shorter array."""
    data = gamma.encode(values)
    cuts = range(len(data)) if len(data) <= 12 else rnd.sample(range(len(data)), 12)
    for cut in cuts:
        for strict in (True, False):
            for backend in BACKENDS:
                with pytest.raises(StreamError):
                    gamma.decode(data[:cut], values.size, strict=strict, backend=backend)


@given(latents(100))
def test_wrong_count_is_an_error(values):
    data = gamma.encode(values)
    for backend in BACKENDS:
        with pytest.raises(StreamError):
            gamma.decode(data, values.size + 1, backend=backend)
        if values.size:
            with pytest.raises(StreamError):
                gamma.decode(data, values.size - 1, backend=backend)


@settings(max_examples=10)
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 3))
def test_large_arrays_fast_backends(seed, scale):
    """Long streams (several numpy chunks, many 64-bit buffer refills): C and numpy agree."""
    rng = np.random.default_rng(seed)
    v = np.round(rng.laplace(0, scale, 300_000)).astype(np.int32)
    v[rng.integers(0, v.size, 50)] = rng.integers(INT32_MIN + 1, INT32_MAX, 50)
    data = gamma.encode(v, backend="numpy")
    for backend in BACKENDS:
        if backend != "python":
            assert gamma.encode(v, backend=backend) == data
            np.testing.assert_array_equal(gamma.decode(data, v.size, backend=backend), v)


# ---------------------------------------------------------------------------------------------
# API details


@pytest.mark.parametrize("backend", BACKENDS)
def test_int32_min_clamped_like_tfc_or_refused(backend):
    v = np.array([0, INT32_MIN, 5], np.int32)
    assert gamma.encode(v, backend=backend) == gamma.encode([0, -INT32_MAX, 5], backend=backend)
    with pytest.raises(CodecError, match="INT32_MIN"):
        gamma.encode(v, clamp_int32_min=False, backend=backend)
    assert gamma.encode(v[[0, 2]], clamp_int32_min=False, backend=backend) == gamma.encode([0, 5])


@pytest.mark.parametrize("bad", [np.array([0.5, 1.0]), np.array([True, False]), np.array(["a"]),
                                 np.array([2**31], np.int64), np.array([-(2**31) - 1], np.int64),
                                 np.array([2**40], np.uint64)])
def test_encode_rejects_non_int32_input(bad):
    for backend in BACKENDS:
        with pytest.raises(CodecError):
            gamma.encode(bad, backend=backend)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int64, np.uint32, np.uint64])
def test_encode_accepts_any_integer_dtype_in_range(dtype):
    v = np.array([0, 1, 7, 0, 100, 0, 0], dtype=dtype)
    assert gamma.encode(v) == gamma.encode(v.astype(np.int32)) == gamma_ref.encode(v.tolist())


def test_encode_reads_c_order_of_any_layout():
    x = np.arange(-12, 12, dtype=np.int32).reshape(4, 6)
    for view in (x.T, x[:, ::2], x[::-1]):
        for backend in BACKENDS:
            assert gamma.encode(view, backend=backend) == gamma_ref.encode(view.reshape(-1).tolist())


@pytest.mark.parametrize("count", [-1, 1.5, "3", None, True])
def test_decode_rejects_bad_counts(count):
    with pytest.raises(StreamError):
        gamma.decode(b"\x02", count)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_accepts_any_bytes_like(backend, tmp_path):
    v = np.array([0, -6, 3, 0, 0, 1000, 0], np.int32)
    data = gamma.encode(v)
    path = tmp_path / "g.bin"
    path.write_bytes(b"xx" + data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        mv = memoryview(mm)
        try:
            np.testing.assert_array_equal(gamma.decode(mv[2:], v.size, backend=backend), v)
        finally:
            mv.release()
    for obj in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8),
                memoryview(bytes(x for b in data for x in (b, 0)))[::2]):  # non-contiguous view
        np.testing.assert_array_equal(gamma.decode(obj, v.size, backend=backend), v)


def test_decode_huge_count_fails_fast_without_reading_past_end():
    # a 1-byte stream cannot describe a million values: truncated, not a hang or overread
    for backend in BACKENDS:
        with pytest.raises(StreamError, match="truncated"):
            gamma.decode(b"\x07", 1_000_000, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_all_zero(backend):
    assert gamma.encode(np.zeros(0, np.int32), backend=backend) == b""
    assert gamma.decode(b"", 0, backend=backend).shape == (0,)
    assert gamma.encode(np.zeros((3, 0, 2), np.int32), backend=backend) == b""
    z = np.zeros(1 << 20, np.int32)
    data = gamma.encode(z, backend=backend)
    assert len(data) == 6  # gamma(2**20 + 1): 41 bits
    assert not gamma.decode(data, z.size, backend=backend).any()


def test_coding_units_shapes():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    for rank, n in [(0, 24), (1, 6), (2, 2), (3, 1)]:
        strings = gamma.encode_units(x, rank)
        assert len(strings) == n
        np.testing.assert_array_equal(gamma.decode_units(strings, x.shape, rank), x)
        np.testing.assert_array_equal(
            gamma.decode_units(np.array(strings, dtype=object).reshape(x.shape[:3 - rank]), x.shape, rank), x)
    np.testing.assert_array_equal(gamma.decode_units(gamma.encode(x), x.shape, 3), x)  # one scalar string
    with pytest.raises(ValueError):
        gamma.encode_units(x, 4)
    with pytest.raises(ValueError):
        gamma.encode_units(x, -1)
    with pytest.raises(StreamError, match="expected 6"):
        gamma.decode_units(gamma.encode_units(x, 1)[:-1], x.shape, 1)
    empty = np.zeros((0, 5), np.int32)
    assert gamma.encode_units(empty, 1) == []
    assert gamma.decode_units([], (0, 5), 1).shape == (0, 5)
    assert gamma.encode_units(np.zeros((2, 0), np.int32), 1) == [b"", b""]


def test_backend_selection():
    old = gamma.BACKEND
    try:
        for b in BACKENDS:
            assert gamma.set_backend(b) == b == gamma.BACKEND
            assert gamma.encode([-6, 3, 0, 0]) == b"\xd1\x6d"
        assert gamma.set_backend() == BACKENDS[0]
        with pytest.raises(ValueError, match="unknown gamma backend"):
            gamma.set_backend("fortran")
    finally:
        gamma.set_backend(old)


def test_c_backend_is_default_when_built():
    """The fast path is used when built; without it the tests still cover numpy and the reference."""
    if "c" not in BACKENDS:
        pytest.skip("squeezefmt.entropy._gammac not built (python setup.py build_ext --inplace): "
                    "only the numpy and pure Python backends are tested")
    if not os.environ.get("SQUEEZEFMT_GAMMA_BACKEND"):
        assert gamma.BACKEND == "c"


def test_env_forces_backend_and_no_tensorflow_import():
    run_without_tensorflow("""
        from squeezefmt.entropy import gamma
        assert gamma.BACKEND == 'python', gamma.BACKEND
        assert gamma.encode([-6, 3, 0, 0]) == bytes.fromhex('d16d')
    """, block=(), env={"SQUEEZEFMT_GAMMA_BACKEND": "python"})


def test_fallback_without_c_extension():
    code = ("import sys; sys.modules['squeezefmt.entropy._gammac'] = None; "  # makes the import fail
            "from squeezefmt.entropy import gamma; "
            "assert gamma.BACKEND == 'numpy' and gamma.available_backends() == ['numpy', 'python']; "
            "assert gamma.encode([-6, 3, 0, 0]) == bytes.fromhex('d16d'); "
            "assert gamma.decode(bytes.fromhex('d16d'), 4).tolist() == [-6, 3, 0, 0]")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("SQUEEZEFMT_GAMMA_BACKEND", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


@pytest.mark.skipif("c" not in BACKENDS, reason="C extension not built")
def test_c_decoder_runs_in_threads():
    """The C loops release the GIL; concurrent use must stay correct."""
    rng = np.random.default_rng(7)
    arrays = [np.round(rng.laplace(0, 2, 200_000)).astype(np.int32) for _ in range(4)]
    datas = [gamma.encode(a) for a in arrays]
    errors = []

    def work(k):
        for _ in range(5):
            if gamma.encode(arrays[k], backend="c") != datas[k] or \
                    not np.array_equal(gamma.decode(datas[k], arrays[k].size, backend="c"), arrays[k]):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif("c" not in BACKENDS, reason="C extension not built")
def test_c_module_validates_buffers():
    from squeezefmt.entropy import _gammac
    with pytest.raises(TypeError):
        _gammac.encode(np.zeros(3, np.int64))
    with pytest.raises(TypeError):
        _gammac.decode_into(b"\x02", np.zeros(1, np.int64))
    with pytest.raises((TypeError, BufferError, ValueError)):
        _gammac.decode_into(b"\x02", b"\x00\x00\x00\x00")  # read-only output


def _in_parts(data, count, sizes, strict, backend):
    """``gamma.PartDecoder`` over ``data`` in parts of the given sizes (cycled): values or the error."""
    dec = gamma.PartDecoder(data, count, strict=strict, backend=backend)
    got, k = [], 0
    if count == 0:
        dec.into(np.empty(0, np.int32))
    while dec.done < count:
        part = np.empty(min(count - dec.done, sizes[k % len(sizes)]), np.int32)
        k += 1
        got += dec.into(part).tolist()
    return got


@given(latents(60), st.integers(0, 2**32 - 1), st.lists(st.integers(1, 70), min_size=1, max_size=4))
def test_part_decoder_equals_whole_decode(values, seed, sizes):
    """Decoding in parts (the epr codec's bounded scratch for 16-bit floats): the values or the error
    message of the whole decode, on every backend, for intact and damaged streams and wrong counts."""
    rng = np.random.default_rng(seed)
    data = gamma.encode(values, backend="python")
    candidates = damaged(data, rng)
    for cand in candidates:
        for count in {values.size, values.size + 1, max(values.size - 1, 0)}:
            for strict in (True, False):
                whole = outcome(lambda: gamma.decode(cand, count, strict=strict, backend="python"))
                for b in BACKENDS:
                    parts = outcome(lambda: np.array(_in_parts(cand, count, sizes, strict, b), np.int32))
                    assert repr(parts) == repr(whole), (cand.hex(), count, strict, sizes, b)


def test_part_decoder_rejects_parts_past_the_count():
    dec = gamma.PartDecoder(gamma.encode(np.arange(5, dtype=np.int32)), 5)
    dec.into(np.empty(3, np.int32))
    with pytest.raises(ValueError):
        dec.into(np.empty(3, np.int32))
    assert dec.into(np.empty(2, np.int32)).tolist() == [3, 4]
