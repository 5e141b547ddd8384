"""``cluster``: exact codebook extraction, k-means codebooks, Huffman indices near the entropy, hostile streams."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.cluster import Cluster, distinct_bits, index_entropy, kmeans_1d
from squeezefmt.entropy.varint import uvarint
from squeezefmt.dtypes import dtype_name
from squeezefmt.entropy import huffman


def roundtrip(codec, array):
    enc = codec.encode(array)
    out = codec.decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec(dtype_name(array.dtype), array.shape))
    return enc, out


def skewed_codebook_tensor(rng, k=16, shape=(300, 100)):
    """A tensor that is exactly k shared values with a bell-shaped population (like a clustered layer)."""
    book = np.sort(rng.normal(0, 0.05, k)).astype(np.float32)
    p = np.exp(-0.5 * ((np.arange(k) - (k - 1) / 2) / (k / 5)) ** 2)
    return book[rng.choice(k, shape, p=p / p.sum())]


# -- exact extraction --------------------------------------------------------------------------

@given(data=st.data())
def test_exact_extraction_is_bit_exact(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float16, np.float64, np.int8, np.int32, np.uint16, np.bool_]))
    palette = data.draw(hnp.arrays(dtype, st.integers(1, 20)))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=8))
    idx = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, palette.size - 1)))
    array = palette[idx]
    codec = Cluster(bits=5, exact=True)
    enc, out = roundtrip(codec, array)
    assert out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()          # -0.0 and NaN payloads included
    assert not enc.stats                               # lossless: no error statistics


def test_signed_zero_and_nan_payloads_are_distinct_values():
    bits = np.array([0, 0x80000000, 0x7FC00001, 0x7FC00002, 0x3F800000] * 7, np.uint32)
    x = bits.view(np.float32).reshape(5, 7)
    enc, out = roundtrip(Cluster(bits=3, exact=True), x)
    assert out.view(np.uint32).tolist() == x.view(np.uint32).tolist()
    assert distinct_bits(x, 8)[0].size == 5


def test_exact_refuses_too_many_values(rng):
    with pytest.raises(errors.CodecError, match="distinct"):
        Cluster(bits=2, exact=True).encode(rng.normal(size=100).astype(np.float32))
    with pytest.raises(errors.CodecError, match="k-means needs floats"):
        Cluster(bits=2).encode(np.arange(100, dtype=np.int32))
    assert Cluster(exact=True).lossless and not Cluster().lossless


def test_lossy_codec_extracts_exactly_when_it_can(rng):
    x = skewed_codebook_tensor(rng, 16)
    enc, out = roundtrip(Cluster(bits=4, codebook_dtype="float16"), x)
    assert np.array_equal(out, x)                      # float32 codebook kept despite float16 requested
    assert enc.side == {"codebook": "float32"} and enc.stats["max_abs_err"] == 0.0


def test_sixteen_cluster_tensor_near_entropy_limit(rng):
    """Lossless 16-cluster weights: Huffman indices within a few % of the order-0 entropy."""
    x = skewed_codebook_tensor(rng, 16, (512, 512))
    enc, out = roundtrip(Cluster(bits=4, exact=True), x)
    assert np.array_equal(out, x)
    bits = 8 * len(enc.streams[0]) / x.size
    _, inverse = distinct_bits(x, 16)
    h = index_entropy(inverse)
    assert h <= bits <= h * 1.03 + 0.02, (bits, h)
    assert 32 / bits >= 0.97 * 32 / h


# -- k-means ----------------------------------------------------------------------------------

def test_kmeans_recovers_separated_clusters(rng):
    centers = np.array([-3.0, -1.0, 0.5, 2.0, 7.0])
    x = np.concatenate([c + rng.normal(0, 0.01, 500) for c in centers])
    for init in ("linear", "kmeans++"):
        c = kmeans_1d(x, 5, init=init, seed=3)
        assert np.allclose(c, centers, atol=0.01), (init, c)
    assert np.array_equal(kmeans_1d(x, 5, "kmeans++", seed=1), kmeans_1d(x, 5, "kmeans++", seed=1))


def test_kmeans_reseeds_empty_clusters(rng):
    """Linear init on pruned weights puts centroids in the empty gap; they are re-seeded, not lost."""
    w = rng.normal(0, 1, 20000)
    w = w[np.abs(w) > 1.0]
    c = kmeans_1d(w, 32, "linear")
    assert c.size == 32 and not np.any((c > -1.0) & (c < 1.0))


def test_kmeans_fewer_values_than_clusters():
    assert kmeans_1d(np.array([1.0, 1.0, 2.0]), 8).tolist() == [1.0, 2.0]
    assert kmeans_1d(np.zeros(0), 8).size == 0


@pytest.mark.parametrize("init", ["linear", "kmeans++"])
@pytest.mark.parametrize("book", ["float16", "float32"])
def test_lossy_clustering_keeps_zeros(init, book, rng):
    w = rng.normal(0, 0.05, (200, 50)).astype(np.float32)
    w[np.abs(w) < 0.04] = 0.0
    for bits in (1, 2, 4, 5, 8):
        enc, out = roundtrip(Cluster(bits, init=init, codebook_dtype=book), w)
        assert np.all(out[w == 0] == 0) and np.all(out[w != 0] != 0)
        assert np.unique(out[out != 0]).size <= 1 << bits     # 2**bits shared values + exact zero
        assert enc.side == {"codebook": book}
        assert enc.stats["max_abs_err"] == pytest.approx(float(np.abs(out.astype(np.float64) - w).max()))


def test_more_bits_less_error(rng):
    w = rng.normal(0, 0.05, (100, 100)).astype(np.float32)
    errs = [roundtrip(Cluster(b), w)[0].stats["rel_rms_err"] for b in (1, 2, 3, 4, 5, 6)]
    assert errs == sorted(errs, reverse=True)
    assert errs[3] < 0.1 and errs[5] < 0.03   # 16 / 64 shared values


def test_keep_zero_false_and_float16_tensor(rng):
    w = rng.normal(0, 1, (64, 8)).astype(np.float16)
    w[:4] = 0
    enc, out = roundtrip(Cluster(3, keep_zero=False), w)
    assert out.dtype == np.float16 and enc.side == {"codebook": "float16"}
    assert np.unique(out).size <= 8


def test_rejects_non_finite_for_kmeans():
    with pytest.raises(errors.CodecError, match="finite"):
        Cluster(1).encode(np.array([1.0, 2.0, np.inf, 4.0], np.float32))


def test_bits_per_weight_below_fixed_width(rng):
    w = rng.standard_t(5, (256, 256)).astype(np.float32)
    enc, _ = roundtrip(Cluster(5), w)
    assert 8 * len(enc.streams[0]) / w.size < 4.6   # Huffman on a bell-shaped population, < 5 bits


def test_config_validation():
    c = Cluster(bits=6, init="kmeans++", codebook_dtype="float16", keep_zero=False, exact=True, iterations=7, seed=9)
    assert get_codec(c.describe()) == c
    assert get_codec(Cluster().describe()).get_config() == {"bits": 4, "init": "linear", "codebook_dtype": "float32"}
    for bad in ({"bits": 0}, {"bits": 17}, {"init": "random"}, {"codebook_dtype": "int8"}, {"exact": 1},
                {"keep_zero": "yes"}, {"iterations": -1}, {"seed": 1.5}, {"extra": 1}):
        with pytest.raises(errors.StreamError):
            get_codec({"id": "cluster", "version": 1, "config": bad})


def test_edge_shapes(rng):
    for x in (np.zeros((0, 5), np.float32), np.float32(1.25).reshape(()), np.ones((3, 3), np.float32)):
        enc, out = roundtrip(Cluster(2), x)
        assert out.shape == x.shape and np.array_equal(out, x)


# -- hostile streams ---------------------------------------------------------------------------

def test_hostile_streams(rng):
    x = skewed_codebook_tensor(rng, 8, (20, 10))
    c = Cluster(3, exact=True)
    enc = c.encode(x)
    s, side, spec = enc.streams[0], enc.side, TensorSpec("float32", (20, 10))
    book = s[1:1 + 8 * 4]
    idx = np.zeros(200, np.uint8)
    idx[5] = 8                                           # one past the codebook
    cases = {
        "truncated codebook": s[:20],
        "empty": b"",
        "k = 0": uvarint(0) + s[1:],
        "k > n": uvarint(201) + s[1:],
        "non-minimal k": b"\x88\x00" + s[1:],
        "trailing": s + b"\x00",
        "truncated indices": s[:-1],
        "index past codebook": uvarint(8) + book + huffman.encode(idx, alphabet_size=9),
    }
    for what, stream in cases.items():
        with pytest.raises(errors.StreamError):
            c.decode([memoryview(stream)], side, spec)
    for bad_side in ({}, {"codebook": "int8"}, {"codebook": "float64x"}, {"codebook": 3}):
        with pytest.raises(errors.StreamError, match="codebook"):
            c.decode([memoryview(s)], bad_side, spec)
    with pytest.raises(errors.StreamError, match="codebook"):   # int tensors need an int codebook
        c.decode([memoryview(s)], {"codebook": "float32"}, TensorSpec("int32", (20, 10)))
    with pytest.raises(errors.StreamError):
        c.decode([memoryview(s)] * 2, side, spec)


def test_in_container(rng):
    w = rng.normal(0, 0.05, (128, 64)).astype(np.float32)
    data = squeezefmt.save({"w": w}, codecs={"w": Cluster(4)})
    with squeezefmt.open(data) as f:
        assert f.info("w").codec == "cluster" and f.info("w").side_bytes < 40
        assert np.unique(f.tensor("w")).size <= 16
        f.verify()
