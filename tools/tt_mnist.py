"""Reproduce the TT write-up (seed 000) on MNIST: a TT layer instead of Dense(625), and "train dense,
TT-SVD, fine-tune" at several ranks. CPU, offline; prints tables and writes bench-results/tt_mnist.json.

    .venv/bin/python tools/tt_mnist.py                      # defaults: 5 epochs, ranks 2 4 8 16 32
    .venv/bin/python tools/tt_mnist.py --epochs 20 --ranks 4 8

Parts
1. **Trained as TT**: Flatten -> TTDense(input_dims [7,4,7,4], output_dims [5,5,5,5], rank 4, relu,
   bias 1e-3) -> Dense(10) -> softmax, Adam(1e-2), batch 64, inputs x / 127.5 - 1 (the write-up's
   setting, with our layer instead of t3f's), against the dense model with Dense(625) (Adam(1e-3):
   1e-2 makes the 490k-weight layer diverge). Both saved as .h5 and packed (lossless); accuracy of
   the model loaded back from the .sqz.
2. **TT-SVD error vs rank** of the trained Dense(625) kernel (784 x 625 as [7,4,7,4] x [5,5,5,5]):
   the TT-SVD's relative Frobenius error with, from numpy's SVD of the unfoldings, the lower bound
   max_k eps_k and the upper bound sqrt(sum_k eps_k^2) (Oseledets 2011, Thm 2.2).
3. **Train dense, TT-SVD, fine-tune** ("先正常训练,然后对模型进行分解,最后微调"): per rank, accuracy right
   after TT-SVD (``squeezefmt pack --tt-rank R``, loaded as a TTDense model), after fine-tuning the TT
   model, the packed size, and the time of the layer's matvec on the cores vs the dense kernel (same run,
   batch 1 and 256, TensorFlow eager-compiled and numpy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sqzdev import datasets  # noqa: E402


def build_dense(tf):
    return tf.keras.Sequential([
        tf.keras.Input((28, 28)), tf.keras.layers.Flatten(name="flatten"),
        tf.keras.layers.Dense(625, activation="relu", name="fc"),
        tf.keras.layers.Dense(10, name="logits"), tf.keras.layers.Activation("softmax", name="softmax"),
    ])


def build_tt(tf, rank=4):
    from squeezefmt.keras.tt_layer import TTDense

    return tf.keras.Sequential([
        tf.keras.Input((28, 28)), tf.keras.layers.Flatten(name="flatten"),
        TTDense(input_dims=[7, 4, 7, 4], output_dims=[5, 5, 5, 5], tt_rank=rank, activation="relu",
                bias_initializer=1e-3, name="fc"),
        tf.keras.layers.Dense(10, name="logits"), tf.keras.layers.Activation("softmax", name="softmax"),
    ])


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), axis=1) == y))


def compile_(tf, model, lr):
    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matvec_times(tf, tt_layer, kernel: np.ndarray, bias: np.ndarray, batches=(1, 256), repeat=50) -> dict:
    """Seconds per call of the 784 -> 625 layer: TT cores vs dense kernel, TF (tf.function) and numpy."""
    from squeezefmt.keras.tt_layer import tt_matmul

    cores = [tf.constant(c.numpy()) for c in tt_layer.cores]
    np_cores = [c.numpy() for c in tt_layer.cores]
    w = tf.constant(kernel)
    dims_in, dims_out, ranks = tt_layer.input_dims, tt_layer.output_dims, tt_layer.ranks
    tt_fn = tf.function(lambda x: tt_matmul(x, cores, dims_in, dims_out, ranks))
    dense_fn = tf.function(lambda x: tf.matmul(x, w))
    out = {}
    from squeezefmt.tt_math import tt_rmatmul

    for b in batches:
        x = np.random.default_rng(b).normal(size=(b, 784)).astype(np.float32)
        xt = tf.constant(x)
        out[b] = {
            "tf_tt_s": timed(lambda: tt_fn(xt).numpy(), repeat),
            "tf_dense_s": timed(lambda: dense_fn(xt).numpy(), repeat),
            "np_tt_s": timed(lambda: tt_rmatmul(x, np_cores), repeat),
            "np_dense_s": timed(lambda: x @ kernel, repeat),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="epochs for the dense and the TT model (write-up: 20)")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--svd-ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    ap.add_argument("--train-limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    ap.add_argument("--out", default=str(REPO / "bench-results" / "tt_mnist.json"))
    args = ap.parse_args(argv)

    import tensorflow as tf

    import squeezefmt
    import squeezefmt.keras as sk
    from squeezefmt import tt_math
    from squeezefmt.codecs.tt import read_tt
    from squeezefmt.keras.pack import pack_tt

    tf.keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    if args.train_limit:
        x_train, y_train = x_train[:args.train_limit], y_train[:args.train_limit]
    x_train = x_train.astype(np.float32) / 127.5 - 1.0
    x_test = x_test.astype(np.float32) / 127.5 - 1.0
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    work = Path(tempfile.mkdtemp(prefix="tt_mnist_"))
    result: dict = {"setup": {
        "epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "batch": 64,
        "train_images": int(len(x_train)), "test_images": int(len(x_test)),
        "tensorflow": tf.__version__, "numpy": np.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "squeezefmt": squeezefmt.__version__,
    }}

    def sizes(model, name):
        h5 = work / f"{name}.h5"
        model.save(h5, include_optimizer=False)
        sqz = work / f"{name}.sqz"
        sk.pack(h5, sqz)
        back = sk.load(sqz)
        return {"params": int(model.count_params()), "h5_bytes": h5.stat().st_size, "sqz_bytes": sqz.stat().st_size,
                "fc_stored_bytes": fc_bytes(sqz), "accuracy": accuracy(model, x_test, y_test),
                "accuracy_loaded": accuracy(back, x_test, y_test)}, h5

    def fc_bytes(sqz):
        with squeezefmt.open(sqz) as f:
            return int(sum(f.info(k).stored_bytes + f.info(k).side_bytes for k in f.keys() if k.startswith("fc/")))

    # -- 1. dense vs trained-as-TT -------------------------------------------------------------------------
    t0 = time.perf_counter()
    dense = compile_(tf, build_dense(tf), 1e-3)
    dense.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    dense_time = time.perf_counter() - t0
    dense_row, dense_h5 = sizes(dense, "dense")
    dense_row["train_s"] = dense_time
    t0 = time.perf_counter()
    tt_model = compile_(tf, build_tt(tf, 4), 1e-2)
    tt_model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    tt_time = time.perf_counter() - t0
    tt_row, _ = sizes(tt_model, "tt_trained")
    tt_row["train_s"] = tt_time
    result["trained"] = {"dense": dense_row, "tt_rank4": tt_row}
    print(f"\n1. MNIST MLP, {args.epochs} epochs: Dense(625) vs TT layer [7,4,7,4]x[5,5,5,5] rank 4 (trained as TT)")
    print(f"{'model':<12} {'params':>8} {'h5 bytes':>10} {'sqz bytes':>10} {'fc stored':>10} {'acc':>7} {'acc(sqz)':>9} {'train s':>8}")
    for name, r in (("dense", dense_row), ("tt rank 4", tt_row)):
        print(f"{name:<12} {r['params']:>8} {r['h5_bytes']:>10} {r['sqz_bytes']:>10} {r['fc_stored_bytes']:>10} "
              f"{r['accuracy']:>7.4f} {r['accuracy_loaded']:>9.4f} {r['train_s']:>8.1f}")

    # -- 2. TT-SVD error vs rank ---------------------------------------------------------------------------
    kernel = dense.get_layer("fc").kernel.numpy()
    dims = ([7, 4, 7, 4], [5, 5, 5, 5])
    svd_rows = []
    for r in args.svd_ranks:
        res = tt_math.tt_svd(kernel, *dims, max_rank=r)
        actual = float(np.linalg.norm(res.tt.full().astype(np.float64) - kernel) / np.linalg.norm(kernel))
        lo, hi, eps = tt_math.unfolding_bounds(kernel, *dims, res.tt.ranks)
        norm = float(np.linalg.norm(kernel.astype(np.float64)))
        svd_rows.append({"max_rank": r, "ranks": res.tt.ranks, "params": res.tt.params,
                         "compression": kernel.size / res.tt.params, "rel_err": actual,
                         "rel_err_from_discarded": res.rel_error, "lower_bound": lo / norm, "upper_bound": hi / norm,
                         "eps_k": [e / norm for e in eps],
                         "within_bounds": bool(lo / norm * (1 - 1e-5) <= actual <= hi / norm * (1 + 1e-5))})
    result["tt_svd_error_vs_rank"] = svd_rows
    print("\n2. TT-SVD of the trained 784x625 kernel ([7,4,7,4]x[5,5,5,5]): relative Frobenius error vs numpy-SVD bounds")
    print(f"{'max rank':>8} {'ranks':<22} {'params':>7} {'ratio':>7} {'lower':>8} {'TT-SVD':>8} {'upper':>8} {'ok':>3}")
    for r in svd_rows:
        print(f"{r['max_rank']:>8} {str(r['ranks']):<22} {r['params']:>7} {r['compression']:>6.1f}x "
              f"{r['lower_bound']:>8.4f} {r['rel_err']:>8.4f} {r['upper_bound']:>8.4f} {'yes' if r['within_bounds'] else 'NO':>3}")

    # -- 3. train dense -> TT-SVD -> fine-tune ---------------------------------------------------------------
    rows = []
    for r in args.ranks:
        sqz = work / f"svd_r{r}.sqz"
        _, report = pack_tt(dense_h5, sqz, max_rank=r, layers=["fc"], dims=[dims])
        choice = report[0]
        model = sk.load(sqz)  # TTDense on the cores
        acc0 = accuracy(model, x_test, y_test)
        compile_(tf, model, 1e-3)
        t0 = time.perf_counter()
        model.fit(x_train, y_train, epochs=args.finetune_epochs, batch_size=64, verbose=0)
        ft_time = time.perf_counter() - t0
        acc1 = accuracy(model, x_test, y_test)
        tuned = work / f"svd_r{r}_ft.sqz"
        sk.save(model, tuned)
        with squeezefmt.open(tuned) as f:
            assert f.info("fc/tt_matrix").codec == "tt"
            ranks = read_tt(f, "fc/tt_matrix").ranks
        times = matvec_times(tf, model.get_layer("fc"), kernel, dense.get_layer("fc").bias.numpy())
        row = {"max_rank": r, "ranks": ranks, "fc_params": choice.params, "svd_rel_err": choice.rel_error,
               "sqz_bytes_after_svd": sqz.stat().st_size, "sqz_bytes_finetuned": tuned.stat().st_size,
               "accuracy_after_svd": acc0, "accuracy_finetuned": acc1, "finetune_s": ft_time, "matvec": times}
        rows.append(row)
    result["svd_finetune"] = rows
    base_acc, base_sqz = dense_row["accuracy"], dense_row["sqz_bytes"]
    print(f"\n3. Train dense -> TT-SVD (--tt-rank R) -> fine-tune {args.finetune_epochs} epoch(s); "
          f"dense model: acc {base_acc:.4f}, {base_sqz} bytes packed")
    print(f"{'rank':>4} {'fc params':>9} {'svd err':>8} {'sqz bytes':>9} {'ratio':>6} {'acc svd':>8} {'acc ft':>7} "
          f"{'TF tt/dense b1 (us)':>20} {'TF b256 (us)':>14} {'np b1 (us)':>13} {'np b256 (us)':>14}")
    for row in rows:
        t1, t256 = row["matvec"][1], row["matvec"][256]
        us = lambda a, b: f"{a * 1e6:.0f}/{b * 1e6:.0f}"  # noqa: E731
        print(f"{row['max_rank']:>4} {row['fc_params']:>9} {row['svd_rel_err']:>8.4f} {row['sqz_bytes_finetuned']:>9} "
              f"{base_sqz / row['sqz_bytes_finetuned']:>5.1f}x {row['accuracy_after_svd']:>8.4f} {row['accuracy_finetuned']:>7.4f} "
              f"{us(t1['tf_tt_s'], t1['tf_dense_s']):>20} {us(t256['tf_tt_s'], t256['tf_dense_s']):>14} "
              f"{us(t1['np_tt_s'], t1['np_dense_s']):>13} {us(t256['np_tt_s'], t256['np_dense_s']):>14}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=lambda o: int(o) if isinstance(o, np.integer) else str(o)) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
