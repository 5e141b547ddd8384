"""Lazy Keras models (load(lazy=True)): same predictions as the eager load, one layer decoded at a time."""
from __future__ import annotations

import gc
import json

import numpy as np
import pytest

from sqzdev.harness import randomize_weights

tf = pytest.importorskip("tensorflow")

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt import errors  # noqa: E402
from squeezefmt.keras.compat import is_keras3  # noqa: E402
from squeezefmt.keras.lazy import close, lazy_state  # noqa: E402
from squeezefmt.keras.lazy_schedule import configure  # noqa: E402

pytestmark = pytest.mark.tf
L = tf.keras.layers


randomize = randomize_weights


def holds_no_weights(lazy) -> bool:
    """tf.keras 2: the lazy model has no weight variables; Keras 3: its variables were never initialized
    (no buffer; RNN dropout seed states are not weights and are created as usual)."""
    if not is_keras3():
        return lazy.weights == []
    return all(getattr(v, "_value", None) is None for v in lazy.weights if "seed_generator" not in v.path)


def assert_lazy_matches_eager(data, x, **load_kwargs):
    eager = sk.load(data, **load_kwargs)
    lazy = sk.load(data, lazy=True, **load_kwargs)
    assert holds_no_weights(lazy) and eager.weights
    assert np.array_equal(lazy(x).numpy(), eager(x).numpy())
    assert np.array_equal(lazy.predict(x, batch_size=4, verbose=0), eager.predict(x, batch_size=4, verbose=0))
    stats = lazy_state(lazy).cache.stats()
    assert stats["decodes"] > 0
    return eager, lazy


def test_every_weighted_layer_kind():
    tf.keras.utils.set_random_seed(0)
    inp = L.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same")(inp)
    x = L.BatchNormalization()(x)
    x = L.DepthwiseConv2D(3)(x)
    x = L.SeparableConv2D(6, 3, activation="relu")(x)
    x = L.Reshape((36, 6))(x)
    x = L.LSTM(5, return_sequences=True)(x)
    x = L.GRU(4)(x)
    out = L.Dense(3, activation="softmax")(x)
    model = randomize(tf.keras.Model(inp, out))
    xs = np.random.default_rng(1).normal(size=(10, 10, 10, 3)).astype(np.float32)
    _, lazy = assert_lazy_matches_eager(sk.save(model), xs)
    assert np.allclose(lazy.predict(xs, verbose=0), model.predict(xs, verbose=0), atol=1e-6)
    kinds = {type(layer).__name__ for layer in lazy.layers}
    assert {"Conv2D", "BatchNormalization", "DepthwiseConv2D", "SeparableConv2D", "LSTM", "GRU", "Dense"} <= kinds


def test_embedding_frozen_layer_and_nested_model():
    tf.keras.utils.set_random_seed(1)
    inner = tf.keras.Sequential([L.Dense(8, activation="relu"), L.BatchNormalization(), L.Dense(4)], name="inner")
    inp = L.Input((7,), dtype="int32")
    x = L.Embedding(50, 6)(inp)
    x = L.GRU(8)(x)
    frozen = L.BatchNormalization(name="frozen_bn")
    x = frozen(x)
    out = inner(x)
    model = tf.keras.Model(inp, out)
    frozen.trainable = False  # saved weight order: non-trainable only (gamma, beta, mean, variance)
    randomize(model)
    xs = np.random.default_rng(2).integers(0, 50, size=(9, 7)).astype(np.int32)
    assert_lazy_matches_eager(sk.save(model), xs)


def test_tt_layers_run_lazily_on_their_cores():
    tf.keras.utils.set_random_seed(2)
    model = tf.keras.Sequential([
        L.Input((24,)),
        sk.TTDense(input_dims=[4, 6], output_dims=[3, 4], tt_rank=3, activation="relu"),
        L.Dense(16, name="wide"),
        L.Dense(2, name="out"),
    ])
    randomize(model)
    xs = np.random.default_rng(3).normal(size=(6, 24)).astype(np.float32)
    assert_lazy_matches_eager(sk.save(model), xs)
    # a Dense kernel packed as TT-SVD: lazily a TTDense on the cores, or densified
    from squeezefmt.keras.transforms.tt import tt_svd_codecs  # noqa: PLC0415
    from squeezefmt.keras.model import to_archive  # noqa: PLC0415

    archive = to_archive(model)
    codecs, _ = tt_svd_codecs(archive, max_rank=2, layers=["wide"])
    assert codecs
    data = sk.save(model, codecs=codecs)
    _, lazy = assert_lazy_matches_eager(data, xs)
    assert sum(type(layer).__name__ == "TTDense" for layer in lazy.layers) == 2
    assert_lazy_matches_eager(data, xs, densify=True)


