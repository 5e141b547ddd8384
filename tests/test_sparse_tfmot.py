"""tensorflow-model-optimization interop: pruned (PolynomialDecay) and clustered models, stripped and saved
as .h5, pack to the size their sparsity / cluster count implies and load back with identical predictions."""
from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfmot = pytest.importorskip("tensorflow_model_optimization")

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]  # trains pruned / clustered models

X = np.random.default_rng(0).normal(size=(256, 64)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 10, 256)


def base_model():
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.Input((64,)),
        tf.keras.layers.Dense(256, activation="relu"),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10),
    ])


def loss():
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def pruned_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfmot_prune")
    out = {}
    for sparsity in (0.5, 0.9):
        schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity,
                                                        begin_step=0, end_step=6, frequency=1)
        model = tfmot.sparsity.keras.prune_low_magnitude(base_model(), pruning_schedule=schedule)
        model.compile("adam", loss())
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        stripped = tfmot.sparsity.keras.strip_pruning(model)
        path = d / f"pruned{int(sparsity * 100)}.h5"
        stripped.save(path, include_optimizer=False)
        out[sparsity] = (path, stripped.predict(X, verbose=0), stripped)
    return out


def test_pruned_models_pack_to_their_sparsity(pruned_files, tmp_path):
    sizes, kernels = {}, {}
    for sparsity, (path, ref, stripped) in pruned_files.items():
        kernel = stripped.layers[0].kernel.numpy()
        assert (kernel == 0).mean() == pytest.approx(sparsity, abs=0.01)
        assert np.signbit(kernel[kernel == 0]).any()      # strip_pruning leaves -0.0 (weight * 0)
        target = tmp_path / f"{sparsity}.sqz"
        sk.pack(path, target)
        with squeezefmt.open(target) as f:
            for name in f.keys():
                if name.endswith("kernel:0") and f.info(name).nbytes > 10000:
                    assert f.info(name).codec == "sparse", name
            kernels[sparsity] = sum(f.info(n).stored_bytes for n in f.keys() if n.endswith("kernel:0"))
        sizes[sparsity] = os.path.getsize(target)
        loaded = sk.load(target)
        assert np.array_equal(loaded.predict(X, verbose=0), ref)           # identical predictions
        for a, b in zip(loaded.get_weights(), stripped.get_weights()):
            assert a.tobytes() == b.tobytes()                            # bit-exact, signs of zeros included
        if sparsity == 0.9:
            assert os.path.getsize(path) > 4 * sizes[sparsity]
    assert kernels[0.5] > 3 * kernels[0.9], kernels
    assert sizes[0.5] > 2.5 * sizes[0.9], sizes
    h5 = {s: os.path.getsize(p) for s, (p, _, _) in pruned_files.items()}
    assert abs(h5[0.5] - h5[0.9]) < 0.01 * h5[0.5]                     # the .h5 files do not shrink at all


def test_clustered_model_packs_losslessly(tmp_path):
    cw = tfmot.clustering.keras
    model = cw.cluster_weights(base_model(), number_of_clusters=16,
                               cluster_centroids_init=cw.CentroidInitialization.KMEANS_PLUS_PLUS)
    model.compile("adam", loss())
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    stripped = cw.strip_clustering(model)
    path = tmp_path / "clustered.h5"
    stripped.save(path, include_optimizer=False)
    ref = stripped.predict(X, verbose=0)
    target = tmp_path / "clustered.sqz"
    sk.pack(path, target)
    with squeezefmt.open(target) as f:
        for name in f.keys():
            info = f.info(name)
            if name.endswith("kernel:0") and info.nbytes > 10000:
                assert info.codec == "cluster" and info.codec_config["exact"], name
                assert info.ratio > 7.5, (name, info.ratio)                  # <= 4 bits of index per weight
    loaded = sk.load(target)
    assert np.array_equal(loaded.predict(X, verbose=0), ref)
