"""The arithmetic coder inside quant / cluster / sparse (``coder`` option), the ``compact`` preset and
``info``'s bits per weight."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import squeezefmt
from squeezefmt.codecs import TensorSpec, get_codec
from squeezefmt.codecs.cluster import Cluster
from squeezefmt.codecs.quantize import Quantize
from squeezefmt.codecs.sparse import Sparse
from squeezefmt.errors import StreamError
from squeezefmt.presets import TensorContext


def _weights(shape=(256, 64), seed=0):
    return np.random.default_rng(seed).laplace(0, 0.02, shape).astype(np.float32)


def _round_trip(codec, w):
    enc = codec.encode(w)
    spec = TensorSpec("float32", w.shape)
    return enc, get_codec(codec.describe()).decode([memoryview(s) for s in enc.streams], enc.side, spec)


@pytest.mark.parametrize("make,low_entropy", [
    (lambda c: Quantize(bits=4, coder=c), True), (lambda c: Quantize(bits=6, per_channel=True, coder=c), False),
    (lambda c: Quantize(bits=16, coder=c), False), (lambda c: Cluster(bits=3, coder=c), False),
    (lambda c: Sparse(values=Quantize(bits=4, coder=c), sparsity=0.8), False),
])
def test_coder_option_same_values_smaller_stream(make, low_entropy):
    w = _weights()
    enc_h, back_h = _round_trip(make("huffman"), w)
    enc_c, back_c = _round_trip(make("cabac"), w)
    enc_a, back_a = _round_trip(make("auto"), w)
    assert np.array_equal(back_h, back_c) and np.array_equal(back_h, back_a)
    size = lambda e: sum(len(s) for s in e.streams)  # noqa: E731
    assert size(enc_a) == min(size(enc_h), size(enc_c))
    if low_entropy:     # skewed 3/4-bit indices: under Huffman's 1 bit/symbol floor
        assert size(enc_c) < size(enc_h)


def test_default_config_unchanged():
    assert Quantize(bits=4).get_config() == {"bits": 4, "per_channel": False, "axis": -1}
    assert "coder" not in Cluster(bits=3).get_config()
    assert Quantize(bits=4, coder="auto").get_config()["coder"] == "auto"
    with pytest.raises(StreamError):
        Quantize(bits=4, coder="zstd")


def test_bad_coder_side_rejected():
    w = _weights((64, 16))
    enc = Quantize(bits=4, coder="cabac").encode(w)
    spec = TensorSpec("float32", w.shape)
    for side in ({"coder": "lzma"}, {"coder": "cabac", "center": 99}, {"coder": "cabac"},
                 {"center": 3}, {"coder": "cabac", "center": 7, "x": 1}):
        with pytest.raises(StreamError):
            Quantize(bits=4).decode(enc.streams, side, spec)


def test_compact_preset_kernels_lossy_rest_exact():
    from squeezefmt.presets.compact import rel_step

    rng = np.random.default_rng(1)
    arrays = {"fc/kernel": rng.normal(0, 0.05, (512, 256)).astype(np.float32),
              "fc/bias": rng.normal(0, 0.01, 256).astype(np.float32),
              "bn/gamma": rng.normal(1, 0.1, 256).astype(np.float32)}
    ctx = {"fc/kernel": TensorContext("Dense", "kernel"), "fc/bias": TensorContext("Dense", "bias"),
           "bn/gamma": TensorContext("BatchNormalization", "gamma")}
    data = squeezefmt.save(arrays, None, preset="compact", contexts=ctx)
    with squeezefmt.open(data) as f:
        assert f.info("fc/kernel").codec == "cabac"
        for name in ("fc/bias", "bn/gamma"):
            assert np.array_equal(f.tensor(name), arrays[name])
        k = f.tensor("fc/kernel")
        rel = np.sqrt(np.mean((k - arrays["fc/kernel"]) ** 2) / np.mean(arrays["fc/kernel"] ** 2))
        assert rel < rel_step(k.size) / np.sqrt(12) * 1.5
        assert len(data) < arrays["fc/kernel"].nbytes / 10
    assert rel_step(368_640) == pytest.approx(1.6) and rel_step(1000) < rel_step(100_000)
    coarse = squeezefmt.save(arrays, None, preset="compact-x2", contexts=ctx)
    assert len(coarse) < len(data)


def test_info_bits_per_weight(tmp_path):
    from squeezefmt.cli import main

    path = tmp_path / "c.sqz"
    w = _weights((128, 128))
    squeezefmt.save({"w": w}, str(path), codecs={"w": Quantize(bits=4, coder="cabac")})
    res = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    row = d["tensors"][0]
    assert row["bits_per_weight"] == pytest.approx(8 * (row["stored_bytes"] + row["side_bytes"]) / w.size, abs=1e-3)
    assert d["totals"]["bits_per_weight"] == pytest.approx(8 * d["file_bytes"] / w.size, abs=1e-3)
    assert "bits/w" in CliRunner().invoke(main, ["info", str(path)]).output


def test_epr_latents_recoded_losslessly_with_cabac():
    from squeezefmt.codecs.epr import EPRLatents, read_latents

    rng = np.random.default_rng(5)
    q = np.rint(rng.standard_t(1.5, (64, 32)) * 0.4).astype(np.int32)
    s = np.float16(-4.0)
    shape = TensorSpec("float32", (64, 32))
    gamma_enc = EPRLatents(q, s).encode()[1]
    assert gamma_enc.side == {}                    # the default stays tfc's gamma code
    enc = EPRLatents(q, s, coder="cabac").encode()[1]
    assert enc.side == {"coder": "cabac"}
    q2, s2, _ = read_latents(enc.streams[0], enc.side, shape)
    assert np.array_equal(q2, q) and s2 == s
    assert len(enc.streams[0]) < len(gamma_enc.streams[0])
    auto = EPRLatents(q, s, coder="auto").encode()[1]
    assert len(auto.streams[0]) == min(len(enc.streams[0]), len(gamma_enc.streams[0]))
    with pytest.raises(StreamError):
        read_latents(enc.streams[0], {"coder": "huffman"}, shape)
    data = squeezefmt.save({"w": EPRLatents(q, s, coder="cabac")})
    with squeezefmt.open(data) as f:
        assert f.entry("w").side == {"coder": "cabac"}
        assert np.array_equal(f.tensor("w"), EPRLatents(q, s).dense())