def test_post_training_epr_container():
    tf.keras.utils.set_random_seed(3)
    model = randomize(tf.keras.Sequential([L.Input((6, 6, 2)), L.Conv2D(8, 3), L.Flatten(), L.Dense(5)]))
    xs = np.random.default_rng(4).normal(size=(5, 6, 6, 2)).astype(np.float32)
    data = sk.save(model, preset="epr-rms0.02")
    with squeezefmt.open(data) as f:
        assert any(f.info(t).codec == "epr" for t in f.keys())
    assert_lazy_matches_eager(data, xs)


def deep_mlp(depth=20, width=128, seed=5):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([L.Input((width,))] + [L.Dense(width, activation="tanh") for _ in range(depth)])
    return randomize(model, seed)


def test_lazy_inference_never_holds_all_layers_at_once():
    """Count live decoded bytes: model(x) holds one layer at a time; predict (layer-major, decode of the
    next layer overlapped) at most two, and decodes every layer once per call instead of once per batch."""
    model = deep_mlp()
    data = sk.save(model)
    xs = np.random.default_rng(6).normal(size=(12, 128)).astype(np.float32)
    lazy = sk.load(data, lazy=True)
    cache = lazy_state(lazy).cache
    layer_bytes = 128 * 128 * 4 + 128 * 4
    total = 20 * layer_bytes
    eager = sk.load(data)
    for run, alive in ((lambda m: m.predict(xs, batch_size=4, verbose=0), 2), (lambda m: m(xs).numpy(), 1)):
        cache.reset_peak()
        before = cache.stats()["decodes"]
        out = run(lazy)
        gc.collect()
        stats = cache.stats()
        assert np.array_equal(out, run(eager))
        assert layer_bytes <= stats["peak_live_bytes"] <= alive * layer_bytes < total / 5, stats
        assert stats["live_bytes"] == 0, stats          # nothing decoded survives the call
        assert stats["decodes"] - before == 20          # every layer decoded once per call


def test_decode_cache_keeps_layers_between_batches():
    model = deep_mlp(depth=6, width=32)
    data = sk.save(model)
    xs = np.random.default_rng(7).normal(size=(8, 32)).astype(np.float32)
    lazy = sk.load(data, lazy=True, cache_bytes=1 << 20)
    configure(lazy, enabled=False)  # the per-batch predict path, which the cache is for
    first = lazy.predict(xs, batch_size=4, verbose=0)
    stats = lazy_state(lazy).cache.stats()
    assert stats["decodes"] == 6 and stats["hits"] == 6  # second batch: every layer from the cache
    assert np.array_equal(lazy.predict(xs, batch_size=4, verbose=0), first)
    assert lazy_state(lazy).cache.stats()["decodes"] == 6
    with pytest.raises(ValueError, match="lazy=True only"):
        sk.load(data, cache_bytes=10)


def test_weights_are_not_readable_outside_a_call_and_close_ends_the_model():
    model = deep_mlp(depth=2, width=8)
    lazy = sk.load(sk.save(model), lazy=True)
    with pytest.raises(errors.KerasFormatError, match="only available while the layer runs"):
        lazy.layers[0].kernel.numpy()
    assert getattr(lazy.layers[0].kernel, "numpy", None) is None  # an AttributeError to getattr probes
    close(lazy)
    with pytest.raises(Exception, match="closed"):
        lazy(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="not loaded"):
        lazy_state(model)


