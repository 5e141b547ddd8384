"""Reproduce the TFC "scalable model compression" tutorial with squeezefmt: EPR training -> .sqz.

    python tools/epr_train.py --model tutorial --lambdas 2,5,10,20,50 --epochs 5      # the tutorial's recipe
    python tools/epr_train.py --model lenet5 --lambdas 2,5,10 --baseline-epochs 8 --epochs 15 --warm-start --cosine
    python tools/epr_train.py --model tutorial --repack --work DIR                   # re-pack a run's .h5 files

Models (MNIST, 28x28x1):

- ``tutorial``: the tutorial's classifier: conv 20 5x5/2 same, conv 50 5x5/2 same, flatten,
  dense 500, dense 10, leaky ReLU after every layer (as its ``CustomDense`` / ``CustomConv2D``).
- ``lenet5``: LeNet-5 (Caffe): conv 20 5x5 valid, max-pool 2, conv 50 5x5 valid, max-pool 2,
  flatten, dense 500 ReLU, dense 10.

For each lambda (normalised by the float model's parameter count, as the tutorial does) it trains
the model built from :mod:`squeezefmt.keras.epr` layers with Adam 1e-3, batch 128, saves it as
.h5, packs it (``squeezefmt.keras.pack``: the integer latents are stored, not re-quantized),
loads the .sqz as an ordinary Keras model and evaluates it. It also compresses the same trained
latents the way the tutorial's own code does (``tfc.PowerLawEntropyModel(rank).compress(latent /
exp(log_step))`` plus float16 log-steps) and checks that the gamma part of every squeezefmt stream
equals tfc's string byte for byte. A float32 model of the same architecture, trained the same
number of epochs without EPR, is the reference row.

Writes ``bench-results/epr_<model>.json`` and ``bench-results/epr_<model>.png`` (size vs accuracy),
and keeps the .h5/.sqz files in ``--work`` (default: a temporary directory).
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


def build(kind: str, regularizer=None, epr: bool = True):
    import tensorflow as tf

    from squeezefmt.keras.epr import EPRConv2D, EPRDense

    L = tf.keras.layers
    if epr:
        def conv(*a, **k):
            return EPRConv2D(*a, regularizer=regularizer, **k)

        def dense(*a, **k):
            return EPRDense(*a, regularizer=regularizer, **k)
    else:
        conv, dense = L.Conv2D, L.Dense
    if kind == "tutorial":
        layers = [
            conv(20, 5, strides=2, padding="same", activation="leaky_relu", name="conv_1"),
            conv(50, 5, strides=2, padding="same", activation="leaky_relu", name="conv_2"),
            L.Flatten(name="flatten"),
            dense(500, activation="leaky_relu", name="fc_1"),
            dense(10, activation="leaky_relu", name="fc_2"),
        ]
    elif kind == "lenet5":
        layers = [
            conv(20, 5, padding="valid", name="conv_1"),
            L.MaxPooling2D(2, name="pool_1"),
            conv(50, 5, padding="valid", name="conv_2"),
            L.MaxPooling2D(2, name="pool_2"),
            L.Flatten(name="flatten"),
            dense(500, activation="relu", name="fc_1"),
            dense(10, name="fc_2"),
        ]
    else:
        raise SystemExit(f"unknown model {kind!r}")
    return tf.keras.Sequential([tf.keras.Input((28, 28, 1), name="image"), *layers], name=f"{kind}_classifier")


def snapshot_callback(epochs: set, path_of):
    """A Keras callback saving the model after the given (1-based) epochs as ``path_of(epoch)``,
    with float16-rounded log-steps (as the final save), without changing the training run."""
    import tensorflow as tf

    from squeezefmt.keras.epr import round_log_steps

    class Snapshots(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 not in epochs:
                return
            saved = [w.numpy() for w in self.model.weights]
            round_log_steps(self.model)
            self.model.save(path_of(epoch + 1))
            for w, value in zip(self.model.weights, saved):
                w.assign(value)
    return Snapshots()


def train(model, data, epochs: int, batch: int, lr: float, seed: int, cosine: bool = False, callbacks=()):
    import tensorflow as tf

    (x, y), (xt, yt) = data
    if cosine:  # decay to 2 % of lr over the run: the last epochs settle the quantized weights
        steps = epochs * (-(-len(x) // batch))
        lr = tf.keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=lr),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="acc")])
    t0 = time.perf_counter()
    hist = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=2,
                     validation_data=(xt, yt), validation_freq=epochs,
                     callbacks=list(callbacks))
    return hist.history["val_acc"][-1], time.perf_counter() - t0


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=1000, verbose=0), axis=-1) == y))


def tfc_tutorial_bytes(model):
    """Size of the weights the tutorial's ``CompressedDense/Conv2D`` would hold, and the strings."""
    import tensorflow as tf
    import tensorflow_compression as tfc

    from squeezefmt.keras.epr import EPRConv2D, EPRDense

    total, strings = 0, {}
    for layer in model.layers:
        if not isinstance(layer, (EPRDense, EPRConv2D)):
            continue
        for part in ("kernel", "bias"):
            latent, log_step = getattr(layer, f"{part}_latent"), getattr(layer, f"{part}_log_step")
            em = tfc.PowerLawEntropyModel(latent.shape.rank)
            s = em.compress(latent / tf.exp(log_step)).numpy()
            strings[f"{layer.name}/{part}"] = s
            total += len(s) + 2 * int(np.prod(log_step.shape))  # + the float16 log-steps
    return total, strings


