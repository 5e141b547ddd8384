"""Cross-implementation: squeezefmt's gamma coder against tensorflow-compression's own ops.

tfc encodes -> we decode the same integers; we encode -> tfc decodes the same integers; the bytes
are equal; for every ``coding_rank`` of ``PowerLawEntropyModel`` the strings are one per coding
unit and equal. On arbitrary bytes, ``strict=False`` accepts exactly what tfc's decoder accepts.
Needs tensorflow-compression (CI installs it); skipped without it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
tfc = pytest.importorskip("tensorflow_compression")

from squeezefmt.entropy import gamma  # noqa: E402
from squeezefmt.errors import StreamError  # noqa: E402

pytestmark = pytest.mark.tf

BACKENDS = gamma.available_backends()
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# every example runs TF ops: keep the file well under 30 s (GAMMA_TFC_EXAMPLES=2000 for a deep run)
FEW = settings(max_examples=int(os.environ.get("GAMMA_TFC_EXAMPLES", "50")), deadline=None)


def tfc_encode(values) -> bytes:
    return tfc.run_length_gamma_encode(tf.constant(np.asarray(values, np.int32))).numpy()


def tfc_decode(data: bytes, shape):
    """('ok', values) or ('error', message) from tfc's decoder."""
    try:
        out = tfc.run_length_gamma_decode(tf.constant(data, tf.string), tf.constant(list(shape), tf.int32))
        return ("ok", out.numpy().reshape(-1).tolist())
    except tf.errors.OpError as e:
        return ("error", e.message)


def ours(data: bytes, count: int, strict: bool, backend: str):
    try:
        return ("ok", gamma.decode(data, count, strict=strict, backend=backend).tolist())
    except StreamError as e:
        return ("error", str(e))


def expected_decode(a):
    a = np.asarray(a, np.int64)
    return np.where(a == INT32_MIN, -INT32_MAX, a)


elements = st.one_of(
    st.integers(-4, 4),
    st.just(0),
    st.integers(INT32_MIN, INT32_MAX),
    st.sampled_from([INT32_MIN, INT32_MAX, -INT32_MAX, 2**28, -(2**30) - 3, 0, 0]),
)
small_latents = hnp.arrays(np.int32, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
                           elements=elements)


def laplace_latents(seed, n, scale, density):
    rng = np.random.default_rng(seed)
    return (np.round(rng.laplace(0, scale, n)) * (rng.random(n) < density)).astype(np.int32)


flat_latents = st.one_of(
    hnp.arrays(np.int32, st.integers(0, 400), elements=elements),
    st.builds(laplace_latents, st.integers(0, 2**32 - 1), st.integers(0, 3000), st.floats(0.1, 50),
              st.floats(0, 1)),
    st.builds(lambda n, tail: np.array([0] * n + tail, np.int32), st.integers(0, 100_000),
              st.lists(st.sampled_from([0, 1, -1, INT32_MAX, INT32_MIN]), max_size=4)),
)


def test_tfc_reference_vector():
    assert tfc_encode([-6, 3, 0, 0]) == bytes.fromhex("d16d") == gamma.encode([-6, 3, 0, 0])


@FEW
@given(flat_latents)
def test_ops_both_directions(values):
    theirs = tfc_encode(values)
    expected = expected_decode(values).tolist()
    for backend in BACKENDS:
        mine = gamma.encode(values, backend=backend)
        assert mine == theirs, backend
        assert gamma.decode(theirs, values.size, backend=backend).tolist() == expected  # tfc -> us
    assert tfc_decode(gamma.encode(values), [values.size]) == ("ok", expected)  # us -> tfc


@FEW
@given(small_latents)
def test_power_law_model_every_coding_rank(values):
    """One string per coding unit, byte-equal to PowerLawEntropyModel.compress, both directions."""
    expected = expected_decode(values)
    for rank in range(values.ndim + 1):
        batch, unit = gamma.unit_shape(values.shape, rank)
        if rank and 0 in batch:
            # tfc 2.14 fails here: decompress cannot map_fn over zero strings, and compress fails
            # too when the unit is also empty (its reshape to [-1, *unit] is ambiguous). Ours:
            assert gamma.encode_units(values, rank) == []
            assert gamma.decode_units([], values.shape, rank).shape == values.shape
            continue
        model = tfc.PowerLawEntropyModel(coding_rank=rank, bottleneck_dtype=tf.float64)  # exact for int32
        theirs = np.asarray(model.compress(values.astype(np.float64)).numpy(), dtype=object)
        assert theirs.shape == batch
        theirs_flat = list(theirs.reshape(-1))
        for backend in BACKENDS:
            assert gamma.encode_units(values, rank, backend=backend) == theirs_flat
            got = gamma.decode_units(theirs_flat, values.shape, rank, backend=backend)
            assert got.dtype == np.int32 and got.shape == values.shape
            np.testing.assert_array_equal(got, expected)
        mine = np.array(gamma.encode_units(values, rank) + [None], dtype=object)[:-1].reshape(batch)
        back = model.decompress(tf.constant(mine.tolist() if mine.ndim else mine.item(), tf.string),
                                tf.constant(list(unit), tf.int32)).numpy()
        np.testing.assert_array_equal(back.reshape(values.shape), expected)


@FEW
@given(st.binary(max_size=24), st.integers(0, 40))
def test_lenient_decoding_accepts_exactly_what_tfc_accepts(data, count):
    theirs = tfc_decode(data, [count])
    for backend in BACKENDS:
        lenient = ours(data, count, False, backend)
        assert lenient[0] == theirs[0], (backend, data.hex(), count, lenient, theirs)
        if theirs[0] == "ok":
            assert lenient[1] == theirs[1]
        strict = ours(data, count, True, backend)
        if strict[0] == "ok":  # strict only ever rejects more
            assert strict == theirs


@FEW
@given(flat_latents, st.integers(0, 2**32 - 1))
def test_corrupted_tfc_streams(values, seed):
    """Flipped, cut or extended tfc streams: lenient = tfc exactly; strict never accepts what tfc rejects."""
    rng = np.random.default_rng(seed)
    data = tfc_encode(values)
    cands = [data + bytes([int(rng.integers(256))])]
    if data:
        flipped = bytearray(data)
        flipped[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        cands += [bytes(flipped), data[: int(rng.integers(len(data)))]]
    for cand in cands:
        theirs = tfc_decode(cand, [values.size])
        lenient = ours(cand, values.size, False, BACKENDS[0])
        assert lenient[0] == theirs[0] and (theirs[0] == "error" or lenient[1] == theirs[1])
        strict = ours(cand, values.size, True, BACKENDS[0])
        assert strict[0] == "error" or strict == theirs


def test_long_streams_match_tfc():
    """A few million EPR-like latents (many zeros), both directions."""
    rng = np.random.default_rng(3)
    v = np.round(rng.laplace(0, 0.5, 2_000_000)).astype(np.int32)
    theirs = tfc_encode(v)
    assert gamma.encode(v) == theirs
    np.testing.assert_array_equal(gamma.decode(theirs, v.size), v)
    assert tfc_decode(gamma.encode(v), [v.size])[1] == v.tolist()
