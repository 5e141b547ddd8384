"""``sparse``: CSR structure + nested values -- exact round trips, size vs sparsity, pruning, hostile streams."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.cluster import Cluster
from squeezefmt.entropy.varint import uvarint
from squeezefmt.codecs.quantize import Quantize
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.sparse import (
    Sparse, decode_structure, decode_uints, encode_structure, encode_uints, matrix_shape, prune_mask, zero_fraction,
)
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.dtypes import dtype_name


def roundtrip(codec, array):
    enc = codec.encode(array)
    out = codec.decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec(dtype_name(array.dtype), array.shape))
    return enc, out


def pruned(rng, shape, sparsity, signed_zeros=False):
    w = rng.normal(0, 0.05, shape).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
    if signed_zeros:  # what tfmot's strip_pruning leaves: weight * 0 keeps the weight's sign
        w = np.where(w == 0, np.copysign(np.float32(0), rng.normal(size=shape)), w).astype(np.float32)
    return w


def size(enc):
    return sum(len(s) for s in enc.streams)


# -- integer sequences -------------------------------------------------------------------------

@given(values=hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(0, 2**32)),
       literals=st.one_of(st.none(), st.integers(1, 5000)))
def test_uints_round_trip(values, literals):
    data = encode_uints(values, literals)
    top = int(values.max()) if values.size else 0
    assert np.array_equal(decode_uints(data, values.size, top, "t"), values)
    if values.size:
        with pytest.raises(errors.StreamError):
            decode_uints(data, values.size, top - 1, "t") if top else decode_uints(data + b"\x00", values.size, 0, "t")


def test_uints_geometric_near_entropy(rng):
    v = rng.geometric(0.1, 100_000) - 1           # gaps of a 90 % sparse row
    bits = 8 * len(encode_uints(v)) / v.size
    p = np.bincount(v) / v.size
    h = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    assert h <= bits <= h + 0.05, (bits, h)


def test_uints_hostile():
    good = encode_uints(np.array([1, 2, 500, 70000]))
    for bad in (good[:-1], good + b"\x00", b"", b"\x00" + good[1:], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(errors.StreamError):
            decode_uints(bad, 4, 70000, "t")
    with pytest.raises(errors.StreamError):
        decode_uints(b"\x00", 0, 5, "t")


# -- CSR structure -----------------------------------------------------------------------------

def test_structure_round_trip(rng):
    for rows, cols, density in ((30, 17, 0.1), (1, 1000, 0.01), (50, 1, 0.5), (8, 8, 0.0), (8, 8, 1.0)):
        mask = rng.random(rows * cols) < density
        neg = ~mask & (rng.random(rows * cols) < 0.3)
        pos, negpos = decode_structure(encode_structure(mask, cols, neg), rows, cols)
        assert np.array_equal(pos, np.flatnonzero(mask)) and np.array_equal(negpos, np.flatnonzero(neg))


def test_matrix_view():
    assert matrix_shape((784, 300)) == (784, 300)
    assert matrix_shape((5, 5, 20, 50)) == (500, 50)
    assert matrix_shape((7,)) == (1, 7) and matrix_shape(()) == (1, 1) and matrix_shape((3, 0)) == (0, 0)


# -- exact round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("values", [Raw(), ByteGroup(level=3), Zstd(level=3)], ids=lambda c: c.codec_id)
@given(data=st.data())
def test_lossless_round_trip(values, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16, np.float64, np.int8, np.int32, np.uint16, np.bool_]))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7))
    array = data.draw(hnp.arrays(dtype, shape))
    if array.size:
        array.reshape(-1)[data.draw(hnp.arrays(np.bool_, array.size))] = 0     # many zeros
    codec = Sparse(values=values)
    assert codec.lossless
    enc, out = roundtrip(codec, array)
    assert out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()         # -0.0, NaN payloads, everything


def test_negative_zeros_are_kept_and_cheap(rng):
    w = pruned(rng, (256, 128), 0.9, signed_zeros=True)
    enc, out = roundtrip(Sparse(ByteGroup()), w)
    assert out.tobytes() == w.tobytes()
    plus = np.where(w == 0, np.float32(0), w)
    extra = size(enc) - size(Sparse(ByteGroup()).encode(plus))
    zeros = int((w == 0).sum())
    assert extra <= zeros / 8 * 1.05 + 16           # about one bit per zero, the sign's information


def test_ninety_percent_is_several_times_smaller_than_fifty(rng):
    s50 = size(Sparse(ByteGroup()).encode(pruned(rng, (512, 256), 0.5)))
    s90 = size(Sparse(ByteGroup()).encode(pruned(rng, (512, 256), 0.9)))
    assert s50 > 3.5 * s90, (s50, s90)


def test_lossless_ninety_percent_beats_zstd_and_six_x(rng):
    w = pruned(rng, (784, 300), 0.9)
    ours = size(Sparse(ByteGroup()).encode(w))
    zstd = size(Zstd(19).encode(w))
    assert w.nbytes / ours >= 6 and ours < zstd, (w.nbytes / ours, w.nbytes / zstd)


def test_conv_kernel_and_vectors(rng):
    for shape in ((5, 5, 20, 50), (3, 3, 1, 1), (100,), (1,)):
        w = pruned(rng, shape, 0.8)
        enc, out = roundtrip(Sparse(ByteGroup()), w)
        assert out.tobytes() == w.tobytes()


# -- lossy: pruning and nested lossy values ------------------------------------------------------

def test_prune_mask_exact_count_and_ties():
    x = np.array([0.5, -0.1, 0.1, 0.1, 0.0, -0.7, 0.1, 0.2], np.float32)
    keep = prune_mask(x, 0.5)
    assert keep.sum() == 4 and keep.tolist() == [True, False, False, False, False, True, True, True]
    assert prune_mask(x, 0.0).tolist() == (x != 0).tolist()
    assert not prune_mask(x, 1.0).any()


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.97])
def test_magnitude_pruning(sparsity, rng):
    w = rng.normal(0, 0.05, (300, 100)).astype(np.float32)
    codec = Sparse(ByteGroup(), sparsity=sparsity)
    assert not codec.lossless
    enc, out = roundtrip(codec, w)
    assert (out == 0).mean() == pytest.approx(sparsity, abs=1e-4)
    kept = out != 0
    assert np.array_equal(out[kept], w[kept])                        # survivors are exact
    assert np.abs(w[~kept]).max() <= np.abs(w[kept]).min()          # the smallest went
    assert enc.stats["max_abs_err"] == pytest.approx(float(np.abs(w[~kept]).max()))


@pytest.mark.parametrize("values", [Cluster(5), Quantize(8), Cluster(4, codebook_dtype="float16")],
                         ids=lambda c: repr(c))
def test_nested_lossy_values(values, rng):
    w = pruned(rng, (784, 300), 0.92, signed_zeros=True)
    enc, out = roundtrip(Sparse(values), w)
    assert np.array_equal(out == 0, w == 0)
    assert 0 < enc.stats["rel_rms_err"] < 0.05
    assert w.nbytes / size(enc) > 30                         # Deep Compression territory


def test_prune_and_cluster_like_deep_compression(rng):
    w = rng.normal(0, 0.05, (784, 300)).astype(np.float32)
    enc, out = roundtrip(Sparse(Cluster(5), sparsity=0.92), w)
    assert (out == 0).mean() == pytest.approx(0.92, abs=1e-4)
    assert np.unique(out[out != 0]).size <= 32       # 2**5 shared values for the survivors
    assert w.nbytes / size(enc) > 30


def test_pruning_needs_finite_floats():
    with pytest.raises(errors.CodecError):
        Sparse(sparsity=0.5).encode(np.arange(10, dtype=np.int32))
    with pytest.raises(errors.CodecError):
        Sparse(sparsity=0.5).encode(np.array([1, np.nan, 2, 3], np.float32))


def test_config():
    c = Sparse(Cluster(5), sparsity=0.9)
    assert get_codec(c.describe()) == c and not c.lossless
    assert Sparse().get_config() == {"values": {"id": "raw", "version": 1, "config": {}}}
    for bad in ({"values": "raw"}, {"values": {"id": "nope", "version": 1}}, {"sparsity": 1.5}, {"sparsity": True},
                {"values": Sparse().describe()}):
        with pytest.raises((errors.StreamError, errors.UnknownCodecError)):
            get_codec({"id": "sparse", "version": 1, "config": bad})


def test_zero_fraction():
    assert zero_fraction(np.array([0.0, -0.0, 1.0, np.nan], np.float32)) == 0.5
    assert zero_fraction(np.zeros(0)) == 0.0 and zero_fraction(np.array([0, 1, 2, 0], np.int8)) == 0.5


# -- hostile streams ---------------------------------------------------------------------------

def test_hostile_streams(rng):
    w = pruned(rng, (20, 10), 0.7, signed_zeros=True)
    c = Sparse(Raw())
    enc = c.encode(w)
    spec = TensorSpec("float32", (20, 10))
    s0, vals = enc.streams[0], memoryview(enc.streams[1])
    nnz = int((w != 0).sum())

    def rows(lens):
        return encode_uints(np.array(lens))

    gaps = encode_uints(np.zeros(nnz, np.int64))
    too_wide = rows([11] + [0] * 19)                                  # 11 > 10 columns
    past_end = rows([2] + [0] * 19)
    cases = {
        "truncated": s0[:-1], "trailing": s0 + b"\x00", "empty": b"",
        "row count past cols": uvarint(len(too_wide)) + too_wide + uvarint(0) + b"" + uvarint(0),
        "column past row end": (uvarint(len(past_end)) + past_end + uvarint(len(encode_uints(np.array([5, 4]))))
                                + encode_uints(np.array([5, 4])) + uvarint(0)),
        "negative zeros past the zeros": (uvarint(len(rows([0] * 20))) + rows([0] * 20) + uvarint(0)
                                          + uvarint(200) + encode_uints(np.array([0] * 199 + [1]))),
        "more negative zeros than zeros": uvarint(len(rows([0] * 20))) + rows([0] * 20) + uvarint(0) + uvarint(201),
    }
    for what, stream in cases.items():
        with pytest.raises(errors.StreamError):
            c.decode([memoryview(stream), vals], enc.side, spec)
    with pytest.raises(errors.StreamError):                        # value count mismatch
        c.decode([memoryview(s0), vals[:-4]], enc.side, spec)
    with pytest.raises(errors.StreamError):
        c.decode([memoryview(s0)], enc.side, spec)
    with pytest.raises(errors.StreamError):
        c.decode([memoryview(s0), vals, vals], enc.side, spec)
    nested = {"values": {"codec": Sparse().describe(), "side": {}, "streams": 1}}
    with pytest.raises(errors.StreamError, match="sparse"):
        c.decode([memoryview(s0), vals], nested, spec)
    with pytest.raises(errors.StreamError):
        c.decode([memoryview(s0), vals], {"values": "raw"}, spec)
    neg_int = Sparse(Raw()).encode(np.zeros(8, np.int32)).streams[0]
    with pytest.raises(errors.StreamError):
        c.decode([memoryview(s0[:0] + neg_int[:-1] + uvarint(1) + encode_uints(np.array([0]))), memoryview(b"")],
                 {"values": {"codec": Raw().describe(), "side": {}, "streams": 1}}, TensorSpec("int32", (8,)))
    assert gaps  # (used above to size the cases)


def test_in_container_and_verify(rng):
    w = pruned(rng, (64, 32), 0.9, signed_zeros=True)
    data = squeezefmt.save({"w": w, "q": w}, codecs={"w": Sparse(ByteGroup()), "q": Sparse(Quantize(6))})
    with squeezefmt.open(data) as f:
        assert f.info("w").codec == "sparse" and f.tensor("w").tobytes() == w.tobytes()
        assert f.info("q").stats["rel_rms_err"] < 0.05
        f.verify()


# -- stream fuzzing: damaged quant / cluster / sparse streams (CRC bypassed) -----------------------

def _fuzz_cases():
    rng = np.random.default_rng(11)
    w = pruned(rng, (24, 12), 0.8, signed_zeros=True)
    w[2, 3] = np.float32(np.nan)
    clustered = np.float32([0, -0.5, 0.25, 1.5])[rng.integers(0, 4, (24, 12))]
    dense = rng.normal(size=(24, 12)).astype(np.float32)
    return [
        (Sparse(Raw()), w), (Sparse(Cluster(3)), np.nan_to_num(w)), (Sparse(Quantize(4)), np.nan_to_num(w)),
        (Cluster(2, exact=True), clustered), (Cluster(5), dense), (Quantize(5, per_channel=True), dense),
    ]


FUZZ = _fuzz_cases()


@given(data=st.data())
def test_damaged_streams_raise_squeeze_errors(data):
    codec, array = data.draw(st.sampled_from(FUZZ))
    enc = codec.encode(array)
    streams = [bytearray(s) for s in enc.streams]
    i = data.draw(st.integers(0, len(streams) - 1))
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "replace"]))
    s = streams[i]
    if how == "flip" and s:
        pos = data.draw(st.integers(0, len(s) - 1))
        s[pos] ^= data.draw(st.integers(1, 255))
    elif how == "truncate" and s:
        del s[data.draw(st.integers(0, len(s) - 1)):]
    elif how == "extend":
        s += data.draw(st.binary(min_size=1, max_size=8))
    else:
        streams[i] = bytearray(data.draw(st.binary(max_size=64)))
    spec = TensorSpec(dtype_name(array.dtype), array.shape)
    try:
        out = codec.decode([memoryview(bytes(x)) for x in streams], enc.side, spec)
    except errors.SqueezeError:
        return
    assert out.shape == array.shape          # an undetected change must still give a well-formed tensor
