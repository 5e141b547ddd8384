"""Make the frozen t3f fixture in tests/fixtures/t3f/ (needs t3f==1.2.0; never overwrites).

    .venv/bin/pip install t3f==1.2.0          # the `test` extra installs it
    .venv/bin/python tools/tt_make_fixture.py

The model is the seed write-up's MNIST MLP (Flatten(28, 28) -> t3f.nn.KerasDense(input_dims=[7, 4, 7, 4],
output_dims=[5, 5, 5, 5], tt_rank=4, activation='relu', bias_initializer=1e-3) -> Dense(10) ->
Activation('softmax')), trained by t3f itself for one epoch on 2000 MNIST training images (Adam, as
in the write-up) and saved with ``model.save("...h5")``. Beside it, ``t3f_mlp_io.npz`` holds 64 test
images (uint8) and the predictions t3f's own model made for them; the tests load the .h5 through squeezefmt
with t3f blocked and require identical predictions.

t3f 1.2.0 still uses ``np.int`` (removed in numpy 1.24); it is patched here for the run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sqzdev import REPO

OUT = Path(REPO) / "tests" / "fixtures" / "t3f"


def scale(images):
    """uint8 images -> the model's float32 input, as the seed write-up scales them."""
    import numpy as np

    return images.astype(np.float32) / 127.5 - 1.0


def build_t3f_mlp(tf, t3f):
    """The seed write-up's model, built with t3f's KerasDense."""
    model = tf.keras.Sequential()
    model.add(tf.keras.layers.Flatten(input_shape=(28, 28)))
    model.add(t3f.nn.KerasDense(input_dims=[7, 4, 7, 4], output_dims=[5, 5, 5, 5], tt_rank=4,
                                activation="relu", bias_initializer=1e-3))
    model.add(tf.keras.layers.Dense(10))
    model.add(tf.keras.layers.Activation("softmax"))
    return model


def main() -> int:
    import numpy as np

    h5, io = OUT / "t3f_mlp.h5", OUT / "t3f_mlp_io.npz"
    if h5.exists() or io.exists():
        print(f"{OUT} already holds the fixture; fixtures are frozen, not regenerated")
        return 0
    if not hasattr(np, "int"):
        np.int = int  # t3f 1.2.0 needs the alias numpy removed
    import tensorflow as tf
    import t3f

    from sqzdev import datasets

    (x_train, y_train), (x_test, _) = datasets.load_mnist()
    x_train = x_train[:2000].astype(np.float32) / 127.5 - 1.0
    images = x_test[:64]
    x_test = scale(images)
    tf.keras.utils.set_random_seed(0)
    model = build_t3f_mlp(tf, t3f)
    model.compile(tf.keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train[:2000].astype(np.int64), epochs=1, batch_size=64, verbose=0)
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(h5, include_optimizer=False)
    preds = model.predict(x_test, verbose=0)
    np.savez_compressed(io, images=images, predictions=preds)
    (OUT / "README.json").write_text(json.dumps({
        "made_by": "tools/tt_make_fixture.py", "t3f": t3f.__version__ if hasattr(t3f, "__version__") else "1.2.0",
        "tensorflow": tf.__version__, "numpy": np.__version__,
        "model": "Flatten(28,28) -> t3f KerasDense([7,4,7,4] x [5,5,5,5], rank 4, relu) -> Dense(10) -> softmax",
        "training": "1 epoch, 2000 MNIST train images, Adam(1e-2), batch 64, seed 0",
        "io": "64 MNIST test images (uint8; the model sees x / 127.5 - 1 in float32) and t3f's predictions for them",
    }, indent=1) + "\n")
    print(f"wrote {h5} ({os.path.getsize(h5)} bytes) and {io}")
    return 0