def check_streams(sqz: bytes, strings: dict) -> int:
    """Every epr stream's gamma part equals tfc's string; returns how many were compared."""
    import squeezefmt

    n = 0
    with squeezefmt.open(sqz) as f:
        for key, s in strings.items():
            layer, part = key.split("/")
            name = f"{layer}/{layer}/{part}:0"
            e = f.entry(name)
            stream = bytes(f.streams(name)[0])
            side = e.side or {}
            steps = 1
            if side.get("step_dims"):
                from squeezefmt.codecs.epr import latent_shape, step_shape

                steps = int(np.prod(step_shape(latent_shape(e.shape, side.get("transform", "none")),
                                               side["step_dims"])))
            if stream[2 * steps:] != s:
                raise SystemExit(f"{name}: squeezefmt's gamma stream differs from tfc's string")
            n += 1
    return n


def sqz_breakdown(sqz: bytes) -> dict:
    import squeezefmt

    with squeezefmt.open(sqz) as f:
        streams = sum(len(b) for k in f.keys() for b in f.streams(k))
        return {"file": len(sqz), "header": f.header_size, "streams": streams,
                "padding": len(sqz) - 40 - f.header_size - streams}


def cabac_recoded(sqz: bytes, weight_bytes: int) -> dict:
    """The same file with its EPR latents re-coded losslessly by the arithmetic coder (tools/epr_recode.py)."""
    import epr_recode

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.sqz")
        with open(src, "wb") as fh:
            fh.write(sqz)
        r = epr_recode.recode(src, None)  # checks that every tensor decodes bit for bit as before
    return {"sqz_cabac_bytes": r["file_bytes_out"], "ratio_cabac": weight_bytes / r["file_bytes_out"],
            "latent_bytes_gamma": r["latent_bytes_gamma"], "latent_bytes_cabac": r["latent_bytes_cabac"]}


