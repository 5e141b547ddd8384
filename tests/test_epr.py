"""The ``epr`` codec without TensorFlow: stream layout, post-training targets, RDFT, validation, vectors."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.epr import EPR, EPRLatents, dequantize, quantize_latent, read_latents
from squeezefmt.entropy import gamma
from squeezefmt.rdft import from_rdft, rdft_shape, to_rdft

from conftest import VECTORS
from sqzdev.harness import check_manifest

EPR_VECTORS = os.path.join(VECTORS, "epr")


def decode(enc, shape, dtype="float32"):
    return EPR().decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec(dtype, tuple(shape)))


def rel_rms(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a * a))


# -- stream layout ---------------------------------------------------------------------------------

def test_tfc_vector_stream_layout():
    _, enc = EPRLatents(np.array([-6, 3, 0, 0]), np.float16(0.0)).encode()
    assert enc.streams == [b"\x00\x00\xd1\x6d"] and enc.side == {}
    assert np.array_equal(decode(enc, (4,)), [-6.0, 3.0, 0.0, 0.0])


def test_stream_is_steps_then_gamma_of_latents(rng):
    q = np.round(rng.standard_t(2, (3, 4, 5, 3, 2)) * 2).astype(np.int32)
    steps = rng.uniform(-6, -2, (5, 3, 2)).astype(np.float16)
    codec, enc = EPRLatents(q, steps, "rdft", shape=(5, 5, 3, 4)).encode()
    assert codec.describe() == {"id": "epr", "version": 1, "config": {}}
    assert enc.side == {"transform": "rdft", "step_dims": 3}
    assert enc.streams[0] == steps.astype("<f2").tobytes() + gamma.encode(q)
    spec = TensorSpec("float32", (5, 5, 3, 4))
    q2, s2, t = read_latents(enc.streams[0], enc.side, spec)
    assert t == "rdft" and np.array_equal(q2, q) and np.array_equal(s2.view(np.uint16), steps.view(np.uint16))
    out = decode(enc, (5, 5, 3, 4))
    latent = q.astype(np.float32) * np.exp(steps.astype(np.float32))
    np.testing.assert_allclose(out, from_rdft(latent, 5), rtol=0, atol=0)
    assert out.dtype == np.float32


def test_dequantize_is_float32_arithmetic():
    q = np.array([1, -3, 1000, 7], np.int32)
    s = np.float16(-4.3)
    want = q.astype(np.float32) * np.exp(np.float32(s))
    got = dequantize(q, s, "none", (4,))
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_quantize_latent_matches_round_half_even():
    latent = np.array([0.5, 1.5, -0.5, 2.5, 0.49999997, 3.0], np.float32)
    q, s = quantize_latent(latent, np.float32(0.0))
    assert q.tolist() == [0, 2, 0, 2, 0, 3] and s.dtype == np.float16
    with pytest.raises(errors.CodecError):
        quantize_latent(np.array([1e30], np.float32), np.float32(-30.0))
    with pytest.raises(errors.CodecError):
        quantize_latent(np.array([1.0], np.float32), np.float32(np.nan))


def test_latents_codec_checks_shapes():
    with pytest.raises(errors.CodecError, match="suffix"):
        EPRLatents(np.zeros((3, 4), np.int32), np.zeros(3, np.float16))
    with pytest.raises(errors.CodecError, match="integers"):
        EPRLatents(np.zeros(3), np.float16(0))
    with pytest.raises(errors.CodecError, match="does not match"):
        EPRLatents(np.zeros((3, 4), np.int32), np.float16(0), shape=(4, 3))


# -- post-training encoding ------------------------------------------------------------------------

@pytest.mark.parametrize("target", [0.005, 0.02, 0.1, 0.3])
def test_max_rel_rms_target_is_met(rng, target):
    w = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    enc = EPR(max_rel_rms=target).encode(w)
    out = decode(enc, w.shape)
    err = rel_rms(w, out)
    assert err <= target
    assert abs(enc.stats["rel_rms_err"] - err) <= 1e-3 * max(err, 1e-9)
    # the step is the largest float16 log-step meeting the target: the next one up misses it
    _, s, _ = read_latents(enc.streams[0], enc.side, TensorSpec("float32", w.shape))
    up = np.nextafter(s, np.float16(np.inf))
    q_up = np.round(w / np.exp(np.float32(up))).astype(np.int32)
    assert rel_rms(w, dequantize(q_up, up, "none", w.shape)) > target


@pytest.mark.parametrize("bits", [0.5, 1.0, 2.0, 4.0])
def test_bits_per_weight_budget_is_met(rng, bits):
    w = rng.normal(0, 1, (40, 50)).astype(np.float32)
    enc = EPR(bits_per_weight=bits).encode(w)
    assert 8 * len(enc.streams[0]) <= bits * w.size
    assert enc.stats["bits_per_weight"] <= bits
    assert rel_rms(w, decode(enc, w.shape)) < 1.0


def test_smaller_error_target_costs_more_bits(rng):
    w = rng.normal(0, 1, (1000,)).astype(np.float32)
    sizes = [len(EPR(max_rel_rms=t).encode(w).streams[0]) for t in (0.01, 0.05, 0.2)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_auto_transform_picks_rdft_for_smooth_kernels(rng):
    yy, xx = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5), indexing="ij")
    blob = np.exp(-2 * (xx ** 2 + yy ** 2))
    k = (blob[:, :, None, None] * rng.normal(0, 0.1, (1, 1, 8, 16))).astype(np.float32)
    auto = EPR(max_rel_rms=0.02).encode(k)
    plain = EPR(max_rel_rms=0.02, transform="none").encode(k)
    assert auto.side.get("transform") == "rdft"
    assert len(auto.streams[0]) < len(plain.streams[0])
    assert rel_rms(k, decode(auto, k.shape)) <= 0.02
    noise = rng.normal(0, 0.1, (3, 3, 8, 16)).astype(np.float32)
    forced = EPR(max_rel_rms=0.05, transform="rdft").encode(noise)
    assert forced.side == {"transform": "rdft"} and rel_rms(noise, decode(forced, noise.shape)) <= 0.05
    with pytest.raises(errors.CodecError, match="rdft"):
        EPR(transform="rdft").encode(np.zeros((3, 3), np.float32))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes_and_edge_shapes(rng, dtype):
    for shape in [(), (1,), (0, 3), (7, 1, 1, 3), (1, 1, 2, 2), (2, 1, 3, 1)]:
        w = rng.normal(0, 1, shape).astype(dtype)
        enc = EPR(max_rel_rms=0.01).encode(w)
        out = decode(enc, shape, dtype)
        assert out.shape == tuple(shape) and out.dtype == np.dtype(dtype)
        if w.size:
            assert rel_rms(w, out) <= 0.011  # float16 output rounding adds a little
    z = np.zeros((4, 5), np.float32)
    assert np.array_equal(decode(EPR().encode(z), z.shape), z)


def test_extreme_magnitudes():
    for w in (np.array([3e38, -3e38, 1.0], np.float32), np.array([1e-40, -2e-41, 0.0], np.float32),
              np.array([1e-30, 5e-31], np.float32)):
        enc = EPR(max_rel_rms=0.01).encode(w)
        out = decode(enc, w.shape)
        assert np.all(np.isfinite(out))
        if np.abs(w).max() > 1e-37:
            assert rel_rms(w, out) <= 0.01


def test_bfloat16_round_trip(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = rng.normal(0, 1, (30,)).astype(ml_dtypes.bfloat16)
    data = squeezefmt.save({"w": w}, preset="epr")
    out = squeezefmt.load(data)["w"]
    assert out.dtype == w.dtype and rel_rms(w.astype(np.float32), out.astype(np.float32)) < 0.03


def test_rejects_bad_input_and_config():
    with pytest.raises(errors.CodecError):
        EPR().encode(np.arange(10))
    with pytest.raises(errors.CodecError):
        EPR().encode(np.array([1.0, np.nan], np.float32))
    with pytest.raises(errors.CodecError):
        EPR(max_rel_rms=0.1, bits_per_weight=2)
    with pytest.raises(errors.CodecError):
        EPR(max_rel_rms=-1)
    with pytest.raises(errors.CodecError):
        EPR(transform="dct")
    for config in ({"bogus": 1}, {"max_rel_rms": "x"}, {"transform": 3}):
        with pytest.raises(errors.StreamError):
            get_codec({"id": "epr", "version": 1, "config": config})
    get_codec({"id": "epr", "version": 2, "config": {}})           # version 2: float32 log-steps
    with pytest.raises(errors.UnknownCodecError):
        get_codec({"id": "epr", "version": 3, "config": {}})
    assert get_codec({"id": "epr", "version": 1, "config": {"bits_per_weight": 2.0}}) == EPR(bits_per_weight=2.0)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=6),
                  elements=st.floats(-100, 100, width=32)).filter(
           lambda a: not a.size or np.max(np.abs(a)) == 0 or np.max(np.abs(a)) >= 1e-34),
       st.sampled_from([0.003, 0.03, 0.3]))
def test_property_round_trip_within_target(w, target):
    # Tensors whose largest magnitude is below ~1e-34 are excluded: the smallest step the encoder
    # searches is exp(MIN_SEARCH_LOG_STEP = -87) ~ 1.6e-38, and a 0.3 % error needs a step of about
    # 1 % of the magnitude (test_extreme_magnitudes covers them: finite output, error in the stats).
    data = squeezefmt.save({"w": w}, codecs={"w": EPR(max_rel_rms=target)})
    out = squeezefmt.load(data)["w"]
    assert out.shape == w.shape and out.dtype == np.float32
    if np.any(w):
        assert rel_rms(w, out) <= target * (1 + 1e-6)


@given(st.binary(max_size=40), st.sampled_from([(4,), (2, 3), (3, 3, 1, 2)]),
       st.sampled_from([{}, {"transform": "rdft", "step_dims": 3}, {"step_dims": 1}]))
def test_fuzz_decoder_raises_only_stream_errors(blob, shape, side):
    spec = TensorSpec("float32", shape)
    try:
        out = EPR().decode([memoryview(blob)], side, spec)
    except errors.StreamError:
        return
    assert out.shape == shape


# -- RDFT --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 3), (5, 5), (3, 4), (4, 3), (1, 5)])
def test_rdft_round_trip_and_orthonormal(rng, hw):
    k = rng.normal(size=(*hw, 3, 2))
    lat = to_rdft(k, dtype=np.float64)
    assert lat.shape == rdft_shape(k.shape)
    np.testing.assert_allclose(from_rdft(lat, hw[1], dtype=np.float64), k, atol=1e-12)
    # orthonormal: the energy of the half spectrum, counting the mirrored bins twice, is preserved
    c = lat[..., 0] + 1j * lat[..., 1]
    w = hw[1]
    weight = np.full(w // 2 + 1, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    np.testing.assert_allclose(np.sum(np.abs(c) ** 2 * weight), np.sum(k ** 2))


def test_from_rdft_chunks_large_io(rng, monkeypatch):
    import squeezefmt.rdft as rdft

    lat = rng.normal(size=(7, 9, 3, 2, 2))
    full = rdft.from_rdft(lat, 3)
    monkeypatch.setattr(rdft, "_CHUNK", 4)
    assert np.array_equal(rdft.from_rdft(lat, 3), full)


# -- presets -----------------------------------------------------------------------------------------

def test_epr_preset_and_named_targets(weights):
    import squeezefmt.presets.epr as sepr

    data = squeezefmt.save(weights, preset="epr")
    with squeezefmt.open(data) as f:
        codecs = {k: f.info(k).codec for k in f.keys()}
        assert f.metadata()["preset"] == "epr"
    assert codecs["conv/kernel"] == codecs["dense/kernel"] == codecs["embed"] == codecs["conv/bias"] == "epr"
    assert codecs["steps"] != "epr"  # integers stay lossless
    name = sepr.preset_name(bits_per_weight=1.5)
    assert name == "epr-bits1.5" and sepr.preset_name(max_rel_rms=0.03) == "epr-rms0.03"
    assert sepr.preset_name() == "epr"
    with pytest.raises(errors.SqueezeError):
        sepr.preset_name(max_rel_rms=0.1, bits_per_weight=1)
    data = squeezefmt.save(weights, preset=name)
    with squeezefmt.open(data) as f:
        assert f.info("dense/kernel").stats["bits_per_weight"] <= 1.5


def test_epr_preset_leaves_batchnorm_and_small_tensors_lossless():
    from squeezefmt.presets.epr import wants_epr
    from squeezefmt.presets import TensorContext

    a = np.ones(64, np.float32)
    assert wants_epr(a, TensorContext("Dense", "bias"))
    assert wants_epr(a, TensorContext())
    assert not wants_epr(a, TensorContext("BatchNormalization", "moving_variance"))
    assert not wants_epr(a, TensorContext(None, "optimizer"))
    assert not wants_epr(np.ones(4, np.float32), TensorContext("Dense", "bias"))
    assert not wants_epr(np.ones(64, np.int32), TensorContext())


# -- frozen vectors ----------------------------------------------------------------------------------

def _vector_files(sub):
    d = os.path.join(EPR_VECTORS, sub)
    return sorted(f for f in os.listdir(d) if f.endswith(".sqz")) if os.path.isdir(d) else []


def test_epr_manifest_matches_files():
    check_manifest(EPR_VECTORS)


@pytest.mark.parametrize("fn", _vector_files("valid"))
def test_epr_valid_vectors(fn):
    path = os.path.join(EPR_VECTORS, "valid", fn)
    expected = np.load(path[:-4] + ".npz", allow_pickle=False)
    with squeezefmt.open(path) as f:
        f.verify()
        for name in f.keys():
            e = f.entry(name)
            spec = TensorSpec(e.dtype, tuple(e.shape))
            q, s, _ = read_latents(f.streams(name)[0], e.side or {}, spec)
            assert np.array_equal(q, expected[f"{name}.q"])
            want_s = expected[f"{name}.s"]                      # float16, or float32 (layout version 2)
            assert s.dtype == want_s.dtype and s.tobytes() == want_s.tobytes()
            got = f.tensor(name)
            assert got.shape == tuple(e.shape) and got.dtype == np.dtype(e.dtype)
            np.testing.assert_allclose(got.astype(np.float64), expected[name], rtol=1e-6, atol=0)


def test_epr_valid_vectors_are_what_this_writer_writes():
    from sqzdev.vectors.epr import build_valid, valid_cases

    for stem, tensors in valid_cases().items():
        arrays, codecs, _ = build_valid(tensors)
        data = squeezefmt.save(arrays, None, codecs=codecs, metadata={"vector": stem}, format_version=(1, 0))
        with open(os.path.join(EPR_VECTORS, "valid", stem + ".sqz"), "rb") as f:
            assert data.replace(squeezefmt.__version__.encode(), b"0.1.0") == f.read(), stem


def test_tfc_vector_file_holds_d16d():
    with squeezefmt.open(os.path.join(EPR_VECTORS, "valid", "v1_epr_tfc_vector.sqz")) as f:
        assert bytes(f.streams("x")[0]) == b"\x00\x00\xd1\x6d"
        assert f.tensor("x").tolist() == [-6.0, 3.0, 0.0, 0.0]


@pytest.mark.parametrize("fn", _vector_files("broken"))
def test_epr_broken_vectors(fn):
    path = os.path.join(EPR_VECTORS, "broken", fn)
    cls = getattr(errors, fn.split("__")[0])
    with pytest.raises(cls):
        squeezefmt.load(path)
    with squeezefmt.open(path) as f:  # the container itself is fine: only the tensor is broken
        assert f.keys() == ["x"]
