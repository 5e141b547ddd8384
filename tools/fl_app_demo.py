#!/usr/bin/env python3
"""A real Flower run on today's API: ServerApp + ClientApps (Message API), numpy vs squeezefmt payloads.

Flower's simulation runtime (``flwr.simulation.run_simulation``, Ray backend) runs one ``ServerApp``
whose strategy is ``flwr.serverapp.strategy.FedAvg`` and N virtual SuperNodes running a ``ClientApp``.
The clients train a small numpy MLP (64 -> 256 relu -> 10, 19,210 float32 weights) on IID shards of
scikit-learn's digits for R rounds; the server evaluates the aggregated model on held-out digits.
Per configuration (``baseline`` = Flower's own numpy Arrays; otherwise a squeezefmt federated
preset wrapped around FedAvg with :class:`squeezefmt.federated.flower_app.SqueezeMessageStrategy`,
and :func:`~squeezefmt.federated.flower_app.squeeze_mod` on the ClientApp) it reports downlink bytes
per round (the ``Array.data`` bytes of the model records sent, i.e. what Flower serializes), the
ratio against Flower's numpy serialization of the same messages (downlink, and uplink for the
``+up`` configurations whose clients code their updates too), payload kinds, client decode time and
the centralised accuracy. Output: a Markdown table on stdout and ``<out>/fl_app_demo.json``.

    .venv/bin/pip install -e ".[flower]" "flwr[simulation]" scikit-learn
    .venv/bin/python tools/fl_app_demo.py          # 3 clients, 4 rounds: baseline, lossless-delta, lossy-delta(+up)
    .venv/bin/python tools/fl_app_demo.py --rounds 6 --configs baseline,lossless-delta,lossy-delta
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqzdev.fl_app import HIDDEN, run_config  # noqa: E402


def table(results: dict) -> str:
    lines = ["| config | round | downlink bytes | Flower numpy bytes | down ratio | up ratio | kinds | "
             "client decode ms | accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for r in res["rounds"]:
            ratio = r["numpy_bytes"] / r["down_bytes"] if r["down_bytes"] else float("nan")
            up = r["up_numpy_bytes"] / r["up_bytes"] if r["up_bytes"] else float("nan")
            kinds = ",".join(f"{k}:{v}" for k, v in sorted(r["kinds"].items())) or "numpy"
            acc = "" if r.get("accuracy") is None else f"{100 * r['accuracy']:.1f} %"
            lines.append(f"| {name} | {r['round']} | {r['down_bytes']:,} | {r['numpy_bytes']:,} | {ratio:.1f}x | {up:.1f}x | "
                         f"{kinds} | {1000 * r['client_decode_s']:.2f} | {acc} |")
    return "\n".join(lines)


def totals(results: dict) -> str:
    """Per configuration: downlink bytes over all rounds against Flower's numpy, final accuracy
    (of the model the nodes hold) against the baseline's."""
    base = results.get("baseline")
    base_acc = base["rounds"][-1].get("accuracy") if base else None
    lines = ["| config | downlink total | Flower numpy total | down ratio | final accuracy | vs baseline |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        rounds = [r for r in res["rounds"] if r["round"] >= 1]
        down, numpy_ = sum(r["down_bytes"] for r in rounds), sum(r["numpy_bytes"] for r in rounds)
        acc = rounds[-1].get("accuracy")
        diff = "" if acc is None or base_acc is None else f"{100 * (acc - base_acc):+.2f} pp"
        lines.append(f"| {name} | {down:,} | {numpy_:,} | {numpy_ / down:.2f}x | "
                     f"{'' if acc is None else f'{100 * acc:.2f} %'} | {diff} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--configs", default="baseline,lossless-delta,lossy-delta,lossy-delta+up",
                    help="comma-separated: baseline or a federated preset; '+up' also codes the uplink with it")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "bench-results"))
    args = ap.parse_args(argv)
    results = {}
    for name in args.configs.split(","):
        preset = None if name == "baseline" else name.removesuffix("+up")
        uplink = preset if name.endswith("+up") else None
        results[name] = run_config(preset, uplink=uplink, clients=args.clients, rounds=args.rounds)
    print(table(results))
    print()
    print(totals(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fl_app_demo.json"), "w") as f:
        json.dump({"clients": args.clients, "rounds": args.rounds, "hidden": HIDDEN, "results": results}, f, indent=1)
    print(f"wrote {os.path.join(args.out, 'fl_app_demo.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