def plot(rows, base, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    kb = [r["sqz_bytes"] / 1024 for r in rows]
    tk = [r["tfc_weight_bytes"] / 1024 for r in rows]
    acc = [r["sqz_accuracy"] for r in rows]
    ax.plot(kb, acc, "o-", label=".sqz file (whole model)")
    ax.plot(tk, [r["epr_accuracy"] for r in rows], "s--", label="tfc tutorial: weight strings + log-steps")
    for r, x_, y_ in zip(rows, kb, acc):
        ax.annotate(f"λ={r['lambda']:g}", (x_, y_), xytext=(6, -10), textcoords="offset points", fontsize=8)
    ax.axhline(base["accuracy"], color="gray", ls=":", label=f"float32 ({base['weight_bytes'] / 1024:.0f} KB)")
    ax.set_xlabel("size [KB]")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("tutorial", "lenet5"), default="tutorial")
    ap.add_argument("--lambdas", default="2,5,10,20,50")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: default)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-epochs", type=int, default=0, help="epochs of the float32 model (default: --epochs)")
    ap.add_argument("--warm-start", action="store_true",
                    help="start every EPR model from the trained float32 model (squeezefmt.keras.epr.make_compressible)")
    ap.add_argument("--cosine", action="store_true", help="cosine learning-rate decay (to 2 %%) over the epochs")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in --out (other lambdas of the same recipe) and add these")
    ap.add_argument("--repack", action="store_true",
                    help="no training: pack and evaluate the .h5 files a previous run left in --work")
    ap.add_argument("--snapshot-epochs", default="",
                    help="also save epr_lambda<L>_epoch<E>.h5 after these epochs (e.g. 2,5; log-steps rounded)")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke runs)")
    ap.add_argument("--work", default=None, help="keep the .h5/.sqz files here")
    ap.add_argument("--out", default=None, help="JSON path (default bench-results/epr_<model>.json)")
    args = ap.parse_args(argv)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from sqzdev import datasets  # noqa: E402

    import squeezefmt.keras as sk
    from squeezefmt.keras.epr import PowerLawRegularizer

    (x, y), (xt, yt) = datasets.load_mnist()
    x = (x.astype(np.float32) / 255.0)[..., None]
    xt = (xt.astype(np.float32) / 255.0)[..., None]
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    data = ((x, y), (xt, yt))
    work = args.work or tempfile.mkdtemp(prefix="epr_train_")
    os.makedirs(work, exist_ok=True)
    out = args.out or os.path.join(ROOT, "bench-results", f"epr_{args.model}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    plain = build(args.model, epr=False)
    n_params = plain.count_params()
    weight_bytes = 4 * n_params
    base = {"params": n_params, "weight_bytes": weight_bytes, "accuracy": None}
    if args.repack:
        plain = tf.keras.models.load_model(os.path.join(work, "float32.h5"))
        base.update(accuracy=accuracy(plain, xt, yt),
                    sqz_lossless_bytes=len(sk.pack(os.path.join(work, "float32.h5"))))
    elif not args.skip_baseline:
        tf.keras.utils.set_random_seed(args.seed)
        plain = build(args.model, epr=False)
        acc, secs = train(plain, data, args.baseline_epochs or args.epochs, args.batch, args.lr, args.seed,
                          args.cosine)
        plain.save(os.path.join(work, "float32.h5"))
        base.update(accuracy=acc, train_seconds=round(secs, 1),
                    sqz_lossless_bytes=len(sk.pack(os.path.join(work, "float32.h5"))))
        print(f"float32: {n_params} params, {weight_bytes} bytes, accuracy {acc:.4f}", flush=True)

    rows = []
    if args.append and os.path.exists(out):
        with open(out) as fh:
            old = json.load(fh)
        new_lambdas = {float(v) for v in args.lambdas.split(",") if v}
        rows = [r for r in old["rows"] if r["lambda"] not in new_lambdas]
    for lam in [float(v) for v in args.lambdas.split(",") if v]:
        tf.keras.utils.set_random_seed(args.seed)
        h5 = os.path.join(work, f"epr_lambda{lam:g}.h5")
        if args.repack:
            model = tf.keras.models.load_model(h5)
            epr_acc, secs = accuracy(model, xt, yt), None
        elif args.warm_start:
            if base["accuracy"] is None:
                raise SystemExit("--warm-start needs the float32 baseline (drop --skip-baseline)")
            from squeezefmt.keras.epr import make_compressible

            model = make_compressible(plain, PowerLawRegularizer(lam / n_params))
        else:
            model = build(args.model, PowerLawRegularizer(lam / n_params))
        if not args.repack:
            snaps = {int(v) for v in args.snapshot_epochs.split(",") if v}
            cbs = [snapshot_callback(snaps, lambda e, lam=lam: os.path.join(work, f"epr_lambda{lam:g}_epoch{e}.h5"))]
            epr_acc, secs = train(model, data, args.epochs, args.batch, args.lr, args.seed, args.cosine,
                                  cbs if snaps else ())
            from squeezefmt.keras.epr import round_log_steps

            round_log_steps(model)  # float16 log-steps, as the tutorial's compress_latent stores them
            model.save(h5)
        sqz = sk.pack(h5)
        with open(os.path.join(work, f"epr_lambda{lam:g}.sqz"), "wb") as fh:
            fh.write(sqz)
        loaded = sk.load(sqz)
        sqz_acc = accuracy(loaded, xt, yt)
        tfc_bytes, strings = tfc_tutorial_bytes(model)
        same = check_streams(sqz, strings)
        bd = sqz_breakdown(sqz)
        row = {
            "lambda": lam, "epochs": args.epochs, "warm_start": args.warm_start, "cosine_lr": args.cosine,
            "train_seconds": None if secs is None else round(secs, 1),
            "epr_accuracy": epr_acc, "sqz_accuracy": sqz_acc, "sqz_error_pct": round(100 * (1 - sqz_acc), 2),
            "sqz_bytes": len(sqz), "ratio_vs_float32": weight_bytes / len(sqz),
            "header_bytes": bd["header"], "stream_bytes": bd["streams"], "padding_bytes": bd["padding"],
            "ratio_streams_only": weight_bytes / bd["streams"],
            "tfc_weight_bytes": tfc_bytes, "tfc_ratio": weight_bytes / tfc_bytes,
            "streams_identical_to_tfc": same, "h5_bytes": os.path.getsize(h5),
        }
        row.update(cabac_recoded(sqz, weight_bytes))
        rows.append(row)
        rows.sort(key=lambda r: r["lambda"])
        print(f"lambda {lam:g}: .sqz {len(sqz)} B ({row['ratio_vs_float32']:.0f}x; header {bd['header']}, streams "
              f"{bd['streams']}, padding {bd['padding']}), tfc {tfc_bytes} B ({row['tfc_ratio']:.0f}x), "
              f"latents re-coded with cabac {row['sqz_cabac_bytes']} B ({row['ratio_cabac']:.0f}x), "
              f"accuracy {epr_acc:.4f} trained / {sqz_acc:.4f} from .sqz, {same} streams == tfc", flush=True)
        result = {"model": args.model, "float32": base, "rows": rows, "work": work}
        with open(out, "w") as fh:
            json.dump(result, fh, indent=2)

    print()
    print(f"{args.model}: float32 {weight_bytes} B weights, accuracy {base['accuracy']}")
    print(f"{'lambda':>6} {'sqz B':>8} {'ratio':>7} {'hdr B':>6} {'streams':>8} {'tfc B':>7} {'tfc x':>6} "
          f"{'cabac B':>8} {'cabac x':>7} {'acc(EPR)':>9} {'acc(sqz)':>9}")
    for r in rows:
        print(f"{r['lambda']:>6g} {r['sqz_bytes']:>8} {r['ratio_vs_float32']:>6.0f}x {r['header_bytes']:>6} "
              f"{r['stream_bytes']:>8} {r['tfc_weight_bytes']:>7} {r['tfc_ratio']:>5.0f}x "
              f"{r.get('sqz_cabac_bytes', 0):>8} {r.get('ratio_cabac', 0):>6.0f}x {r['epr_accuracy']:>9.4f} "
              f"{r['sqz_accuracy']:>9.4f}")
    try:
        import matplotlib  # noqa: F401 - only the plot needs it
    except ImportError:
        print(f"wrote {out} (no plot: matplotlib is not installed)")
        return 0
    if rows and base["accuracy"] is not None:
        png = os.path.splitext(out)[0] + ".png"
        recipe = f"{args.epochs} epochs" + (", warm start" if args.warm_start else "") + (", cosine lr" if args.cosine else "")
        plot(rows, base, png, f"EPR, {args.model} on MNIST ({recipe})")
        print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