def test_a_container_whose_shapes_disagree_with_the_config_is_refused(tmp_path):
    model = deep_mlp(depth=2, width=8)
    data = sk.save(model)
    with squeezefmt.open(data) as f:
        meta = f.metadata()
        arrays = f.tensors()
    config = json.loads(meta["keras"]["model_config"])
    config["config"]["layers"][1]["config"]["units"] = 9  # the config now lies about the first kernel
    meta["keras"]["model_config"] = json.dumps(config)
    bad = squeezefmt.save(arrays, _extra_metadata={"keras": meta["keras"]})
    with pytest.raises(errors.KerasFormatError, match="shape"):
        sk.load(bad, lazy=True)


def test_overlapping_lazy_rebuilds_restore_add_weight():
    """Two lazy rebuilds that overlap (the first ends while the second still runs) leave Keras's own
    add_weight in place afterwards, and each records only what is built inside its scope."""
    from squeezefmt.keras.lazy import recording_add_weight

    original = L.Layer.add_weight  # the class the recorder patches, under tf.keras 2 and Keras 3
    first, second = recording_add_weight(), recording_add_weight()
    first_records = first.__enter__()
    L.Dense(3).build((None, 2))
    second_records = second.__enter__()
    first.__exit__(None, None, None)          # the first load finishes first
    L.Dense(4).build((None, 5))               # built while only the second is rebuilding
    second.__exit__(None, None, None)
    assert L.Layer.add_weight is original
    assert [tuple(r.shape) for r in first_records] == [(2, 3), (3,)]
    assert [tuple(r.shape) for r in second_records] == [(5, 4), (4,)]
    real = L.Dense(2)
    real.build((None, 2))
    assert len(real.weights) == 2              # ordinary variables again
    assert all(np.array_equal(np.asarray(w), np.zeros(w.shape)) for w in real.weights[1:])  # initialized


def test_nested_lazy_rebuild_records_into_its_own_scope():
    """An inner rebuild that records nothing and closes first leaves the outer one recording (the
    scopes are told apart by identity: two empty record lists compare equal)."""
    from squeezefmt.keras.lazy import recording_add_weight

    with recording_add_weight() as outer:
        with recording_add_weight() as inner:
            pass
        L.Dense(3).build((None, 2))
    assert inner == [] and [tuple(r.shape) for r in outer] == [(2, 3), (3,)]


def test_lazy_rebuild_records_only_its_own_thread():
    """A layer built on another thread while a rebuild is open gets ordinary, initialized weights."""
    import threading

    from squeezefmt.keras.lazy import recording_add_weight

    built = {}

    def build_elsewhere():
        layer = L.Dense(2, bias_initializer="ones")
        layer.build((None, 3))
        built["bias"] = np.asarray(layer.bias)

    with recording_add_weight() as records:
        worker = threading.Thread(target=build_elsewhere)
        worker.start()
        worker.join()
        L.Dense(4).build((None, 5))
    assert [tuple(r.shape) for r in records] == [(5, 4), (4,)]
    assert np.array_equal(built["bias"], np.ones(2, np.float32))


def test_concurrent_lazy_loads_on_threads():
    """Lazy loads running at once on several threads: each model holds no weights and predicts as the
    eager model does (a load that ends must not undo the recording of one still rebuilding)."""
    import threading

    model = deep_mlp(depth=6, width=32)
    data = sk.save(model)
    x = np.random.default_rng(7).normal(size=(4, 32)).astype(np.float32)
    ref = model(x).numpy()
    results = {}

    def load(i):
        try:
            lazy = sk.load(data, lazy=True)
            results[i] = (holds_no_weights(lazy), np.array_equal(lazy(x).numpy(), ref))
        except Exception as exc:  # reported below, with the thread it happened on
            results[i] = repr(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: (True, True) for i in range(4)}


def test_weights_only_container_is_refused_clearly(tmp_path):
    model = deep_mlp(depth=2, width=8)
    weights_file = tmp_path / ("w.weights.h5" if is_keras3() else "w.h5")  # the name each Keras accepts
    model.save_weights(weights_file)
    sk.pack(weights_file, tmp_path / "w.sqz")
    with pytest.raises(errors.KerasFormatError, match="weights only"):
        sk.load(tmp_path / "w.sqz", lazy=True)
