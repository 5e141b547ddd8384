"""The ``cabac`` codec (RDO-quantized, arithmetic-coded weights): frozen vectors, round trips,
error statistics, side-information validation."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.cabac_quant import CabacQuant, compact_steps
from squeezefmt.errors import CodecError, StreamError
from sqzdev.harness import check_manifest

VECTORS = os.path.join(os.path.dirname(__file__), "..", "spec", "vectors", "cabac")


def _files(sub):
    return sorted(f for f in os.listdir(os.path.join(VECTORS, sub)) if f.endswith(".sqz"))


def test_manifest_matches_files():
    check_manifest(VECTORS)


@pytest.mark.parametrize("fn", _files("valid"))
def test_valid_vectors(fn):
    path = os.path.join(VECTORS, "valid", fn)
    expected = np.load(path[:-4] + ".npz", allow_pickle=False)
    with squeezefmt.open(path) as f:
        f.verify()
        for name in f.keys():
            got = f.tensor(name)
            assert got.dtype == expected[name].dtype and got.shape == expected[name].shape
            assert np.array_equal(got.reshape(-1).view(np.uint8), expected[name].reshape(-1).view(np.uint8))
            e = f.entry(name)
            codec = get_codec(e.codec)
            step_bytes = {"f16": 2, "f32": 4}[e.side["steps"]]
            channels = 1 if "axis" not in e.side else e.shape[e.side["axis"]]
            from squeezefmt.entropy import cabac
            q = cabac.decode(bytes(f.streams(name)[0])[channels * step_bytes:], int(np.prod(e.shape)))
            assert np.array_equal(q, expected[name + ".q"].reshape(-1))
            assert codec.codec_id == "cabac"


@pytest.mark.parametrize("fn", _files("broken"))
def test_broken_vectors_raise_stream_error(fn):
    with squeezefmt.open(os.path.join(VECTORS, "broken", fn)) as f:
        with pytest.raises(StreamError):
            f.tensor(f.keys()[0])


floats = hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
                    elements=st.floats(-2, 2, width=32))


@settings(max_examples=60, deadline=None)
@given(floats, st.sampled_from([0.01, 0.1, 0.5]), st.sampled_from([0.0, 0.1, 0.5]), st.booleans())
def test_round_trip_error_bound(w, step, lam, per_channel):
    codec = CabacQuant(step=step, lam=lam, per_channel=per_channel)
    enc = codec.encode(w)
    back = codec.decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec("float32", w.shape))
    stored = float(compact_steps(np.array([step]))[0][0])
    err = np.abs(back.astype(np.float64) - w)
    if lam == 0:
        assert err.max() <= stored / 2 * (1 + 1e-6) + 1e-7
    else:   # RDO keeps the rounding, moves one step toward zero, or goes to zero
        moved = back.astype(np.float64) != 0
        assert np.all(err[moved] <= 1.5 * stored * (1 + 1e-6) + 1e-7)
        assert np.all(np.abs(back.astype(np.float64)) <= np.abs(w) + stored / 2 * (1 + 1e-6) + 1e-7)
    assert enc.stats["max_abs_err"] == pytest.approx(float(err.max()), rel=1e-6, abs=1e-9)


def test_stats_and_compactness():
    w = np.random.default_rng(0).normal(0, 0.05, (64, 256)).astype(np.float32)
    enc = CabacQuant(rel_step=1.0, lam=0.1).encode(w)
    s = enc.stats
    assert set(s) >= {"max_abs_err", "rel_rms_err", "bits_per_weight", "step", "zeros"}
    assert 0.2 < s["rel_rms_err"] < 0.5 and s["bits_per_weight"] < 2.2
    assert enc.side == {"steps": "f16"}
    assert len(enc.streams[0]) < w.size * 2.2 / 8 + 8


def test_per_channel_steps_and_f32_fallback():
    w = np.random.default_rng(1).normal(0, 1, (10, 4)).astype(np.float32) * np.array([1e-6, 1e-3, 1, 100], np.float32)
    enc = CabacQuant(rel_step=0.1, per_channel=True).encode(w)
    assert enc.side == {"steps": "f32", "axis": 1}         # 1e-7 is below float16's normal range
    back = CabacQuant().decode(enc.streams, enc.side, TensorSpec("float32", w.shape))
    rel = np.sqrt(np.mean((back - w) ** 2, axis=0) / np.mean(w ** 2, axis=0))
    assert np.all(rel < 0.05)


def test_config_validation_and_dtypes():
    for bad in ({"step": -1}, {"step": 0}, {"step": 1, "rel_step": 1}, {"lam": float("nan")}, {"per_channel": 1},
                {"step": True}):
        with pytest.raises(StreamError):
            CabacQuant(**bad)
    with pytest.raises(CodecError):
        CabacQuant(step=0.1).encode(np.arange(10, dtype=np.int32))
    with pytest.raises(CodecError):
        CabacQuant(step=0.1).encode(np.array([1.0, np.inf], np.float32))
    with pytest.raises(CodecError):
        CabacQuant(step=1e-12).encode(np.array([1.0], np.float32))
    c = CabacQuant(rel_step=0.25, per_channel=True, axis=0, lam=0.2, dead_zone=0.5)
    assert get_codec(c.describe()) == c
    for dtype in (np.float16, np.float64):
        w = np.linspace(-1, 1, 50).astype(dtype)
        enc = CabacQuant(step=0.125, lam=0).encode(w)
        back = CabacQuant().decode(enc.streams, enc.side, TensorSpec(np.dtype(dtype).name, w.shape))
        assert back.dtype == dtype and np.max(np.abs(back - w)) <= 0.0625 + 1e-3


def test_dead_zone_zeroes_small_weights():
    w = np.array([0.04, -0.05, 0.2, 0.31], np.float32)
    q = CabacQuant(step=0.1, lam=0, dead_zone=2.5).quantize(w)[0]
    assert q.tolist() == [0, 0, 0, 3]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([{"steps": "f16"}, {"steps": "f32"}, {"steps": "f16", "axis": 0},
                                               {"steps": "f32", "axis": 1}]),
       st.tuples(st.integers(1, 6), st.integers(1, 6)))
def test_garbage_streams_raise_or_decode_to_declared_shape(stream, side, shape):
    """Decoder-level garbage (no container CRC in the way): StreamError, or a tensor of the declared shape."""
    spec = TensorSpec("float32", shape)
    try:
        out = CabacQuant().decode([memoryview(stream)], side, spec)
    except StreamError:
        return
    assert out.shape == shape and out.dtype == np.float32
