"""CuDNN-layout LSTM/GRU weights convert on load_weights/load the way Keras converts them.

A weights-only .h5 whose RNN weights are in CuDNN layout (each gate's input kernel in Fortran order,
recurrent kernels transposed, bias 2x long) is written with h5py. The reference is tf.keras 2.14's own
``model.load_weights`` of that file (its ``_convert_rnn_weights``); squeezefmt packs the file and
``load_weights`` must give bit-identical variables. Under Keras 3 (whose loaders have no such
conversion) the check is against keras/rnn_convert.py's numpy conversion.
"""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import squeezefmt.keras as sk  # noqa: E402
from squeezefmt.keras.compat import is_keras3, keras_module  # noqa: E402
from squeezefmt.keras.rnn_convert import gru_from_cudnn, lstm_from_cudnn  # noqa: E402

pytestmark = pytest.mark.tf


def build(kind: str):
    keras = keras_module()
    rnn = {"lstm": lambda: keras.layers.LSTM(3, name="rnn_1"),
           "gru": lambda: keras.layers.GRU(3, reset_after=True, name="rnn_1"),
           "bidi": lambda: keras.layers.Bidirectional(keras.layers.LSTM(3), name="rnn_1")}[kind]()
    return keras.Sequential([keras.Input((5, 4)), rnn, keras.layers.Dense(2, name="out")])


def cudnn_weights(kind: str, rng):
    gates = 3 if kind == "gru" else 4
    one = [rng.normal(size=(4, 3 * gates)).astype(np.float32), rng.normal(size=(3, 3 * gates)).astype(np.float32),
           rng.normal(size=(2 * 3 * gates,)).astype(np.float32)]
    if kind == "bidi":
        return one + [w[::-1].copy() for w in one]
    return one


def write_weights_h5(path, layers):
    """A Keras 2 weights-only .h5 (layer_names / weight_names attributes), written with h5py."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.14.0"
        for name, weights in layers:
            g = f.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(weights))]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, w in zip(names, weights):
                g.create_dataset(n, data=w)


def expected(kind, raw):
    convert = gru_from_cudnn if kind == "gru" else lstm_from_cudnn
    return convert(*raw[:3]) + (convert(*raw[3:]) if kind == "bidi" else [])


@pytest.mark.parametrize("kind", ["lstm", "gru", "bidi"])
def test_cudnn_layout_converts_like_keras(kind, tmp_path, rng):
    raw = cudnn_weights(kind, rng)
    dense = [rng.normal(size=(6 if kind == "bidi" else 3, 2)).astype(np.float32), np.ones(2, np.float32)]
    write_weights_h5(tmp_path / "w.h5", [("rnn_1", raw), ("out", dense)])
    sk.pack(tmp_path / "w.h5", tmp_path / "w.sqz")
    ours = build(kind)
    sk.load_weights(ours, tmp_path / "w.sqz")
    got = [v.numpy() for v in ours.layers[0].trainable_weights]
    if not is_keras3():  # tf.keras 2.14 converts CuDNN weights itself: that is the reference
        ref_model = build(kind)
        ref_model.load_weights(tmp_path / "w.h5")
        ref = [v.numpy() for v in ref_model.layers[0].trainable_weights]
        x = rng.normal(size=(3, 5, 4)).astype(np.float32)
        assert np.array_equal(ours.predict(x, verbose=0), ref_model.predict(x, verbose=0))
    else:
        ref = expected(kind, raw)
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert a.shape == b.shape and a.tobytes() == np.asarray(b, np.float32).tobytes()


def test_keras_layout_weights_are_left_alone(rng):
    from squeezefmt.keras.rnn_convert import convert_layer_weights

    model = build("lstm")
    weights = [v.numpy() for v in model.layers[0].trainable_weights]
    out = convert_layer_weights(model.layers[0], weights)
    assert all(a is b for a, b in zip(out, weights))


def test_lstm_conversion_matches_a_hand_worked_gate():
    # one gate, 2 inputs, 1 unit... units = recurrent rows; Fortran-order input kernel per gate
    kernel = np.arange(8, dtype=np.float32).reshape(2, 4)          # 4 gates x 1 unit
    recurrent = np.arange(4, dtype=np.float32).reshape(1, 4)
    bias = np.arange(8, dtype=np.float32)
    k, r, b = lstm_from_cudnn(kernel, recurrent, bias)
    assert np.array_equal(k, kernel) and np.array_equal(r, recurrent)  # 2x1 / 1x1 gates: layout-invariant
    assert np.array_equal(b, bias[:4] + bias[4:])
    kernel = np.arange(16, dtype=np.float32).reshape(2, 8)          # 4 gates x 2 units
    k, _, _ = lstm_from_cudnn(kernel, np.zeros((2, 8), np.float32), np.zeros(16, np.float32))
    # gate 0 is stored as [[0, 1], [8, 9]]: cuDNN's column-major buffer 0, 1, 8, 9 is Keras's [[0, 8], [1, 9]]
    assert np.array_equal(k[:, :2], [[0, 8], [1, 9]])
