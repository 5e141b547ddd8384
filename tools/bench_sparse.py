"""Benchmarks for pruned / clustered weights: entropy-coder and CSR throughput, bits vs entropy, tfmot sizes.

    .venv/bin/python tools/bench_sparse.py                 # everything (~4 min: trains small tfmot models)
    .venv/bin/python tools/bench_sparse.py --no-tfmot      # throughput + entropy only (seconds, no TensorFlow)

Sections, all measured in this one run:

1. **Huffman decode** of cluster indices (16 and 32 bell-shaped clusters, 4M symbols): symbols/s and
   bits/symbol of ``squeezefmt.entropy.huffman`` (C backend, and the Python reference on a slice),
   against zstd (levels 3 and 19) decompressing the same index bytes (one byte per index).
2. **CSR decode**: the ``sparse`` codec's structure stream of a 90 % and a 50 % sparse 2048x2048
   matrix, decoded to flat positions (non-zeros/s and bits per non-zero), against zstd-19 of the
   same index data as bytes (row counts + column gaps as uint16, decompressed then turned into
   positions) and of the packed bitmask (decompressed, unpacked, ``flatnonzero``).
3. **Cluster codec bits/weight vs the empirical entropy** of its indices (order-0 limit), for
   synthetic clustered tensors and, when present, the Deep Compression models from
   tools/deep_compression.py and the tfmot-clustered model below.
4. **tensorflow-model-optimization models** (MNIST CNN, trained briefly): pruned to 50 % and 90 %
   with ``prune_low_magnitude`` (PolynomialDecay) + ``strip_pruning``, and clustered to 16 clusters
   with ``cluster_weights`` + ``strip_clustering``; sizes of the .h5, the zipped .h5 (deflate, as
   the TF pruning guide measures), zstd-19 of the float32 weights and the lossless .sqz, with
   ratios against the float32 weights and predictions checked identical after loading the .sqz.

Prints tables and writes ``bench-results/bench_sparse.json``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import zstandard  # noqa: E402

import squeezefmt  # noqa: E402
from squeezefmt.codecs.cluster import Cluster, distinct_bits, index_entropy  # noqa: E402
from squeezefmt.codecs.sparse import csr_structure, decode_structure, encode_structure  # noqa: E402
from squeezefmt.entropy import huffman  # noqa: E402
from sqzdev.timing import best_of  # noqa: E402


def bell(k, n, rng):
    p = np.exp(-0.5 * ((np.arange(k) - (k - 1) / 2) / (k / 5)) ** 2)
    return rng.choice(k, n, p=p / p.sum()).astype(np.uint8)


# -- 1. Huffman ------------------------------------------------------------------------------

def bench_huffman(n: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for k in (16, 32):
        sym = bell(k, n, rng)
        raw = sym.tobytes()
        h = index_entropy(sym)
        row = {"symbols": n, "alphabet": k, "entropy_bits": h}
        for backend in huffman.BACKENDS:
            m = n if backend == "c" else min(n, 200_000)
            data = huffman.encode(sym[:m], alphabet_size=k, backend=backend)
            assert np.array_equal(huffman.decode(data, m, backend=backend), sym[:m])
            t = best_of(lambda: huffman.decode(data, m, backend=backend), repeats if backend == "c" else 1)
            te = best_of(lambda: huffman.encode(sym[:m], alphabet_size=k, backend=backend), 1 if backend != "c" else 3)
            row[f"huffman_{backend}"] = {"bits_per_symbol": 8 * len(data) / m, "decode_Msym_s": m / t / 1e6,
                                         "encode_Msym_s": m / te / 1e6}
        d = zstandard.ZstdDecompressor()
        for level in (3, 19):
            z = zstandard.ZstdCompressor(level=level).compress(raw)
            assert d.decompress(z) == raw
            t = best_of(lambda: d.decompress(z), repeats)
            row[f"zstd{level}"] = {"bits_per_symbol": 8 * len(z) / n, "decode_Msym_s": n / t / 1e6}
        rows.append(row)
    return rows


# -- 2. CSR ----------------------------------------------------------------------------------

def bench_csr(repeats: int) -> list[dict]:
    rng = np.random.default_rng(1)
    rows_out = []
    r, c = 2048, 2048
    for density in (0.1, 0.5):
        mask = rng.random(r * c) < density
        nnz = int(mask.sum())
        stream = encode_structure(mask, c)
        pos, _ = decode_structure(stream, r, c)
        assert np.array_equal(pos, np.flatnonzero(mask))
        t = best_of(lambda: decode_structure(stream, r, c), repeats)
        rowlens, gaps = csr_structure(mask, c)
        # zstd on the same index data as bytes, then the same positions out
        idx_bytes = rowlens.astype("<u2").tobytes() + gaps.astype("<u2").tobytes()
        z = zstandard.ZstdCompressor(level=19).compress(idx_bytes)
        d = zstandard.ZstdDecompressor()

        def zstd_positions():
            buf = np.frombuffer(d.decompress(z), "<u2")
            rl, gp = buf[:r].astype(np.int64), buf[r:].astype(np.int64)
            cs = np.cumsum(gp + 1)
            ends = np.cumsum(rl)
            starts = ends - rl
            base = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0)
            return np.repeat(np.arange(r), rl) * c + cs - np.repeat(base, rl) - 1

        assert np.array_equal(zstd_positions(), pos)
        tz = best_of(zstd_positions, repeats)
        bm = zstandard.ZstdCompressor(level=19).compress(np.packbits(mask).tobytes())

        def bitmask_positions():
            return np.flatnonzero(np.unpackbits(np.frombuffer(d.decompress(bm), np.uint8))[: r * c])

        assert np.array_equal(bitmask_positions(), pos)
        tb = best_of(bitmask_positions, repeats)
        p = density
        h = (-(1 - p) * np.log2(1 - p) - p * np.log2(p)) / p     # bits per non-zero of an i.i.d. mask
        rows_out.append({
            "shape": [r, c], "density": density, "nnz": nnz, "entropy_bits_per_nnz": h,
            "csr": {"bytes": len(stream), "bits_per_nnz": 8 * len(stream) / nnz, "decode_Mnnz_s": nnz / t / 1e6,
                    "decode_Melem_s": r * c / t / 1e6},
            "zstd19_csr_bytes": {"bytes": len(z), "bits_per_nnz": 8 * len(z) / nnz, "decode_Mnnz_s": nnz / tz / 1e6},
            "zstd19_bitmask": {"bytes": len(bm), "bits_per_nnz": 8 * len(bm) / nnz, "decode_Mnnz_s": nnz / tb / 1e6},
        })
    return rows_out


# -- 3. bits per weight vs entropy ----------------------------------------------------------------

def cluster_row(label: str, w: np.ndarray) -> dict | None:
    """Cluster codec cost vs the order-0 entropy of the indices (and of the whole tensor's values)."""
    found = distinct_bits(w, 1 << 16)
    if found is None:
        return None
    book, inverse = found
    enc = Cluster(bits=max(1, (book.size - 1).bit_length()), exact=True).encode(w)
    stored = sum(len(s) for s in enc.streams)
    h = index_entropy(inverse)
    codebook_bits = 8 * book.nbytes
    return {"tensor": label, "elements": int(w.size), "clusters": int(book.size), "entropy_bits": h,
            "bits_per_weight": 8 * stored / w.size,
            "limit_bits_per_weight": (h * w.size + codebook_bits) / w.size,
            "efficiency": (h * w.size + codebook_bits) / (8 * stored)}


def bench_entropy(extra: dict[str, np.ndarray]) -> list[dict]:
    rng = np.random.default_rng(2)
    rows = []
    for k in (4, 16, 32, 256):
        book = np.sort(rng.normal(0, 0.05, k)).astype(np.float32)
        rows.append(cluster_row(f"synthetic {k} clusters (bell) 512x512", book[bell(k, 512 * 512, rng)].reshape(512, 512)))
    for label, w in extra.items():
        row = cluster_row(label, w)
        if row:
            rows.append(row)
    return [r for r in rows if r]


def deep_compression_tensors(work: str) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(glob.glob(os.path.join(work, "*_deep_compression.sqz"))):
        with squeezefmt.open(path) as f:
            for name in f.keys():
                if "kernel" in name and f.info(name).nbytes > 4000:
                    w = f.tensor(name)
                    out[f"{os.path.basename(path).split('_')[0]} {name} (non-zeros)"] = w[w != 0]
    return out


# -- 4. tfmot -------------------------------------------------------------------------------------

def bench_tfmot(epochs: int, workdir: str) -> tuple[list[dict], dict[str, np.ndarray]]:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    from sqzdev import datasets  # noqa: E402
    import squeezefmt.keras as sk
    from squeezefmt.keras.formats.h5 import read_h5

    tf.config.threading.set_intra_op_parallelism_threads(2)
    (x, y), (xt, yt) = datasets.load_mnist()
    x = (x[:30000].astype(np.float32) / 255)[..., None]
    y = y[:30000].astype(np.int64)
    xt = (xt.astype(np.float32) / 255)[..., None]
    yt = yt.astype(np.int64)
    L = tf.keras.layers
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def cnn():
        tf.keras.utils.set_random_seed(0)
        return tf.keras.Sequential([
            tf.keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
            L.Dense(128, activation="relu"), L.Dense(10)])

    base = cnn()
    base.compile("adam", loss, metrics=["accuracy"])
    base.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    base_w = base.get_weights()
    models = {}
    steps = epochs * (len(x) // 128)
    for sparsity in (0.5, 0.9):
        m = cnn()
        m.set_weights(base_w)
        sched = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=int(steps * 0.7), frequency=50)
        pm = tfmot.sparsity.keras.prune_low_magnitude(m, pruning_schedule=sched)
        pm.compile("adam", loss, metrics=["accuracy"])
        pm.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        models[f"pruned {int(sparsity * 100)} %"] = tfmot.sparsity.keras.strip_pruning(pm)
    cw = tfmot.clustering.keras
    m = cnn()
    m.set_weights(base_w)
    cm = cw.cluster_weights(m, number_of_clusters=16, cluster_centroids_init=cw.CentroidInitialization.LINEAR)
    cm.compile(tf.keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    cm.fit(x, y, batch_size=128, epochs=1, verbose=0)
    models["clustered 16"] = cw.strip_clustering(cm)
    models = {"dense (baseline)": base, **models}

    rows, tensors = [], {}
    for label, model in models.items():
        stem = os.path.join(workdir, label.split()[0] + "".join(c for c in label if c.isdigit()))
        h5 = stem + ".h5"
        model.save(h5, include_optimizer=False)
        with zipfile.ZipFile(stem + ".zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(h5, arcname="model.h5")
        arrays = read_h5(h5).arrays
        raw = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
        zw = len(zstandard.ZstdCompressor(level=19).compress(raw))
        sqz = stem + ".sqz"
        sk.pack(h5, sqz)
        loaded = sk.load(sqz)
        ref = model.predict(xt, batch_size=1000, verbose=0)
        same = bool(np.array_equal(loaded.predict(xt, batch_size=1000, verbose=0), ref))
        kernels = [a for n, a in arrays.items() if n.endswith("kernel:0")]
        with squeezefmt.open(sqz) as f:
            codecs = {n: f.info(n).codec for n in f.keys()}
        canon = stem + "_canonical.sqz"                       # pack --canonical-zeros: -0.0 -> +0.0
        sk.pack(h5, canon, canonical_zeros=True)
        same_canon = bool(np.array_equal(sk.load(canon).predict(xt, batch_size=1000, verbose=0), ref))
        weights = len(raw)
        rows.append({
            "model": label, "params": int(sum(a.size for a in arrays.values())), "float32_bytes": weights,
            "test_error": float(100 * np.mean(np.argmax(ref, 1) != yt)),
            "kernel_zero_fraction": float(np.mean(np.concatenate([k.ravel() for k in kernels]) == 0)),
            "h5_bytes": os.path.getsize(h5), "zip_h5_bytes": os.path.getsize(stem + ".zip"),
            "zstd19_weights_bytes": zw, "sqz_bytes": os.path.getsize(sqz),
            "ratio_sqz": weights / os.path.getsize(sqz), "ratio_zstd19": weights / zw,
            "ratio_zip_h5": weights / os.path.getsize(stem + ".zip"), "predictions_identical": same,
            "sqz_canonical_zeros_bytes": os.path.getsize(canon), "canonical_predictions_identical": same_canon,
            "codecs": codecs,
        })
        if label.startswith("clustered"):
            for n, a in arrays.items():
                if n.endswith("kernel:0") and a.size > 4000:
                    tensors[f"tfmot clustered {n}"] = a
    return rows, tensors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=4_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-tfmot", action="store_true")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the tfmot models")
    ap.add_argument("--json", default=os.path.join(REPO, "bench-results", "bench_sparse.json"))
    ap.add_argument("--dc-work-dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                          "squeezefmt-dc"),
                    help="where tools/deep_compression.py left its .sqz files (their kernels join section 3)")
    args = ap.parse_args(argv)
    result = {"huffman_backend_default": huffman.get_backend()}

    result["huffman"] = bench_huffman(args.symbols, args.repeats)
    print("\n1. Huffman decode of cluster indices vs zstd on the same bytes (one byte per index)")
    print(f"{'alphabet':>8} {'entropy':>8} | {'coder':<12} {'bits/sym':>8} {'decode Msym/s':>14} {'encode Msym/s':>14}")
    for r in result["huffman"]:
        for coder in [k for k in r if k.startswith(("huffman", "zstd"))]:
            c = r[coder]
            enc = f"{c['encode_Msym_s']:>14.1f}" if "encode_Msym_s" in c else f"{'':>14}"
            print(f"{r['alphabet']:>8} {r['entropy_bits']:>8.3f} | {coder:<12} {c['bits_per_symbol']:>8.3f} "
                  f"{c['decode_Msym_s']:>14.1f} {enc}")

    result["csr"] = bench_csr(args.repeats)
    print("\n2. CSR structure decode (2048x2048) vs zstd-19 on the same index bytes")
    print(f"{'density':>7} {'entropy':>8} | {'format':<22} {'bits/nnz':>9} {'decode Mnnz/s':>14}")
    for r in result["csr"]:
        for key, label in (("csr", "sparse CSR (Huffman)"), ("zstd19_csr_bytes", "zstd-19 u16 CSR bytes"),
                           ("zstd19_bitmask", "zstd-19 bitmask")):
            c = r[key]
            print(f"{r['density']:>7.2f} {r['entropy_bits_per_nnz']:>8.3f} | {label:<22} {c['bits_per_nnz']:>9.3f} "
                  f"{c['decode_Mnnz_s']:>14.1f}")

    extra = deep_compression_tensors(args.dc_work_dir)
    if not args.no_tfmot:
        with tempfile.TemporaryDirectory() as tmp:
            result["tfmot"], tf_tensors = bench_tfmot(args.epochs, tmp)
        extra.update(tf_tensors)
        print("\n4. tensorflow-model-optimization models (MNIST CNN), lossless .sqz")
        print(f"{'model':<18} {'err %':>6} {'zeros':>6} {'float32':>8} {'.h5':>8} {'zip .h5':>8} {'zstd19 w':>9} "
              f"{'.sqz':>8} {'sqz x':>6} {'zstd x':>6} {'zip x':>6} same {'canon0':>8} same")
        for r in result["tfmot"]:
            print(f"{r['model']:<18} {r['test_error']:>6.2f} {r['kernel_zero_fraction']:>6.2f} {r['float32_bytes']:>8} "
                  f"{r['h5_bytes']:>8} {r['zip_h5_bytes']:>8} {r['zstd19_weights_bytes']:>9} {r['sqz_bytes']:>8} "
                  f"{r['ratio_sqz']:>6.2f} {r['ratio_zstd19']:>6.2f} {r['ratio_zip_h5']:>6.2f} {r['predictions_identical']} "
                  f"{r['sqz_canonical_zeros_bytes']:>8} {r['canonical_predictions_identical']}")

    result["entropy"] = bench_entropy(extra)
    print("\n3. cluster codec: bits per weight vs the order-0 entropy of its indices")
    print(f"{'tensor':<58} {'n':>8} {'K':>4} {'H(idx)':>7} {'limit':>7} {'coded':>7} {'eff.':>6}")
    for r in result["entropy"]:
        print(f"{r['tensor'][:58]:<58} {r['elements']:>8} {r['clusters']:>4} {r['entropy_bits']:>7.3f} "
              f"{r['limit_bits_per_weight']:>7.3f} {r['bits_per_weight']:>7.3f} {100 * r['efficiency']:>5.1f}%")

    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
