"""Keras adapter: .h5 -> .sqz -> tf.keras.Model with identical predictions, unpack, safe mode, CLI."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import squeezefmt  # noqa: E402
import squeezefmt.keras as sk  # noqa: E402
from squeezefmt import errors  # noqa: E402
from sqzdev import EXAMPLES  # noqa: E402
from sqzdev.keras_files import keras_major, legacy_optimizer_arrays, save_legacy_h5, save_legacy_weights  # noqa: E402

pytestmark = pytest.mark.tf
keras3_only = pytest.mark.skipif(keras_major() < 3, reason="checks a file only Keras 3 writes")


def make_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((12, 12, 1))
    x = tf.keras.layers.Conv2D(6, 3, activation="relu")(inp)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.SeparableConv2D(8, 3, activation="relu")(x)
    x = tf.keras.layers.DepthwiseConv2D(3)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(16, activation="relu")(x)
    out = tf.keras.layers.Dense(3, activation="softmax")(x)
    model = tf.keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(32, 12, 12, 1)), rng.integers(0, 3, 32), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras")
    model = make_model()
    save_legacy_h5(model, d / "m.h5")
    save_legacy_weights(model, d / "w.h5")
    x = np.random.default_rng(9).normal(size=(10, 12, 12, 1)).astype(np.float32)
    return d, model, x, model.predict(x, verbose=0)


def test_pack_load_predictions_identical(model_files, tmp_path):
    d, _, x, ref = model_files
    sk.pack(d / "m.h5", tmp_path / "m.sqz")
    loaded = sk.load(tmp_path / "m.sqz")
    assert np.array_equal(loaded.predict(x, verbose=0), ref)
    classes = {type(layer).__name__ for layer in loaded.layers}
    assert {"Conv2D", "BatchNormalization", "SeparableConv2D", "DepthwiseConv2D", "Dense"} <= classes


def test_load_from_bytes_and_file_object(model_files):
    d, _, x, ref = model_files
    data = sk.pack(d / "m.h5")
    assert np.array_equal(sk.load(data).predict(x, verbose=0), ref)
    import io
    assert np.array_equal(sk.load(io.BytesIO(data)).predict(x, verbose=0), ref)


def test_pack_is_deterministic_and_leaves_out_optimizer(model_files):
    d, *_ = model_files
    a, b = sk.pack(d / "m.h5"), sk.pack(d / "m.h5")
    assert a == b
    with squeezefmt.open(a) as f:
        assert not any(k.startswith("optimizer/") for k in f.keys())
        meta = f.metadata()
        assert meta["keras"]["kind"] == "model"
        assert meta["keras"]["training_config"] is None  # goes with the optimizer state
        assert json.loads(meta["keras"]["model_config"])["class_name"] == "Functional"
        assert "source" not in meta  # provenance is opt-in (record_source=True)
    with squeezefmt.open(sk.pack(d / "m.h5", record_source=True)) as f:
        src = f.metadata()["source"]
        assert src["file"] == "m.h5" and src["sha256"] == hashlib.sha256((d / "m.h5").read_bytes()).hexdigest()


def test_include_optimizer_and_unpack_round_trip(model_files, tmp_path):
    d, model, x, ref = model_files
    sk.pack(d / "m.h5", tmp_path / "o.sqz", include_optimizer=True)
    with squeezefmt.open(tmp_path / "o.sqz") as f:
        opt = [k for k in f.keys() if k.startswith("optimizer/")]
    assert len(opt) == len(model.optimizer.variables)
    with squeezefmt.open(tmp_path / "o.sqz") as f:
        assert json.loads(f.metadata()["keras"]["training_config"])["loss"] == "sparse_categorical_crossentropy"
    sk.unpack(tmp_path / "o.sqz", tmp_path / "back.h5")
    back = tf.keras.models.load_model(tmp_path / "back.h5")
    assert np.array_equal(back.predict(x, verbose=0), ref)
    # the optimizer state in the unpacked file, as Keras's own legacy reader reads it, in the optimizer's order
    state = legacy_optimizer_arrays(tmp_path / "back.h5")
    assert len(state) == len(model.optimizer.variables)
    for a, b in zip(state, model.optimizer.variables):
        assert a.dtype == b.numpy().dtype and np.array_equal(a, b.numpy())


@pytest.mark.skipif(keras_major() >= 3, reason="Keras 3.15's legacy .h5 loader builds the optimizer over a "
                    "Functional model's own (empty) variable list, so it restores no optimizer slots, not even "
                    "from a file Keras 3 wrote; the test above checks the unpacked file's optimizer state")
def test_unpacked_optimizer_state_is_restored_by_load_model(model_files, tmp_path):
    d, model, _, _ = model_files
    sk.unpack(sk.pack(d / "m.h5", include_optimizer=True), tmp_path / "back.h5")
    back = tf.keras.models.load_model(tmp_path / "back.h5")
    assert len(back.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(back.optimizer.variables, model.optimizer.variables):
        assert np.array_equal(a.numpy(), b.numpy())


def _check_weights_container(sqz, unpacked, x, ref):
    """A weights-only container: ``load_weights`` into a fresh model, and ``unpack`` to a weights file
    that Keras loads, both give the reference predictions (a fresh model alone does not)."""
    fresh = make_model(seed=5)
    assert not np.array_equal(fresh.predict(x, verbose=0), ref)
    sk.load_weights(fresh, sqz)
    assert np.array_equal(fresh.predict(x, verbose=0), ref)
    sk.unpack(sqz, unpacked)
    fresh2 = make_model(seed=6)
    fresh2.load_weights(unpacked)
    assert np.array_equal(fresh2.predict(x, verbose=0), ref)


def test_weights_only_file(model_files, tmp_path):
    d, _, x, ref = model_files
    sk.pack(d / "w.h5", tmp_path / "w.sqz")
    with pytest.raises(errors.KerasFormatError, match="weights only"):
        sk.load(tmp_path / "w.sqz")
    _check_weights_container(tmp_path / "w.sqz", tmp_path / "w2.h5", x, ref)


def test_save_model_directly(model_files):
    _, model, x, ref = model_files
    data = sk.save(model)
    assert np.array_equal(sk.load(data).predict(x, verbose=0), ref)


def test_safe_mode_refuses_lambda(tmp_path):
    inp = tf.keras.Input((4,))
    out = tf.keras.layers.Lambda(lambda t: t * 2.0, name="doubler")(tf.keras.layers.Dense(2)(inp))
    model = tf.keras.Model(inp, out)
    model.save(tmp_path / "lam.h5")
    sk.pack(tmp_path / "lam.h5", tmp_path / "lam.sqz")
    with pytest.raises(errors.UnsafeModelError, match="Lambda.*doubler"):
        sk.load(tmp_path / "lam.sqz")
    trusted = sk.load(tmp_path / "lam.sqz", safe_mode=False)
    x = np.ones((1, 4), np.float32)
    assert np.array_equal(trusted.predict(x, verbose=0), model.predict(x, verbose=0))


def test_nested_model(tmp_path):
    inner = tf.keras.Sequential([tf.keras.layers.Dense(5, activation="relu"), tf.keras.layers.Dense(3)], name="inner")
    inp = tf.keras.Input((7,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2)(inner(inp)))
    model.save(tmp_path / "n.h5")
    x = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    loaded = sk.load(sk.pack(tmp_path / "n.h5"))
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_not_a_keras_file(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(errors.KerasFormatError):
        sk.pack(tmp_path / "x.h5")
    plain = squeezefmt.save({"a": np.zeros(3)})
    with pytest.raises(errors.KerasFormatError, match="no Keras model"):
        sk.load(plain)


def test_cli_pack_info_verify_unpack(model_files, tmp_path):
    from click.testing import CliRunner

    from squeezefmt.cli import main

    d, _, x, ref = model_files
    runner = CliRunner()
    out = tmp_path / "c.sqz"
    r = runner.invoke(main, ["pack", str(d / "m.h5"), str(out)])
    assert r.exit_code == 0, r.output
    assert "->" in r.output
    r = runner.invoke(main, ["info", str(out)])
    assert r.exit_code == 0 and "bytegroup" in r.output and "total" in r.output
    r = runner.invoke(main, ["info", "--json", str(out)])
    info = json.loads(r.output)
    assert info["totals"]["tensors"] == len(info["tensors"]) > 0
    r = runner.invoke(main, ["verify", str(out)])
    assert r.exit_code == 0 and "OK" in r.output
    r = runner.invoke(main, ["unpack", str(out), str(tmp_path / "u.h5")])
    assert r.exit_code == 0
    assert np.array_equal(tf.keras.models.load_model(tmp_path / "u.h5").predict(x, verbose=0), ref)
    # corruption: flip one byte in the last stream
    data = bytearray(out.read_bytes())
    data[-2] ^= 0xFF
    bad = tmp_path / "bad.sqz"
    bad.write_bytes(bytes(data))
    r = runner.invoke(main, ["verify", str(bad)])
    assert r.exit_code == 1 and "checksum mismatch" in r.output
    r = runner.invoke(main, ["info", str(tmp_path / "u.h5")])
    assert r.exit_code == 1 and "HDF5" in r.output


@pytest.mark.skipif(keras_major() >= 3, reason="only tf.keras 2.14 writes its TF-checkpoint layout to a "
                    "'*.weights.h5'; Keras 3 writes its own layout there (packed: the test below)")
def test_keras3_style_weights_file_is_refused_clearly(model_files, tmp_path):
    _, model, _, _ = model_files
    model.save_weights(tmp_path / "m.weights.h5")  # Keras 2.14 writes the Keras 3 layout for this suffix
    with pytest.raises(errors.KerasFormatError, match="Keras 3-style"):
        sk.pack(tmp_path / "m.weights.h5")


@keras3_only
def test_keras3_weights_file_loads_and_unpacks(model_files, tmp_path):
    """Keras 3's own ``.weights.h5`` of this model (BatchNormalization, separable and depthwise convolutions)."""
    _, model, x, ref = model_files
    model.save_weights(tmp_path / "m.weights.h5")
    sk.pack(tmp_path / "m.weights.h5", tmp_path / "w.sqz")
    _check_weights_container(tmp_path / "w.sqz", tmp_path / "back.weights.h5", x, ref)


