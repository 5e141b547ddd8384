"""``quant``: uniform scalar quantization -- error bounds, exact zeros, per-channel scales, hostile streams."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.quantize import Quantize, grid
from squeezefmt.dtypes import dtype_name


def roundtrip(codec, array):
    enc = codec.encode(array)
    out = codec.decode([memoryview(s) for s in enc.streams], enc.side, TensorSpec(dtype_name(array.dtype), array.shape))
    return enc, out


def test_interface_contract():
    """The signature the federated-delta code relies on."""
    q = Quantize()
    assert (q.codec_id, q.lossless, q.bits, q.per_channel, q.axis) == ("quant", False, 8, False, -1)
    q = Quantize(bits=4, per_channel=True, axis=0)
    assert q.get_config() == {"bits": 4, "per_channel": True, "axis": 0}
    assert get_codec(q.describe()) == q
    enc = q.encode(np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))
    assert set(enc.stats) == {"max_abs_err", "rel_rms_err"}


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8, 16])
@pytest.mark.parametrize("per_channel", [False, True])
def test_error_bound_and_exact_zero(bits, per_channel, rng):
    w = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    w[np.abs(w) < 0.02] = 0.0
    enc, out = roundtrip(Quantize(bits, per_channel), w)
    assert out.dtype == np.float32 and out.shape == w.shape
    assert np.all(out[w == 0] == 0)                          # pruned weights stay exactly zero
    if bits >= 2:
        lo = np.minimum(w.min(axis=0 if per_channel else None), 0)
        hi = np.maximum(w.max(axis=0 if per_channel else None), 0)
        bound = np.max((hi - lo) / ((1 << bits) - 2)) / 2  # step <= span / (qmax - 1) after the zero nudge
        assert np.abs(out - w).max() <= bound * 1.0001 + 2e-7 * np.abs(w).max()  # + float32 rounding
    assert enc.stats["max_abs_err"] == pytest.approx(float(np.abs(out.astype(np.float64) - w).max()))


def test_more_bits_less_error(rng):
    w = rng.standard_t(4, (128, 64)).astype(np.float32) * 0.03
    errs = [roundtrip(Quantize(b), w)[0].stats["rel_rms_err"] for b in (2, 4, 6, 8)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.03  # min/max range: heavy tails cost


def test_per_channel_helps_when_channels_differ(rng):
    w = rng.normal(0, 1, (128, 16)).astype(np.float32) * np.logspace(-3, 0, 16, dtype=np.float32)
    per_tensor = roundtrip(Quantize(6), w)[0].stats["rel_rms_err"]
    per_chan = roundtrip(Quantize(6, per_channel=True), w)[0].stats["rel_rms_err"]
    # small channels are wiped out by one tensor-wide step
    small = w[:, :4]
    out_pt = roundtrip(Quantize(6), w)[1][:, :4]
    out_pc = roundtrip(Quantize(6, per_channel=True), w)[1][:, :4]
    assert np.abs(out_pc - small).max() < np.abs(out_pt - small).max() / 10
    assert per_chan <= per_tensor


def test_axis_selects_channels(rng):
    w = rng.normal(size=(3, 3, 4, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    for axis in (0, 2, -1, 3, -4):
        enc, out = roundtrip(Quantize(8, per_channel=True, axis=axis), w)
        assert len(enc.streams[0]) > 5 * w.shape[axis]
        assert enc.stats["rel_rms_err"] < 0.01
    with pytest.raises(errors.StreamError, match="axis"):
        Quantize(8, per_channel=True, axis=4).encode(w)


def test_huffman_beats_fixed_width(rng):
    w = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    enc, _ = roundtrip(Quantize(8), w)
    bits_per_weight = 8 * len(enc.streams[0]) / w.size
    assert bits_per_weight < 7.0, bits_per_weight


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(dtype, rng):
    w = rng.normal(0, 1, (40, 7)).astype(dtype)
    enc, out = roundtrip(Quantize(8, per_channel=True), w)
    assert out.dtype == dtype
    assert enc.stats["rel_rms_err"] < 0.01


def test_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = np.random.default_rng(3).normal(0, 1, (50,)).astype(ml_dtypes.bfloat16)
    enc, out = roundtrip(Quantize(8), w)
    assert out.dtype == w.dtype and enc.stats["rel_rms_err"] < 0.02


def test_edge_shapes():
    for w in (np.zeros((0, 3), np.float32), np.float32(2.5).reshape(()), np.zeros((5, 5), np.float32),
              np.full((4, 4), -3.0, np.float32), np.array([1e-30, -1e-30], np.float32)):
        for pc in (False, True):
            enc, out = roundtrip(Quantize(4, per_channel=pc), w)
            assert out.shape == w.shape
            assert np.allclose(out, w, atol=np.abs(w).max(initial=0) / 7 + 1e-45)
    enc, out = roundtrip(Quantize(8), np.full((4, 4), -3.0, np.float32))
    assert np.all(out == -3.0)


def test_rejects_what_it_cannot_quantize():
    with pytest.raises(errors.CodecError, match="NaN"):
        Quantize().encode(np.array([1.0, np.nan], np.float32))
    with pytest.raises(errors.CodecError, match="float"):
        Quantize().encode(np.arange(10, dtype=np.int32))
    for bad in ({"bits": 9}, {"bits": 0}, {"bits": True}, {"per_channel": 1}, {"axis": "x"}, {"nonsense": 1}):
        with pytest.raises(errors.StreamError):
            get_codec({"id": "quant", "version": 1, "config": bad})


@given(data=st.data())
def test_property_round_trip(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7))
    w = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e4, 1e4, width=32)))
    bits = data.draw(st.sampled_from([2, 3, 5, 8]))
    pc = data.draw(st.booleans())
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    enc, out = roundtrip(Quantize(bits, pc, axis), w)
    assert out.shape == w.shape and out.dtype == w.dtype
    assert np.all(out[w == 0] == 0)
    span = float(max(w.max(), 0) - min(w.min(), 0))
    assert np.abs(out.astype(np.float64) - w).max() <= span / ((1 << bits) - 2) / 2 * 1.001 + 2e-7 * span


def test_grid_covers_range():
    step, zp = grid(np.array([-1.0, 0.0, -2.0]), np.array([3.0, 1.0, 0.0]), 8)
    assert zp.tolist()[1] == 0 and zp.tolist()[2] == 255
    assert np.all(step * (255 - zp) >= np.array([3.0, 1.0, 0.0]))
    assert np.all(step * zp >= np.array([1.0, 0.0, 2.0]))


# -- hostile streams ---------------------------------------------------------------------------

def _encoded(rng, pc=False):
    w = rng.normal(0, 1, (16, 4)).astype(np.float32)
    q = Quantize(4, per_channel=pc)
    return q, q.encode(w), TensorSpec("float32", (16, 4))


def test_hostile_streams(rng):
    q, enc, spec = _encoded(rng, pc=True)
    s = enc.streams[0]
    bad = {
        "truncated params": s[:10],
        "no payload": s[:4 * 4 + 4],
        "truncated payload": s[:-1],
        "trailing garbage": s + b"\x00\x01",
        "nan step": np.float32(np.nan).tobytes() + s[4:],
        "negative step": np.float32(-1).tobytes() + s[4:],
        "zero point past qmax": s[:16] + bytes([200]) + s[17:],
    }
    for what, stream in bad.items():
        with pytest.raises(errors.StreamError):
            q.decode([memoryview(stream)], {}, spec)
    with pytest.raises(errors.StreamError):
        q.decode([memoryview(s), memoryview(s)], {}, spec)
    with pytest.raises(errors.StreamError, match="float"):
        q.decode([memoryview(s)], {}, TensorSpec("int32", (16, 4)))
    with pytest.raises(errors.StreamError):
        q.decode([memoryview(s)], {}, TensorSpec("float32", (16, 5)))


def test_index_outside_channel_range(rng):
    """Per-channel symbols are shifted to align zero points; a symbol outside a channel's range is refused."""
    from squeezefmt.entropy import huffman

    q = Quantize(2, per_channel=True)
    zps = bytes([0, 3])                      # channel 0: zp 0, channel 1: zp 3 -> shift 3 and 0
    params = np.float32([1, 1]).tobytes() + zps
    sym = np.array([6, 0], np.uint8)         # channel 0 symbol 6 -> q = 3 (ok); channel 1 symbol 0 -> q = 0 (ok)
    ok = q.decode([memoryview(params + huffman.encode(sym, alphabet_size=7))], {}, TensorSpec("float32", (1, 2)))
    assert ok.tolist() == [[3.0, -3.0]]
    sym = np.array([0, 6], np.uint8)         # channel 0 symbol 0 -> q = -3: invalid
    with pytest.raises(errors.StreamError, match="outside"):
        q.decode([memoryview(params + huffman.encode(sym, alphabet_size=7))], {}, TensorSpec("float32", (1, 2)))


def test_in_container(rng):
    w = rng.normal(0, 0.1, (64, 64)).astype(np.float32)
    data = squeezefmt.save({"w": w}, codecs={"w": Quantize(6, per_channel=True)})
    with squeezefmt.open(data) as f:
        info = f.info("w")
        assert info.codec == "quant" and info.stats["rel_rms_err"] < 0.05
        assert np.abs(f.tensor("w") - w).max() <= info.stats["max_abs_err"] + 1e-9
        f.verify()
