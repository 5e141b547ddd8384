"""Lossless codecs: exact round trips over arbitrary arrays, and byte grouping's advantage on weights."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import TensorSpec, codec_ids, get_codec
from squeezefmt.codecs.bytegroup import ByteGroup, join_planes, split_planes
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.zstd_codec import Zstd
from squeezefmt.dtypes import dtype_name

DTYPES = [np.float32, np.float16, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_]


def roundtrip(codec, array):
    enc = codec.encode(array)
    out = codec.decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec(dtype_name(array.dtype), array.shape))
    return out


@pytest.mark.parametrize("codec", [Raw(), Zstd(level=3), ByteGroup(level=3)], ids=lambda c: c.codec_id)
@given(data=st.data())
def test_exact_round_trip(codec, data):
    dtype = data.draw(st.sampled_from(DTYPES))
    array = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)))
    out = roundtrip(codec, array)
    assert out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()  # bitwise, NaN payloads and -0.0 included


def test_nan_payloads_and_signed_zero_survive():
    bits = np.array([0x7FC00001, 0xFFC12345, 0x80000000, 0x00000001, 0x7F800000], dtype=np.uint32)
    x = bits.view(np.float32)
    for codec in (Zstd(), ByteGroup(), Raw()):
        assert roundtrip(codec, x).view(np.uint32).tolist() == bits.tolist()


def test_plane_split_join_is_inverse():
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float16, np.float64, np.int32):
        x = rng.normal(size=1000).astype(dt)
        for rotate in (True, False):
            planes = split_planes(x, rotate)
            u = join_planes([p.tobytes() for p in planes], x.dtype.itemsize, x.size, rotate)
            assert u.tobytes() == x.tobytes()


@given(data=st.data())
def test_c_join_matches_numpy_reference(data):
    from squeezefmt.codecs import bytegroup

    if bytegroup._bytegroupc is None:
        pytest.skip("C extension not built")
    width = data.draw(st.sampled_from([1, 2, 4, 8]))
    count = data.draw(st.integers(0, 300))
    rotate = data.draw(st.booleans())
    planes = [data.draw(st.binary(min_size=count, max_size=count)) for _ in range(width)]
    fast = bytegroup.join_planes(planes, width, count, rotate)
    ref = bytegroup.join_planes_reference(planes, width, count, rotate)
    assert fast.dtype == ref.dtype and fast.tobytes() == ref.tobytes()


def test_c_join_rejects_mismatched_planes():
    from squeezefmt.codecs import bytegroup

    if bytegroup._bytegroupc is None:
        pytest.skip("C extension not built")
    with pytest.raises(ValueError):
        bytegroup._bytegroupc.join([b"ab", b"a"], np.empty(2, np.uint16), True)
    with pytest.raises(ValueError):
        bytegroup._bytegroupc.join([b"ab"] * 3, np.empty(2, np.uint32), True)


def test_float32_rotation_puts_exponent_in_top_plane():
    x = np.array([1.0, -1.0, 2.0, 0.5], dtype=np.float32)
    planes = split_planes(x, rotate=True)
    assert planes[3].tolist() == [127, 127, 128, 126]  # biased exponents
    assert (planes[0] & 1).tolist() == [0, 1, 0, 0]     # sign in the lowest bit


def test_bytegroup_beats_plain_zstd_on_trained_like_weights():
    """Heavy-tailed, trained-looking weights: byte grouping must beat zstd of the same bytes."""
    rng = np.random.default_rng(42)
    w = (rng.standard_t(4, size=(512, 256)) * 0.03).astype(np.float32)
    z = sum(len(s) for s in Zstd(level=19).encode(w).streams)
    g = sum(len(s) for s in ByteGroup(level=19).encode(w).streams)
    assert g < z * 0.97, (g, z)


def test_lossless_preset_never_expands():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=4096, dtype=np.uint8)
    data = squeezefmt.save({"noise": noise, "tiny": np.float32([1.5])})
    with squeezefmt.open(data) as f:
        assert f.info("noise").stored_bytes <= noise.nbytes
        assert f.info("tiny").codec == "raw"


def test_registry():
    assert {"raw", "zstd", "bytegroup"} <= set(codec_ids())
    with pytest.raises(errors.UnknownCodecError, match="'nonesuch'"):
        get_codec({"id": "nonesuch", "version": 1, "config": {}})
    with pytest.raises(errors.UnknownCodecError, match="version 5"):
        get_codec({"id": "raw", "version": 5, "config": {}})
    with pytest.raises(errors.StreamError, match="level"):
        get_codec({"id": "zstd", "version": 1, "config": {"level": "max"}})
    with pytest.raises(errors.StreamError):
        get_codec({"id": "zstd", "version": 1, "config": {"bogus": 1}})
    assert get_codec(ByteGroup(level=5).describe()) == ByteGroup(level=5)


@pytest.mark.parametrize("codec", [Raw(), Zstd(level=3), ByteGroup(level=3)], ids=lambda c: c.codec_id)
def test_decoded_arrays_are_writable_copies(codec):
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    enc = codec.encode(x)
    streams = [bytearray(s) for s in enc.streams]  # writable, so a view of them would be writable too
    out = codec.decode([memoryview(s) for s in streams], enc.side, TensorSpec("float32", x.shape))
    assert out.flags.writeable
    assert not any(np.shares_memory(out, np.frombuffer(s, np.uint8)) for s in streams if s), \
        "a decoded array must not alias the container's streams"
    out[0, 0] = -1.0  # must not raise
    assert [bytes(s) for s in streams] == [bytes(s) for s in enc.streams]
