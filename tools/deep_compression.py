"""Deep Compression (Han, Mao, Dally 2016) reproduced on MNIST: prune, cluster, Huffman -> .sqz.

    .venv/bin/python tools/deep_compression.py                     # both models, ~15 min on 2 cores
    .venv/bin/python tools/deep_compression.py --model lenet300    # one model
    .venv/bin/python tools/deep_compression.py --quick             # smoke run (tiny schedule, ~1 min)

For LeNet-300-100 and LeNet-5 (the Caffe variant Deep Compression used: conv 20@5x5, pool, conv
50@5x5, pool, fc 500, fc 10, no ReLU after the convolutions) it runs the paper's three stages:

1. **train** the dense float32 model (Adam);
2. **prune with retraining**: per-layer magnitude masks raised gradually along Zhu & Gupta's cubic
   schedule (``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3``), masked gradients, then fine-tuning
   at the final sparsity;
3. **cluster with retraining of the centroids**: each tensor's surviving weights are k-means
   clustered (linear initialisation, squeezefmt's own ``kmeans_1d``) into ``2**bits`` shared values;
   the centroids are trained with the summed gradients of their weights (the paper's weight-sharing
   update); pruned weights stay exactly zero. Biases get their own small codebooks.

then **packs** the model with ``squeezefmt.keras.save(model, preset="deep-compression")``: every
kernel has at most ``2**bits`` distinct non-zero values, so the planner stores it as CSR (``sparse``)
over an *exact* codebook with Huffman-coded indices, and biases as exact codebooks -- the .sqz decodes
to exactly the trained weights. The packed file is loaded back with ``squeezefmt.keras.load`` and its
test error measured.

Output: a table (size, ratio vs float32 weights, test error before/after, next to the paper's
numbers) and ``bench-results/deep_compression.json``; the models (.h5 baseline, .sqz) go to
``--work-dir`` (default ``$XDG_CACHE_HOME/squeezefmt-dc``), where the dense baselines are cached so
that a rerun with the same settings skips stage 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from sqzdev import datasets  # noqa: E402

# The paper's Table 1/2/3 (Han et al., ICLR 2016).
PAPER = {
    "lenet300": {"name": "LeNet-300-100", "params": 266_610, "ratio": 40, "size_before_kb": 1070, "size_after_kb": 27,
                 "err_before": 1.64, "err_after": 1.58,
                 "density": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}},
    "lenet5": {"name": "LeNet-5", "params": 431_080, "ratio": 39, "size_before_kb": 1720, "size_after_kb": 44,
               "err_before": 0.80, "err_after": 0.74,
               "density": {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}},
}


@dataclasses.dataclass
class Recipe:
    """Per-model schedule. ``density`` and ``bits`` are per layer name."""

    dense_epochs: int
    prune_epochs: int          # gradual pruning (cubic schedule) ...
    finetune_epochs: int       # ... then fine-tuning at the final sparsity
    cluster_epochs: int        # centroid retraining
    density: dict
    bits: dict                 # kernel codebook bits per layer
    bias_bits: int = 5
    lr: float = 1e-3
    prune_lr: float = 5e-4
    finetune_lr: float = 2e-4
    cluster_lr: float = 1e-4
    batch: int = 128
    l2: float = 0.0


RECIPES = {
    "lenet300": Recipe(dense_epochs=20, prune_epochs=15, finetune_epochs=15, cluster_epochs=6,
                       density={"fc1": 0.035, "fc2": 0.07, "fc3": 0.25}, bits={"fc1": 4, "fc2": 4, "fc3": 5},
                       prune_lr=1e-3, finetune_lr=3e-4, l2=5e-5),
    "lenet5": Recipe(dense_epochs=10, prune_epochs=8, finetune_epochs=6, cluster_epochs=3,
                     density={"conv1": 0.6, "conv2": 0.1, "fc1": 0.03, "fc2": 0.15},
                     bits={"conv1": 5, "conv2": 5, "fc1": 4, "fc2": 5},
                     prune_lr=1e-3, finetune_lr=3e-4, l2=5e-5),
}


def build(tf, name: str):
    L = tf.keras.layers
    if name == "lenet300":
        return tf.keras.Sequential([
            tf.keras.Input((28, 28, 1), name="image"), L.Flatten(name="flatten"),
            L.Dense(300, activation="relu", name="fc1"), L.Dense(100, activation="relu", name="fc2"),
            L.Dense(10, name="fc3"),
        ], name="lenet_300_100")
    if name == "lenet5":  # Caffe's LeNet as in Deep Compression: no nonlinearity after the convolutions
        return tf.keras.Sequential([
            tf.keras.Input((28, 28, 1), name="image"),
            L.Conv2D(20, 5, name="conv1"), L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(50, 5, name="conv2"), L.MaxPooling2D(2, name="pool2"),
            L.Flatten(name="flatten"), L.Dense(500, activation="relu", name="fc1"), L.Dense(10, name="fc2"),
        ], name="lenet5")
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------
# training machinery


class Trainer:
    """A custom loop: masked gradients (pruning) or shared-weight centroid updates (clustering)."""

    def __init__(self, tf, model, recipe: Recipe, data, seed: int = 0):
        self.tf, self.model, self.recipe = tf, model, recipe
        (self.x, self.y), (self.xt, self.yt) = data
        self.loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.kernels = {layer.name: layer.kernel for layer in model.layers if hasattr(layer, "kernel")}
        self.masks = {n: tf.Variable(tf.ones_like(v), trainable=False) for n, v in self.kernels.items()}
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _reseed(self, stage: str) -> None:
        """Each stage shuffles from its own seed, so results do not depend on a cached earlier stage."""
        self.rng = np.random.default_rng([self.seed, int(hashlib.sha256(stage.encode()).hexdigest()[:8], 16)])

    def error(self, model=None) -> float:
        model = model or self.model
        logits = model.predict(self.xt, batch_size=1000, verbose=0)
        return float(100.0 * np.mean(np.argmax(logits, 1) != self.yt))

    def _batches(self):
        order = self.rng.permutation(len(self.x))
        b = self.recipe.batch
        for i in range(0, len(order) - b + 1, b):
            idx = order[i:i + b]
            yield self.x[idx], self.y[idx]

    def _l2(self):
        if not self.recipe.l2:
            return 0.0
        return self.recipe.l2 * self.tf.add_n([self.tf.reduce_sum(k * k) for k in self.kernels.values()])

    # -- stage 1 and 2: dense training / pruning ----------------------------------------------

    def fit(self, epochs: int, lr: float, prune_to: dict | None = None, ramp_epochs: int = 0, label: str = ""):
        tf = self.tf
        self._reseed(label)
        opt = tf.keras.optimizers.Adam(lr)
        variables = self.model.trainable_variables
        mask_for = [self.masks.get(self._layer_of(v)) if self._is_kernel(v) else None for v in variables]

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = self.loss_fn(y, self.model(x, training=True)) + self._l2()
            grads = tape.gradient(loss, variables)
            grads = [g if m is None else g * m for g, m in zip(grads, mask_for)]
            opt.apply_gradients(zip(grads, variables))
            for v, m in zip(variables, mask_for):
                if m is not None:
                    v.assign(v * m)
            return loss

        steps_per_epoch = len(self.x) // self.recipe.batch
        total = epochs * steps_per_epoch
        ramp = ramp_epochs * steps_per_epoch
        t = 0
        for epoch in range(epochs):
            t0 = time.time()
            for xb, yb in self._batches():
                if prune_to and t % 50 == 0:
                    self._update_masks(prune_to, min(1.0, t / max(ramp, 1)) if ramp else 1.0)
                step(xb, yb)
                t += 1
            # cosine decay of the learning rate across the stage
            opt.learning_rate.assign(lr * 0.5 * (1 + math.cos(math.pi * t / total)))
            print(f"  [{label}] epoch {epoch + 1}/{epochs}: test error {self.error():.2f} % "
                  f"({time.time() - t0:.1f} s)", flush=True)
        if prune_to:
            self._update_masks(prune_to, 1.0)

    def _layer_of(self, v) -> str:
        return v.name.split("/")[0]

    def _is_kernel(self, v) -> bool:
        return self._layer_of(v) in self.kernels and "kernel" in v.name

    def _update_masks(self, density: dict, progress: float):
        """Cubic schedule: sparsity s_f * (1 - (1 - progress)^3); the smallest |w| of each layer go."""
        for name, var in self.kernels.items():
            final = 1.0 - density[name]
            sparsity = final * (1.0 - (1.0 - progress) ** 3)
            w = np.abs(var.numpy()).reshape(-1)
            drop = int(sparsity * w.size)
            mask = np.ones(w.size, np.float32)
            if drop:
                mask[np.argsort(w, kind="stable")[:drop]] = 0.0
            self.masks[name].assign(mask.reshape(var.shape))
            var.assign(var * self.masks[name])

    # -- stage 3: weight sharing ---------------------------------------------------------------

    def cluster_and_retrain(self, epochs: int, lr: float, bits: dict, bias_bits: int):
        """k-means (linear init) per tensor, then train the centroids with summed gradients."""
        tf = self.tf
        self._reseed("cluster")
        from squeezefmt.codecs.cluster import assign_nearest, kmeans_1d

        shared = []   # (variable, index tensor (flat, pruned -> K), centroid variable)
        for layer in self.model.layers:
            if not hasattr(layer, "kernel"):
                continue
            for var, nbits in ((layer.kernel, bits[layer.name]), (layer.bias, bias_bits)):
                w = var.numpy().reshape(-1)
                keep = w != 0 if var is layer.kernel else np.ones(w.size, bool)
                cent = kmeans_1d(w[keep], 1 << nbits, "linear").astype(np.float32)
                idx = np.full(w.size, cent.size, np.int32)
                idx[keep] = assign_nearest(w[keep], cent)
                cvar = tf.Variable(cent, name=f"{layer.name}_{var.name.split('/')[-1].split(':')[0]}_centroids")
                shared.append((var, tf.constant(idx), cvar))
        opt = tf.keras.optimizers.Adam(lr)

        def assign_all():
            for var, idx, cvar in shared:
                table = tf.concat([cvar, tf.zeros([1])], 0)
                var.assign(tf.reshape(tf.gather(table, idx), var.shape))

        assign_all()
        print(f"  [cluster] after k-means, before retraining: test error {self.error():.2f} %", flush=True)
        variables = [v for v, _, _ in shared]

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = self.loss_fn(y, self.model(x, training=True))
            grads = tape.gradient(loss, variables)
            cgrads = []
            for g, (_, idx, cvar) in zip(grads, shared):
                cgrads.append(tf.math.unsorted_segment_sum(tf.reshape(g, [-1]), idx, cvar.shape[0] + 1)[:-1])
            opt.apply_gradients(zip(cgrads, [c for _, _, c in shared]))
            assign_all()
            return loss

        steps = epochs * (len(self.x) // self.recipe.batch)
        t = 0
        for epoch in range(epochs):
            t0 = time.time()
            for xb, yb in self._batches():
                step(xb, yb)
                t += 1
            opt.learning_rate.assign(lr * 0.5 * (1 + math.cos(math.pi * t / steps)))
            print(f"  [cluster] epoch {epoch + 1}/{epochs}: test error {self.error():.2f} % "
                  f"({time.time() - t0:.1f} s)", flush=True)


# ----------------------------------------------------------------------------------------------


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_model(tf, key: str, recipe: Recipe, data, work: str, seed: int) -> dict:
    import zstandard

    import squeezefmt
    import squeezefmt.keras as sk

    paper = PAPER[key]
    print(f"== {paper['name']}", flush=True)
    tf.keras.utils.set_random_seed(seed)
    model = build(tf, key)
    trainer = Trainer(tf, model, recipe, data, seed)
    tag = _digest(recipe.dense_epochs, recipe.lr, recipe.batch, recipe.l2, seed, len(data[0][0]))
    base = os.path.join(work, f"{key}_dense_{tag}.h5")
    t_start = time.time()
    if os.path.exists(base):
        model.load_weights(base)
        print(f"  dense baseline from cache {base}")
    else:
        trainer.fit(recipe.dense_epochs, recipe.lr, label="dense")
        model.save(base, include_optimizer=False)
    err_dense = trainer.error()
    n_params = model.count_params()
    float_bytes = 4 * n_params
    h5_bytes = os.path.getsize(base)
    with open(base, "rb") as f:
        h5_zstd = len(zstandard.ZstdCompressor(level=19).compress(f.read()))
    dense_sqz = save_sqz(sk, model, None, "lossless")

    # stage 2: pruning with retraining
    trainer.fit(recipe.prune_epochs, recipe.prune_lr, prune_to=recipe.density, ramp_epochs=recipe.prune_epochs,
                label="prune")
    trainer.fit(recipe.finetune_epochs, recipe.finetune_lr, prune_to=recipe.density, ramp_epochs=0,
                label="finetune")
    err_pruned = trainer.error()
    pruned_sqz = save_sqz(sk, model, None, "lossless")
    density = {n: float(np.mean(v.numpy() != 0)) for n, v in trainer.kernels.items()}

    # stage 3: weight sharing with centroid retraining
    trainer.cluster_and_retrain(recipe.cluster_epochs, recipe.cluster_lr, recipe.bits, recipe.bias_bits)
    err_clustered = trainer.error()

    # pack: the deep-compression preset finds <= 2**bits values per kernel -> exact sparse+cluster
    model.save(os.path.join(work, f"{key}_deep_compression.h5"), include_optimizer=False)
    sqz_path = os.path.join(work, f"{key}_deep_compression.sqz")
    save_sqz(sk, model, sqz_path, "deep-compression")
    sqz_bytes = os.path.getsize(sqz_path)
    loaded = sk.load(sqz_path)
    exact = all(a.tobytes() == b.tobytes() for a, b in zip(loaded.get_weights(), model.get_weights()))
    err_loaded = trainer.error(loaded)
    tensors = []
    with squeezefmt.open(sqz_path) as f:
        header = f.header_size
        for name in f.keys():
            i = f.info(name)
            cfg = i.codec_config
            tensors.append({"name": name, "shape": list(i.shape), "codec": i.codec,
                            "values": cfg.get("values", {}).get("id") if i.codec == "sparse" else None,
                            "raw_bytes": i.nbytes, "stored_bytes": i.stored_bytes,
                            "bits_per_weight": round(8 * i.stored_bytes / max(np.prod(i.shape), 1), 3)})
    return {
        "model": paper["name"], "key": key, "params": n_params, "float32_bytes": float_bytes,
        "h5_bytes": h5_bytes, "h5_zstd19_bytes": h5_zstd, "dense_lossless_sqz_bytes": len(dense_sqz),
        "pruned_lossless_sqz_bytes": len(pruned_sqz), "sqz_bytes": sqz_bytes, "header_bytes": header,
        "ratio": float_bytes / sqz_bytes, "ratio_vs_h5": h5_bytes / sqz_bytes,
        "err_dense": err_dense, "err_pruned": err_pruned, "err_clustered": err_clustered, "err_sqz": err_loaded,
        "err_delta": err_loaded - err_dense, "weights_exact_after_pack": exact,
        "density": density, "nnz": int(sum(round(d * v.numpy().size) for d, v in zip(density.values(), trainer.kernels.values()))),
        "bits": recipe.bits, "bias_bits": recipe.bias_bits, "recipe": dataclasses.asdict(recipe),
        "tensors": tensors, "paper": paper, "seconds": time.time() - t_start, "sqz_path": sqz_path,
    }


def save_sqz(sk, model, path: str | None, preset: str):
    """``squeezefmt.keras.save``, retried with a one-field metadata nudge if the container writer cannot
    settle its layout (its compressed header length can oscillate around a 64-byte boundary; reported)."""
    from squeezefmt.errors import SqueezeError

    for attempt in range(16):
        try:
            return sk.save(model, path, preset=preset, metadata={"layout_nudge": attempt} if attempt else None)
        except SqueezeError as exc:
            if "settle" not in str(exc):
                raise
            print(f"  (container writer: {exc}; retrying with a metadata nudge)", flush=True)
    raise RuntimeError("the container layout never settled")


def print_table(rows: list[dict]) -> None:
    print()
    print(f"{'model':<14} {'float32':>9} {'.h5':>9} {'.sqz':>8} {'ratio':>7} {'paper':>6} "
          f"{'err dense':>9} {'pruned':>7} {'clust.':>7} {'.sqz':>6} {'delta':>6} {'paper err':>12}")
    for r in rows:
        p = r["paper"]
        print(f"{r['model']:<14} {r['float32_bytes']:>9} {r['h5_bytes']:>9} {r['sqz_bytes']:>8} {r['ratio']:>6.1f}x "
              f"{p['ratio']:>5}x {r['err_dense']:>8.2f}% {r['err_pruned']:>6.2f}% {r['err_clustered']:>6.2f}% "
              f"{r['err_sqz']:>5.2f}% {r['err_delta']:>+5.2f} {p['err_before']:.2f}->{p['err_after']:.2f}%")
    print()
    for r in rows:
        dens = ", ".join(f"{k} {v * 100:.1f}%" for k, v in r["density"].items())
        print(f"{r['model']}: density {dens}; nnz {r['nnz']}; bits {r['bits']} (biases {r['bias_bits']}); "
              f"header {r['header_bytes']} B; weights exact after pack: {r['weights_exact_after_pack']}")
        for t in r["tensors"]:
            extra = f"+{t['values']}" if t["values"] else ""
            print(f"    {t['name']:<26} {t['codec'] + extra:<15} {t['raw_bytes']:>8} -> {t['stored_bytes']:>6} B "
                  f"({t['bits_per_weight']:.3f} bits/weight)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["lenet300", "lenet5", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 epoch per stage on 6000 images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                       "squeezefmt-dc"))
    ap.add_argument("--json", default=os.path.join(REPO, "bench-results", "deep_compression.json"))
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (shared machine)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override a recipe field, e.g. --set l2=5e-5 --set 'density={\"fc1\": 0.05, ...}'")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in {f.name for f in dataclasses.fields(Recipe)}:
            ap.error(f"unknown recipe field {field!r}")
        overrides[field] = json.loads(value)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    (x, y), (xt, yt) = datasets.load_mnist()
    x = (x.astype(np.float32) / 255.0)[..., None]
    xt = (xt.astype(np.float32) / 255.0)[..., None]
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    keys = ["lenet300", "lenet5"] if args.model == "all" else [args.model]
    rows = []
    for key in keys:
        recipe = dataclasses.replace(RECIPES[key], **overrides)
        data = ((x, y), (xt, yt))
        if args.quick:
            recipe = dataclasses.replace(recipe, dense_epochs=1, prune_epochs=1, finetune_epochs=1, cluster_epochs=1)
            data = ((x[:6000], y[:6000]), (xt, yt))
        rows.append(run_model(tf, key, recipe, data, args.work_dir, args.seed))
    print_table(rows)
    if args.json and not args.quick:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "argv": sys.argv[1:], "tensorflow": tf.__version__}, f, indent=1, default=float)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
