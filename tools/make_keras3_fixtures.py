"""Make the Keras 3 fixtures in tests/fixtures/keras3/ (needs Keras 3; never overwrites a file).

    .venv-k3/bin/python tools/make_keras3_fixtures.py      # Keras 3.15, TensorFlow backend

Three small models, trained one epoch on random data so no weight is at its initial value:

* ``cnn``: Functional Conv2D -> BatchNormalization -> SeparableConv2D -> DepthwiseConv2D -> Dense,
  saved as ``cnn.keras`` and as a legacy ``cnn.h5`` (Keras 3's HDF5 writer);
* ``third_party``: two named inputs (``feats``, ``tokens``), a nested Functional ``encoder``
  (BatchNormalization before Dense, and a frozen Dense), a Bidirectional LSTM, a GRU and a Dense
  head, all under their own layer names; saved as ``.keras``, ``.weights.h5`` and legacy ``.h5``;
* ``seq``: a Sequential LSTM -> LayerNormalization -> GRU -> Dense with custom names (``.keras``).

Beside each model, ``<model>_io.npz`` holds inputs (``x0``, ``x1``...) and the predictions of
``keras.saving.load_model`` of every file of that model (``y``; the files give identical
predictions, checked here), so the tests can check packed weights without Keras 3 and predictions
after ``squeezefmt.keras.load`` under Keras 3. ``README.json`` records the versions used.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras3"


def cnn(keras):
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.SeparableConv2D(8, 3, activation="relu", name="sep")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(3, activation="softmax", name="classes")(x)
    return keras.Model(inp, out, name="small_cnn"), [(12, 12, 1)]


def third_party(keras):
    feats = keras.Input((6,), name="feats")
    tokens = keras.Input((5, 4), name="tokens")
    enc_in = keras.Input((6,), name="enc_in")
    h = keras.layers.BatchNormalization(name="enc_bn")(enc_in)
    h = keras.layers.Dense(8, activation="relu", name="enc_hidden")(h)
    frozen = keras.layers.Dense(5, name="enc_frozen")
    encoder = keras.Model(enc_in, frozen(h), name="encoder")
    frozen.trainable = False
    b = keras.layers.Bidirectional(keras.layers.LSTM(3), name="seq_bidi")(tokens)
    c = keras.layers.GRU(2, name="seq_gru")(tokens)
    x = keras.layers.Concatenate(name="joined")([encoder(feats), b, c])
    out = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model([feats, tokens], out, name="third_party"), [(6,), (5, 4)]


def seq(keras):
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(4, return_sequences=True, name="rnn_a"),
        keras.layers.LayerNormalization(name="ln"),
        keras.layers.GRU(3, name="rnn_b"),
        keras.layers.Dense(2, name="out"),
    ], name="seq")
    return model, [(5, 3)]


MODELS = {"cnn": (cnn, (".keras", ".h5")), "third_party": (third_party, (".keras", ".weights.h5", ".h5")),
          "seq": (seq, (".keras",))}


def make(keras, name: str) -> None:
    build, suffixes = MODELS[name]
    if all((OUT / f"{name}{s}").exists() for s in suffixes) and (OUT / f"{name}_io.npz").exists():
        return
    keras.utils.set_random_seed(0)
    model, shapes = build(keras)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(32, *s)).astype(np.float32) for s in shapes]
    n_out = model.outputs[0].shape[-1]
    model.compile("adam", "sparse_categorical_crossentropy" if name != "seq" else "mse")
    y = rng.integers(0, n_out, 32) if name != "seq" else rng.normal(size=(32, n_out)).astype(np.float32)
    model.fit(xs if len(xs) > 1 else xs[0], y, epochs=1, verbose=0)
    for s in suffixes:
        path = OUT / f"{name}{s}"
        if path.exists():
            raise SystemExit(f"{path} exists but {name}_io.npz does not: delete the {name} files to remake them")
        model.save_weights(path) if s == ".weights.h5" else model.save(path)
    xt = [rng.normal(size=(8, *s)).astype(np.float32) for s in shapes]
    feed = xt if len(xt) > 1 else xt[0]
    preds = []
    for s in suffixes:
        if s == ".weights.h5":
            m, _ = build(keras)
            m.load_weights(OUT / f"{name}{s}")
        else:
            m = keras.saving.load_model(OUT / f"{name}{s}")
        preds.append(m.predict(feed, verbose=0))
    assert all(np.array_equal(p, preds[0]) for p in preds), "Keras's own files disagree"
    np.savez(OUT / f"{name}_io.npz", y=preds[0], **{f"x{i}": x for i, x in enumerate(xt)})


def main() -> None:
    import keras
    import tensorflow as tf

    OUT.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        make(keras, name)
    readme = OUT / "README.json"
    if not readme.exists():
        readme.write_text(json.dumps({
            "made_by": "tools/make_keras3_fixtures.py", "keras": keras.__version__, "tensorflow": tf.__version__,
            "backend": keras.backend.backend(), "numpy": np.__version__,
        }, indent=2) + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.name:28s} {p.stat().st_size:>8d} bytes")


if __name__ == "__main__":
    main()
