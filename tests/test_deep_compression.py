"""Planner and CLI for pruned / clustered weights: lossless detection, lossy presets, --prune/--cluster/--quantize."""
from __future__ import annotations

import json

import numpy as np
import pytest

import squeezefmt
from squeezefmt import errors
from squeezefmt.codecs.bytegroup import ByteGroup
from squeezefmt.codecs.cluster import Cluster
from squeezefmt.codecs.raw import Raw
from squeezefmt.codecs.sparse import Sparse
from squeezefmt.encode import plan_and_encode
from squeezefmt.presets import PRESETS, Choice, TensorContext, compression_policy, custom_preset, structured_candidates


def pruned(rng, shape, sparsity):
    w = rng.normal(0, 0.05, shape).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0.0
    return w


def clustered(rng, shape, k=16):
    book = np.sort(rng.normal(0, 0.05, k)).astype(np.float32)
    p = np.exp(-0.5 * ((np.arange(k) - (k - 1) / 2) / (k / 5)) ** 2)
    return book[rng.choice(k, shape, p=p / p.sum())]


def codecs_of(data):
    with squeezefmt.open(data) as f:
        return {k: f.info(k) for k in f.keys()}


def test_lossless_preset_detects_pruned_and_clustered(rng):
    sp = pruned(rng, (256, 128), 0.9)
    cl = clustered(rng, (256, 128))
    both = np.where(rng.random((256, 128)) < 0.85, np.float32(0), cl)
    arrays = {"sparse": sp, "clustered": cl, "both": both, "dense": rng.normal(size=(256, 128)).astype(np.float32),
              "bias": np.zeros(10, np.float32), "int_palette": rng.integers(0, 5, (64, 64)).astype(np.int32)}
    data = squeezefmt.save(arrays)
    info = codecs_of(data)
    assert info["sparse"].codec == "sparse" and info["sparse"].ratio > 8
    assert info["clustered"].codec == "cluster" and info["clustered"].ratio > 8.5
    assert info["both"].codec == "sparse" and info["both"].codec_config["values"]["id"] == "cluster"
    assert info["dense"].codec == "bytegroup"
    assert info["bias"].codec == "raw"
    assert info["int_palette"].codec == "cluster"
    back = squeezefmt.load(data)
    for k, a in arrays.items():
        assert back[k].tobytes() == a.tobytes(), k


def test_detection_only_when_smaller(rng):
    few_zeros = rng.normal(size=(64, 64)).astype(np.float32)
    few_zeros[:, :16] = 0                            # 25 % zeros: candidate, but must win on size to be used
    cands = structured_candidates(few_zeros, ByteGroup())
    assert [type(c).__name__ for c in cands] == ["Sparse"]
    choice = Choice([ByteGroup(), *cands])
    enc = choice.encode(few_zeros)
    costs = {type(c).__name__: sum(len(s) for s in c.encode(few_zeros).streams) for c in choice.candidates}
    assert choice.describe()["id"] == ("sparse" if costs["Sparse"] < costs["ByteGroup"] else "bytegroup")
    assert enc.streams
    assert structured_candidates(np.zeros(8, np.float32), Raw()) == []     # too small to bother


def test_choice_describes_first_candidate_before_encoding():
    c = Choice([ByteGroup(level=3), Sparse()])
    assert c.describe() == ByteGroup(level=3).describe() and c.lossless
    assert not Choice([ByteGroup(), Cluster(4)]).lossless


def test_never_expands(rng):
    noise = rng.integers(0, 256, 4096).astype(np.uint8)
    noise[::3] = 0
    data = squeezefmt.save({"n": noise})
    assert codecs_of(data)["n"].stored_bytes <= noise.nbytes


def test_deep_compression_preset(rng):
    arrays = {
        "dense/kernel": rng.normal(0, 0.05, (300, 100)).astype(np.float32),
        "conv/kernel": rng.normal(0, 0.1, (5, 5, 8, 16)).astype(np.float32),
        "pruned/kernel": pruned(rng, (300, 100), 0.9),
        "dense/bias": rng.normal(0, 0.01, (100,)).astype(np.float32),
    }
    ctx = {"dense/kernel": TensorContext("Dense", "kernel"), "conv/kernel": TensorContext("Conv2D", "kernel"),
           "pruned/kernel": TensorContext("Dense", "kernel"), "dense/bias": TensorContext("Dense", "bias")}
    data = squeezefmt.save(arrays, preset="deep-compression", contexts=ctx)
    info = codecs_of(data)
    assert info["dense/kernel"].codec == "cluster" and info["dense/kernel"].codec_config["bits"] == 5
    assert info["conv/kernel"].codec == "cluster" and info["conv/kernel"].codec_config["bits"] == 8
    assert info["pruned/kernel"].codec == "sparse"
    assert info["dense/bias"].codec in ("bytegroup", "raw")
    back = squeezefmt.load(data)
    assert back["dense/bias"].tobytes() == arrays["dense/bias"].tobytes()
    assert np.array_equal(back["pruned/kernel"] == 0, arrays["pruned/kernel"] == 0)
    assert np.unique(back["dense/kernel"]).size <= 32


