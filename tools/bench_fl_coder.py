"""Bytes per round of the lossy federated presets with Huffman-coded vs arithmetic-coded indices.

A quick payload sequence without Flower: the classifier of tools/fl_demo.py (Flatten -> Dense(128,
relu) -> Dense(10), 101,770 weights) is trained centrally on Fashion-MNIST (or digits with
``--dataset digits``) for ``--rounds`` epochs; the weights after each epoch are the global models of
the rounds. Each lossy preset broadcasts the sequence twice, through one BroadcastEncoder each:

- ``coder=huffman``: the indices as squeezefmt coded them before the arithmetic coder;
- ``coder=auto``: the preset's default now (per tensor, the smaller of Huffman and CABAC);

and ``lossy-delta`` (the ``cabac`` codec for the first round and the deltas) once. Here each
round's model continues the previous one (central training), so the encoders do not carry a
residual (``carry_residual`` is for FedAvg, where each model is built on what clients hold).

Reported per preset and coder: downlink bytes of every round, the mean over rounds after the first,
the ratio to Flower's numpy serialization (``np.save`` of every tensor, the fl_demo baseline), and
the test accuracy of the model the receivers reconstruct after the last round (float model beside).

    python tools/bench_fl_coder.py                 # writes bench-results/fl_coder.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import squeezefmt.federated as fl  # noqa: E402

PRESETS = ("lossy", "lossy-delta-quant", "lossy-delta-3", "lossy-delta")


def numpy_bytes(weights) -> int:
    total = 0
    for w in weights:
        buf = io.BytesIO()
        np.save(buf, w, allow_pickle=False)
        total += buf.getbuffer().nbytes
    return total


def accuracy(weights, x, y) -> float:
    w1, b1, w2, b2 = weights
    h = np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0)
    return float(np.mean((h @ w2 + b2).argmax(1) == y))


def training_rounds(dataset: str, rounds: int, seed: int = 0):
    from sqzdev import datasets
    import tensorflow as tf

    (xt, yt), (xe, ye) = datasets.load(dataset)
    xt, xe = xt.astype(np.float32) / 255.0, xe.astype(np.float32) / 255.0
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.layers.Flatten(input_shape=xt.shape[1:]),
                                 tf.keras.layers.Dense(128, activation="relu"), tf.keras.layers.Dense(10)])
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    states = []
    for _ in range(rounds):
        model.fit(xt, yt, epochs=1, batch_size=64, verbose=0)
        states.append([w.copy() for w in model.get_weights()])
    return states, xe, np.asarray(ye)


def run(states, x, y) -> list[dict]:
    baseline = numpy_bytes(states[0])
    rows = []
    for preset in PRESETS:
        for coder in (("huffman", "auto") if preset != "lossy-delta" else ("cabac",)):
            p = fl.get_preset(preset, coder=coder) if coder != "cabac" else fl.get_preset(preset)
            enc = fl.BroadcastEncoder(p)
            dec = fl.BroadcastDecoder()
            sizes = []
            for state in states:
                payload = enc.encode(state)
                sizes.append(len(payload))
                got = dec.decode(payload)
            later = sizes[1:] or sizes
            mean = float(np.mean(later))
            rows.append({"preset": preset, "coder": coder, "bytes_per_round": sizes,
                         "mean_bytes_after_first": round(mean, 1), "numpy_bytes": baseline,
                         "ratio_vs_numpy": round(baseline / mean, 2),
                         "accuracy": round(accuracy(list(got.values()) if isinstance(got, dict) else got, x, y), 4)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits", "mnist"])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench-results", "fl_coder.json"))
    args = ap.parse_args(argv)
    states, x, y = training_rounds(args.dataset, args.rounds)
    rows = run(states, x, y)
    float_acc = accuracy(states[-1], x, y)
    print(f"float model accuracy after {args.rounds} rounds: {float_acc:.4f}; Flower numpy payload "
          f"{rows[0]['numpy_bytes']} bytes/round")
    print(f"{'preset':<15} {'coder':<8} {'mean bytes/round (r>=2)':>24} {'x numpy':>8} {'accuracy':>9}  per round")
    for r in rows:
        print(f"{r['preset']:<15} {r['coder']:<8} {r['mean_bytes_after_first']:>24.0f} {r['ratio_vs_numpy']:>8.1f} "
              f"{r['accuracy']:>9.4f}  {r['bytes_per_round']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"tool": "tools/bench_fl_coder.py", "dataset": args.dataset, "rounds": args.rounds,
                   "float_accuracy": float_acc, "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
