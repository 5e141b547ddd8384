"""Keras 3 out: load, load_weights, save, unpack under Keras 3 give Keras's own predictions exactly.

Needs Keras 3 (the nox ``current`` session: tensorflow==2.21.*, keras==3.15.*); skipped otherwise.
Reference predictions are those of ``keras.saving.load_model`` of the source file, computed here, and
the ones stored beside the fixtures (made by the same Keras version).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if int(keras.__version__.split(".")[0]) < 3:
    pytest.skip(f"needs Keras 3 (found keras {keras.__version__}); the nox 'current' session installs "
                "tensorflow==2.21.* and keras==3.15.*", allow_module_level=True)

import squeezefmt.keras as sk  # noqa: E402
from squeezefmt.errors import KerasFormatError  # noqa: E402

pytestmark = pytest.mark.tf
FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras3")


def fixture(name):
    return os.path.join(FIX, name)


def io_of(model):
    d = np.load(fixture(f"{model}_io.npz"))
    xs = [d[f"x{i}"] for i in range(len([k for k in d.files if k.startswith("x")]))]
    return (xs if len(xs) > 1 else xs[0]), d["y"]


def predict(model, x):
    return model.predict(x, verbose=0)


@pytest.mark.parametrize("name", ["cnn.keras", "cnn.h5", "third_party.keras", "third_party.h5", "seq.keras"])
def test_load_gives_keras_load_model_predictions(name, tmp_path):
    x, stored = io_of(name.split(".")[0])
    ref = predict(keras.saving.load_model(fixture(name)), x)
    sk.pack(fixture(name), tmp_path / "m.sqz")
    model = sk.load(tmp_path / "m.sqz")
    assert isinstance(model, keras.Model)
    got = predict(model, x)
    assert np.array_equal(got, ref)
    assert np.array_equal(got, stored)


def test_load_weights_from_a_keras3_weights_file(tmp_path):
    x, stored = io_of("third_party")
    model = keras.saving.load_model(fixture("third_party.keras"))
    for w in model.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    sk.pack(fixture("third_party.weights.h5"), tmp_path / "w.sqz")
    sk.load_weights(model, tmp_path / "w.sqz")
    assert np.array_equal(predict(model, x), stored)


def test_load_weights_by_position_from_a_keras_archive(tmp_path):
    x, stored = io_of("cnn")
    model = keras.saving.load_model(fixture("cnn.keras"))
    for w in model.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    sk.pack(fixture("cnn.keras"), tmp_path / "m.sqz")
    sk.load_weights(model, tmp_path / "m.sqz")
    assert np.array_equal(predict(model, x), stored)


def test_load_weights_refuses_a_model_without_that_layer(tmp_path):
    sk.pack(fixture("third_party.weights.h5"), tmp_path / "w.sqz")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(KerasFormatError, match="no layer at"):
        sk.load_weights(other, tmp_path / "w.sqz")


@pytest.mark.parametrize("model", ["third_party", "seq"])
def test_unpack_to_keras_loads_in_keras(model, tmp_path):
    x, stored = io_of(model)
    sk.pack(fixture(f"{model}.keras"), tmp_path / "m.sqz")
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.keras")
    assert np.array_equal(predict(keras.saving.load_model(tmp_path / "back.keras"), x), stored)
    sk.unpack(tmp_path / "m.sqz", tmp_path / "back.h5")  # a legacy .h5 from a .keras source
    assert np.array_equal(predict(keras.saving.load_model(tmp_path / "back.h5"), x), stored)


def test_save_then_load_under_keras3():
    x, stored = io_of("third_party")
    model = keras.saving.load_model(fixture("third_party.keras"))
    data = sk.save(model)
    assert np.array_equal(predict(sk.load(data), x), stored)


def test_lambda_is_refused_in_safe_mode():
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    from squeezefmt.errors import UnsafeModelError

    with pytest.raises(UnsafeModelError):
        sk.load(sk.save(model))


@pytest.mark.parametrize("model", ["cnn", "third_party", "seq"])
def test_lazy_load_under_keras3(model, tmp_path):
    x, stored = io_of(model)
    sk.pack(fixture(f"{model}.keras"), tmp_path / "m.sqz")
    lazy = sk.load(tmp_path / "m.sqz", lazy=True)
    assert np.array_equal(predict(lazy, x), stored)
    eager = sk.load(tmp_path / "m.sqz")
    assert np.array_equal(np.asarray(lazy(x)), np.asarray(eager(x)))
    # the weight variables Keras tracks were never initialized: no weight buffer exists outside a call
    # (RNN dropout seed states, two integers each, are not weights and are created as usual)
    weights = [v for v in lazy.variables if "seed_generator" not in v.path]
    assert len(weights) == len(eager.weights) and all(getattr(v, "_value", None) is None for v in weights)
    from squeezefmt.keras.lazy import close, lazy_state

    assert lazy_state(lazy).cache.stats()["decodes"] > 0
    close(lazy)


def test_keras2_h5_loads_under_keras3(tmp_path):
    """A file tf.keras 2.14 wrote (nested Sequential, LSTM, BatchNormalization) loads under Keras 3.

    Keras 3's own load_model refuses it (the LSTM config has Keras 2's ``time_major``); squeezefmt drops
    that default-valued option. Reference: tf.keras 2.14's predictions, up to float rounding (other
    TensorFlow kernels), and the file's weights bit for bit.
    """
    x, stored = io_of("keras2_mixed")
    with pytest.raises(ValueError, match="time_major"):
        keras.saving.load_model(fixture("keras2_mixed.h5"), compile=False)
    sk.pack(fixture("keras2_mixed.h5"), tmp_path / "m.sqz")
    model = sk.load(tmp_path / "m.sqz")
    got = predict(model, x)
    np.testing.assert_allclose(got, stored, rtol=1e-5, atol=1e-6)
    import squeezefmt

    with squeezefmt.open(tmp_path / "m.sqz") as f:
        stored_layers = [layer for layer in f.metadata()["keras"]["layers"] if layer["weights"]]
        for meta, layer in zip(stored_layers, [layer for layer in model.layers if layer.weights]):
            values = [np.asarray(v) for v in layer.trainable_weights + layer.non_trainable_weights]
            assert [v.tobytes() for v in values] == [f.tensor(w["tensor"]).tobytes() for w in meta["weights"]]
    lazy = sk.load(tmp_path / "m.sqz", lazy=True)
    assert np.array_equal(predict(lazy, x), got)


def test_bundled_keras2_example_loads_under_keras3():
    """examples/mnist_cnn.h5 (tf.keras 2.14): Keras 3's load_model refuses its SeparableConv2D config;
    squeezefmt loads it, with the weights Keras 3's own legacy .h5 weight loader sets."""
    root = os.path.join(os.path.dirname(FIX), "..", "..", "examples")
    h5 = os.path.join(root, "mnist_cnn.h5")
    with pytest.raises(Exception, match="SeparableConv2D"):
        keras.saving.load_model(h5, compile=False)
    model = sk.load(sk.pack(h5))
    reference = keras.models.clone_model(model)
    reference.load_weights(h5)  # Keras 3 reads the legacy weights itself
    x = np.random.default_rng(3).random((16, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(predict(model, x), predict(reference, x))
    fresh = keras.models.clone_model(model)
    sk.load_weights(fresh, sk.pack(os.path.join(root, "mnist_cnn_weights.h5")))
    assert np.array_equal(predict(fresh, x), predict(reference, x))
