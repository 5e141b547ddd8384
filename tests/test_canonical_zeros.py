"""``--canonical-zeros``: -0.0 -> +0.0 before encoding, recorded in the metadata; on tfmot-pruned models
the 90 % file drops to <= 1/3 of the 50 % one with identical predictions; lossless stays bit-exact."""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

import squeezefmt
import squeezefmt.cli
from squeezefmt.presets import canonical_zeros as preset_default
from squeezefmt.presets import set_canonical_zeros as set_preset_default
from squeezefmt.zeros import canonicalize


def test_canonicalize_flips_only_negative_zeros():
    a = np.array([0.0, -0.0, 1.0, -1.0, np.nan, -np.inf, 5e-45, -5e-45], np.float32)
    for dtype in (np.float16, np.float32, np.float64):
        want = a.astype(dtype)                                     # float16: -5e-45 underflows to -0.0
        negzero = (want == 0) & np.signbit(want)
        b, n = canonicalize(want)
        assert n == negzero.sum() >= 1 and b.dtype == dtype and not np.signbit(b[want == 0]).any()
        assert b[~negzero].tobytes() == want[~negzero].tobytes()  # every other bit pattern untouched
    ints = np.array([0, -1, 5], np.int32)
    assert canonicalize(ints) == (ints, 0)


def test_presets_choose_it_and_the_metadata_records_it():
    w = np.where(np.arange(400).reshape(20, 20) % 3 == 0, -0.0, np.linspace(-1, 1, 400).reshape(20, 20))
    w = w.astype(np.float32)
    assert not preset_default("lossless") and preset_default("deep-compression") and preset_default("compact")
    with squeezefmt.open(squeezefmt.save({"w": w})) as f:                    # lossless: bit-exact
        assert f.tensor("w").tobytes() == w.tobytes() and "canonical_zeros" not in f.metadata()
    with squeezefmt.open(squeezefmt.save({"w": w}, canonical_zeros=True)) as f:
        assert f.metadata()["canonical_zeros"] == {"zeros": 134, "tensors": 1}
        assert not np.signbit(f.tensor("w")[w == 0]).any()
        assert np.array_equal(f.tensor("w"), w)                               # equal as numbers
    with squeezefmt.open(squeezefmt.save({"w": w}, preset="deep-compression", canonical_zeros=False)) as f:
        assert "canonical_zeros" not in f.metadata()
    set_preset_default("fast")
    try:
        with squeezefmt.open(squeezefmt.save({"w": w}, preset="fast")) as f:
            assert f.metadata()["canonical_zeros"]["zeros"] == 134
    finally:
        set_preset_default("fast", False)


tf = pytest.importorskip("tensorflow")
tfmot = pytest.importorskip("tensorflow_model_optimization")
import squeezefmt.keras as sk  # noqa: E402

X = np.random.default_rng(0).normal(size=(256, 64)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 10, 256)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfmot_zeros")
    out = {}
    for sparsity in (0.5, 0.9):
        tf.keras.utils.set_random_seed(0)
        base = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(256, activation="relu"),
                                    tf.keras.layers.Dense(128, activation="relu"), tf.keras.layers.Dense(10)])
        schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                        begin_step=0, end_step=6, frequency=1)
        model = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
        model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        stripped = tfmot.sparsity.keras.strip_pruning(model)
        path = d / f"pruned{int(sparsity * 100)}.h5"
        stripped.save(path, include_optimizer=False)
        out[sparsity] = (path, stripped.predict(X, verbose=0))
    return out


@pytest.mark.tf
def test_tfmot_90_percent_is_a_third_of_50_percent(pruned, tmp_path):
    sizes = {}
    for sparsity, (path, ref) in pruned.items():
        target = tmp_path / f"{sparsity}.sqz"
        result = CliRunner().invoke(squeezefmt.cli.main, ["pack", str(path), str(target), "--canonical-zeros", "-q"])
        assert result.exit_code == 0, result.output
        sizes[sparsity] = os.path.getsize(target)
        loaded = sk.load(target)
        assert np.array_equal(loaded.predict(X, verbose=0), ref)           # identical predictions
        with squeezefmt.open(target) as f:
            assert f.metadata()["canonical_zeros"]["zeros"] > 0
            for name in f.keys():
                assert not np.signbit(f.tensor(name)[f.tensor(name) == 0]).any()
        kept = sk.pack(path)                                               # lossless default keeps the signs
        assert len(kept) > sizes[sparsity]
    assert 3 * sizes[0.9] <= sizes[0.5], sizes
