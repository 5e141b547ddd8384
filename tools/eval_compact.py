"""Pack models with the data-free ``compact`` preset and measure size ratio and test accuracy.

    python tools/eval_compact.py                               # the default models below
    python tools/eval_compact.py model.h5:mnist other.h5:fashion_mnist --presets compact,compact-x1.5

For each model and preset: ``squeezefmt.keras.pack`` (h5py only), ``squeezefmt.keras.load`` of the
container, top-1 accuracy on the test set of the data set (sqzdev/datasets.py), beside the original
model's. Ratio = float weight bytes / .sqz file bytes (``squeezefmt info``'s "(file)" ratio), so the
container header and the lossless tensors count. Writes ``bench-results/compact.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

DEFAULT = [f"{ROOT}/examples/mnist_cnn.h5:mnist", f"{ROOT}/examples/fashion_cnn.h5:fashion_mnist",
           "/work/wt/models/mnist_cnn_390k.h5:mnist"]


def test_set(name: str, input_shape):
    from sqzdev import datasets

    (_, _), (x, y) = datasets.load(name)
    return (x.astype(np.float32) / 255.0).reshape((-1, *input_shape[1:])), np.asarray(y).astype(np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=None, help="path.h5:dataset")
    ap.add_argument("--presets", default="lossless,compact")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench-results", "compact.json"))
    args = ap.parse_args(argv)
    import tensorflow as tf

    import squeezefmt
    import squeezefmt.keras as sk

    rows = []
    for spec in args.models or DEFAULT:
        path, ds = spec.rsplit(":", 1)
        if not os.path.exists(path):
            print(f"skipping {path}: not found")
            continue
        original = tf.keras.models.load_model(path, compile=False)
        x, y = test_set(ds, original.input_shape)
        base = float(np.mean(original.predict(x, batch_size=1000, verbose=0).argmax(1) == y))
        weight_bytes = sum(w.nbytes for w in original.get_weights())
        for preset in args.presets.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "m.sqz")
                t0 = time.perf_counter()
                sk.pack(path, out, preset=preset)
                t_pack = time.perf_counter() - t0
                size = os.path.getsize(out)
                t0 = time.perf_counter()
                with squeezefmt.open(out) as f:
                    f.verify()
                t_decode = time.perf_counter() - t0
                model = sk.load(out)
            acc = float(np.mean(model.predict(x, batch_size=1000, verbose=0).argmax(1) == y))
            row = {"model": os.path.basename(path), "dataset": ds, "params": int(original.count_params()),
                   "preset": preset, "file_bytes": size, "weight_bytes": weight_bytes,
                   "ratio": round(weight_bytes / size, 2), "accuracy": acc, "original_accuracy": base,
                   "change_points": round(100 * (acc - base), 2), "pack_s": round(t_pack, 2),
                   "verify_decode_s": round(t_decode, 3)}
            rows.append(row)
            print(f"{row['model']:<22} {preset:<12} {size:>9} B {row['ratio']:>7.2f}x  acc {acc:.4f} "
                  f"({row['change_points']:+.2f} points vs {base:.4f})  pack {t_pack:.1f}s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"tool": "tools/eval_compact.py", "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
