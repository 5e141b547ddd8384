"""Does ``pack --eval``'s budget hold on data the search never saw? Random splits x confidences.

    /work/main/.venv/bin/python tools/eval_holdout.py --models cnn390k --splits 5 --confidences 0,0.5,1

For each model and each of ``--splits`` seeded random 50/50 splits of the MNIST test set (the split
``pack --eval --holdout 0.5 --seed S`` makes), one sensitivity measurement on the search half, then
for every ``--confidence`` and budget one allocation (``--rounding`` as ``pack --eval --rounding``), packed, decoded with the numpy decoder and scored
on both halves. A row says whether the budget held on the held-out half (``held`` = held-out drop
<= budget). The summary gives, per confidence and budget, the median and worst ratio and how many
splits held. Writes ``bench-results/eval_holdout.json``.

The held-out drop of a fixed allocation is itself noisy: its standard error is about
``sqrt(changed predictions) / rows``, so at 0.1 points on 5,000 rows a few predictions decide it.
This tool measures how often the default guard keeps the budget, instead of assuming it.
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


def one_split(archive, clf, data, seed: int, budgets, confidences, say, rounding: str = "gptq") -> list:
    """Rows for one split: every (confidence, budget) allocation, packed and scored on both halves."""
    import squeezefmt
    from squeezefmt.keras.eval_pack import fine_select, search_backend
    from squeezefmt.keras.pack import pack_archive
    from squeezefmt.presets.epr import wants_epr
    from squeezefmt.search import StepSearch

    search_data, held = data.split(0.5, seed)
    scorer, held_scorer = clf.scorer(search_data), clf.scorer(held)
    ctx = archive.contexts()
    select = lambda n, a: n in ctx and ctx[n].role != "optimizer" and wants_epr(a, ctx[n])  # noqa: E731
    t0 = time.process_time()
    backend = search_backend(clf, search_data, rounding)
    searcher = StepSearch(archive.arrays, scorer.guarded_accuracy, distortion=scorer.kl, select=select,
                          backend=backend, fine=fine_select(ctx))
    searcher.prepare(max(budgets))
    prepare_cpu = time.process_time() - t0
    raw = sum(a.nbytes for a in archive.arrays.values())
    rows = []
    for z in confidences:
        for budget in budgets:
            scorer.confidence = z
            c0 = time.process_time()
            result = searcher.run(budget)
            blob = pack_archive(archive, None, preset="lossless", codecs=result.codecs)
            decoded = squeezefmt.load(blob)
            d_search = scorer.base - scorer.accuracy(decoded)
            d_held = held_scorer.base - held_scorer.accuracy(decoded)
            rows.append({"seed": seed, "rounding": rounding, "confidence": z, "budget": budget, "met": bool(result.met),
                         "bytes": len(blob), "ratio": raw / len(blob), "drop_search": d_search,
                         "drop_held": d_held, "changed_held": held_scorer.changed(decoded),
                         "held": bool(result.met and d_held <= budget + 1e-9),
                         "cpu_s": prepare_cpu + time.process_time() - c0})
            say(rows[-1])
    return rows


def summary(rows: list) -> list:
    out = []
    keys = sorted({(r["confidence"], r["budget"]) for r in rows})
    for z, b in keys:
        sel = [r for r in rows if r["confidence"] == z and r["budget"] == b]
        ratios = [r["ratio"] for r in sel if r["met"]]
        out.append({"confidence": z, "budget": b, "splits": len(sel), "met": sum(r["met"] for r in sel),
                    "held": sum(r["held"] for r in sel),
                    "median_ratio": float(np.median(ratios)) if ratios else None,
                    "min_ratio": float(min(ratios)) if ratios else None,
                    "worst_held_drop": max(r["drop_held"] for r in sel),
                    "mean_held_drop": float(np.mean([r["drop_held"] for r in sel]))})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="cnn390k")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budgets", default="0.1")
    ap.add_argument("--confidences", default="0.5,1")
    ap.add_argument("--rounding", default="gptq", choices=("gptq", "rdo"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "eval_holdout.json"))
    args = ap.parse_args(argv)
    from bench_posttrain import load_models
    from sqzdev import datasets
    from squeezefmt.keras.evaluate import KerasClassifier
    from squeezefmt.keras.formats import read_archive
    from squeezefmt.search.data import EvalData

    budgets = [float(b) for b in args.budgets.split(",") if b]
    confidences = [float(z) for z in args.confidences.split(",") if z]
    (_, _), (x, y) = datasets.load_mnist()
    x, y = x.astype(np.float32) / 255.0, y.astype(np.int64)
    results = {}
    for name, path in load_models(args.models.split(",")).items():
        archive = read_archive(path)
        clf = KerasClassifier(archive)
        data = EvalData([x.reshape((-1, *tuple(clf.model.inputs[0].shape[1:])))], y)
        print(f"\n{name}: {path}")
        print(f"{'seed':>4} {'z':>4} {'budget':>6} {'met':>4} {'bytes':>8} {'ratio':>7} {'d_search':>8} "
              f"{'d_held':>7} {'changed':>7} {'held':>5} {'cpu_s':>6}")
        say = lambda r: print(f"{r['seed']:>4} {r['confidence']:>4g} {r['budget']:>6g} {str(r['met']):>4} "  # noqa: E731
                              f"{r['bytes']:>8} {r['ratio']:>7.2f} {r['drop_search']:>8.2f} {r['drop_held']:>7.2f} "
                              f"{r['changed_held']:>7} {str(r['held']):>5} {r['cpu_s']:>6.1f}", flush=True)
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.splits):
            rows += one_split(archive, clf, data, seed, budgets, confidences, say, args.rounding)
        results[name] = {"rows": rows, "summary": summary(rows)}
        print(f"\n{'z':>4} {'budget':>6} {'met':>5} {'held':>5} {'median x':>9} {'min x':>7} {'worst d_held':>12}")
        for s in results[name]["summary"]:
            med = f"{s['median_ratio']:.2f}" if s["median_ratio"] else "-"
            low = f"{s['min_ratio']:.2f}" if s["min_ratio"] else "-"
            print(f"{s['confidence']:>4g} {s['budget']:>6g} {s['met']:>2}/{s['splits']:<2} {s['held']:>2}/{s['splits']:<2} "
                  f"{med:>9} {low:>7} {s['worst_held_drop']:>12.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
