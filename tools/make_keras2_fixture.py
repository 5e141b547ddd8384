"""Make tests/fixtures/keras3/keras2_mixed.h5 under tf.keras 2.14 (never overwrites).

    /work/main/.venv/bin/python tools/make_keras2_fixture.py       # TensorFlow 2.14, Keras 2

A small Keras 2 model (Conv1D, BatchNormalization, LSTM, a nested Sequential, Dense) saved with
``model.save("...h5")``, and ``keras2_mixed_io.npz`` with inputs and tf.keras 2.14's predictions, so
the Keras 3 tests can check that a Keras 2 file packs and loads under Keras 3.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras3"


def main() -> None:
    import tensorflow as tf

    h5, npz = OUT / "keras2_mixed.h5", OUT / "keras2_mixed_io.npz"
    if h5.exists() and npz.exists():
        return
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 3), name="signal")
    x = keras.layers.Conv1D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.LSTM(5, name="rnn")(x)
    head = keras.Sequential([keras.layers.Dense(4, activation="relu", name="h1"), keras.layers.Dense(2, name="h2")],
                            name="head")
    model = keras.Model(inp, head(x), name="keras2_mixed")
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(32, 6, 3)), rng.normal(size=(32, 2)), epochs=1, verbose=0)
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(h5)
    x = rng.normal(size=(8, 6, 3)).astype(np.float32)
    np.savez(npz, x0=x, y=keras.models.load_model(h5).predict(x, verbose=0))
    print(h5, h5.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
