"""Does the decode overlap of layer-major predict pay? Paired timings in one process.

    python tools/bench_overlap.py MODEL.sqz [MODEL.sqz ...]     # e.g. the .sqz files bench_memory --work keeps

For each container: eager ``load`` and one ``load(lazy=True)`` model, ``predict`` over 32 and 640 rows
(batch 32); the three modes (eager, layer-major without overlap, with overlap) are called in turn,
five rounds, best of each, so a change in the machine's load hits all modes alike (``bench_memory.py``
runs each mode in its own process, one after another). Prints ratios to eager, the goal of issue 15 for
one call (eager time + the model's float32 weights decoded at 2 GB/s) with each lazy mode's ratio to it,
and the load average; writes bench-results/bench_overlap.json.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(paths: list[str]) -> None:
    import numpy as np

    import squeezefmt.keras as sk
    from squeezefmt.keras.lazy_schedule import configure

    results = []
    for path in paths:
        lazy, eager = sk.load(path, lazy=True), sk.load(path)
        decode_goal = sum(w.nbytes for w in eager.get_weights()) / 2e9  # seconds: float32 weights at 2 GB/s
        x = np.random.default_rng(0).random((640,) + tuple(lazy.inputs[0].shape[1:])).astype(np.float32)
        for rows in (32, 640):
            xs = x[:rows]
            eager.predict(xs, batch_size=32, verbose=0)
            lazy.predict(xs, batch_size=32, verbose=0)
            best = {"eager": float("inf"), "layer": float("inf"), "overlap": float("inf")}
            for _ in range(5):
                for mode in best:
                    if mode != "eager":
                        configure(lazy, overlap=mode == "overlap")
                    model = eager if mode == "eager" else lazy
                    t = time.perf_counter()
                    model.predict(xs, batch_size=32, verbose=0)
                    best[mode] = min(best[mode], time.perf_counter() - t)
            row = {"model": os.path.basename(path), "rows": rows, "ms": {k: v * 1e3 for k, v in best.items()},
                   "layer_over_eager": best["layer"] / best["eager"],
                   "overlap_over_eager": best["overlap"] / best["eager"], "goal_ms": (best["eager"] + decode_goal) * 1e3,
                   "load": os.getloadavg()[0]}
            row["layer_over_goal"], row["overlap_over_goal"] = (best[m] * 1e3 / row["goal_ms"] for m in ("layer", "overlap"))
            results.append(row)
            print(f"{row['model']:>24} {rows:4d} rows: eager {row['ms']['eager']:7.0f} ms, layer-major "
                  f"{row['ms']['layer']:7.0f} ms ({row['layer_over_eager']:.2f}x), + overlap {row['ms']['overlap']:7.0f} "
                  f"ms ({row['overlap_over_eager']:.2f}x); goal {row['goal_ms']:.0f} ms (layer-major "
                  f"{row['layer_over_goal']:.2f}x, + overlap {row['overlap_over_goal']:.2f}x); load {row['load']:.1f}", flush=True)
    os.makedirs("bench-results", exist_ok=True)
    with open(os.path.join("bench-results", "bench_overlap.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