def test_deep_compression_preset_is_exact_on_a_deep_compressed_model(rng):
    w = np.where(rng.random((300, 100)) < 0.92, np.float32(0), clustered(rng, (300, 100), 32))
    data = squeezefmt.save({"k": w}, preset="deep-compression", contexts={"k": TensorContext("Dense", "kernel")})
    assert squeezefmt.load(data)["k"].tobytes() == w.tobytes()
    assert w.nbytes / codecs_of(data)["k"].stored_bytes > 35   # 8 % density, 32 bell-shaped values


def test_custom_policy_options(rng):
    w = rng.normal(0, 0.05, (200, 100)).astype(np.float32)
    b = rng.normal(0, 0.01, (100,)).astype(np.float32)
    ctx = {"k": TensorContext("Dense", "kernel"), "b": TensorContext("Dense", "bias")}
    for opts, codec in (({"prune": 0.8}, "sparse"), ({"prune": 0.8, "cluster": 4}, "sparse"),
                        ({"cluster": 3}, "cluster"), ({"quantize": 8, "per_channel": True}, "quant")):
        name = custom_preset(**opts)
        assert name in PRESETS and name == custom_preset(**opts)
        data = squeezefmt.save({"k": w, "b": b}, preset=name, contexts=ctx)
        info = codecs_of(data)
        assert info["k"].codec == codec and info["b"].codec in ("bytegroup", "raw")
        out = squeezefmt.load(data)
        assert out["b"].tobytes() == b.tobytes()
        if "prune" in opts:
            assert (out["k"] == 0).mean() == pytest.approx(0.8, abs=1e-3)
            if "cluster" in opts:
                assert info["k"].codec_config["values"]["id"] == "cluster"
    with pytest.raises(errors.SqueezeError):
        compression_policy(cluster=4, quantize=8)
    with pytest.raises(errors.SqueezeError):
        compression_policy(prune=1.5)


def test_without_context_kernels_are_the_matrices(rng):
    name = custom_preset(cluster=2)
    pend = plan_and_encode({"m": rng.normal(size=(32, 16)).astype(np.float32),
                            "v": rng.normal(size=(512,)).astype(np.float32)}, preset_name=name)
    assert [p.codec["id"] for p in pend] == ["cluster", "bytegroup"]


# -- command line (weights-only .h5 written with h5py: no TensorFlow needed) --------------------

@pytest.fixture
def weights_h5(tmp_path, rng):
    pytest.importorskip("h5py")
    from squeezefmt.keras.formats.h5 import write_h5

    arrays = {"fc1/fc1/kernel:0": pruned(rng, (784, 300), 0.9), "fc1/fc1/bias:0": rng.normal(0, .01, 300).astype(np.float32),
              "fc2/fc2/kernel:0": rng.normal(0, .05, (300, 10)).astype(np.float32),
              "fc2/fc2/bias:0": np.zeros(10, np.float32)}
    meta = {"kind": "weights", "layers": [
        {"name": "fc1", "weights": [{"name": "fc1/kernel:0", "tensor": "fc1/fc1/kernel:0"},
                                    {"name": "fc1/bias:0", "tensor": "fc1/fc1/bias:0"}]},
        {"name": "fc2", "weights": [{"name": "fc2/kernel:0", "tensor": "fc2/fc2/kernel:0"},
                                    {"name": "fc2/bias:0", "tensor": "fc2/fc2/bias:0"}]}]}
    path = tmp_path / "w.h5"
    write_h5(path, meta, arrays)
    return path, arrays


def test_cli_options(weights_h5, tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    path, arrays = weights_h5
    runner = CliRunner()
    sizes = {}
    for args in ([], ["--preset", "deep-compression"], ["--prune", "0.95", "--cluster", "4"],
                 ["--quantize", "6", "--per-channel"], ["--prune", "0.5"]):
        out = tmp_path / "o.sqz"
        res = runner.invoke(main, ["pack", str(path), str(out), "-q", *args])
        assert res.exit_code == 0, res.output
        sizes[" ".join(args)] = out.stat().st_size
        res = runner.invoke(main, ["info", str(out), "--json"])
        d = json.loads(res.output)
        kinds = {t["name"]: t["codec"] for t in d["tensors"]}
        assert kinds["fc1/fc1/kernel:0"] == "sparse"
        back = squeezefmt.load(out)
        assert back["fc1/fc1/bias:0"].tobytes() == arrays["fc1/fc1/bias:0"].tobytes()
        if not args:
            assert back["fc1/fc1/kernel:0"].tobytes() == arrays["fc1/fc1/kernel:0"].tobytes()
        if args[:1] == ["--quantize"]:
            assert kinds["fc2/fc2/kernel:0"] == "quant"
            assert d["packing"]["preset"].startswith("custom:")
    assert sizes["--prune 0.95 --cluster 4"] < sizes["--preset deep-compression"] < sizes[""]
    for bad in (["--cluster", "3", "--quantize", "4"], ["--per-channel"], ["--quantize", "12"]):
        res = runner.invoke(main, ["pack", str(path), str(tmp_path / "x.sqz"), "-q", *bad])
        assert res.exit_code == 1 and "error" in res.output
    res = runner.invoke(main, ["pack", str(path), str(tmp_path / "x.sqz"), "--prune", "1.5"])
    assert res.exit_code == 2