def bundled_example_reference(loaded):
    """examples/mnist_cnn.h5's weights set by the installed Keras's own legacy weight loader, on
    ``loaded``'s architecture (Keras 3's load_model refuses the file: test_keras3_load.py)."""
    reference = tf.keras.models.clone_model(loaded)
    reference.load_weights(os.path.join(EXAMPLES, "mnist_cnn.h5"))
    return reference


def test_bundled_example_round_trip():
    h5 = os.path.join(EXAMPLES, "mnist_cnn.h5")
    loaded = sk.load(sk.pack(h5))
    original = bundled_example_reference(loaded)
    x = np.random.default_rng(3).random((16, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(loaded.predict(x, verbose=0), original.predict(x, verbose=0))
    fresh = tf.keras.models.clone_model(original)
    sk.load_weights(fresh, sk.pack(os.path.join(EXAMPLES, "mnist_cnn_weights.h5")))
    assert np.array_equal(fresh.predict(x, verbose=0), original.predict(x, verbose=0))


@pytest.mark.skipif(keras_major() >= 3, reason="examples/mnist_cnn.h5 is a tf.keras 2.14 file that Keras 3's "
                    "load_model refuses (its SeparableConv2D config): test_keras3_load.py checks that")
def test_bundled_example_matches_keras_load_model():
    h5 = os.path.join(EXAMPLES, "mnist_cnn.h5")
    original = tf.keras.models.load_model(h5, compile=False)
    x = np.random.default_rng(3).random((16, 28, 28, 1), dtype=np.float32)
    loaded = sk.load(sk.pack(h5))
    assert np.array_equal(loaded.predict(x, verbose=0), original.predict(x, verbose=0))
    assert [type(a).__name__ for a in loaded.layers] == [type(b).__name__ for b in original.layers]
