"""Benchmark: fuzzer throughput (issue 13), and what its per-execution memory check costs.

For each target (and the three mixed) it runs ``tools/fuzz.py run --seconds S --target T --seed 1`` of
this checkout and, with ``--baseline-root``, of another checkout (e.g. ``git archive`` of an older
commit, C extensions built), one after the other, in the same conditions; it prints executions,
executions per wall-clock second and per CPU second of the fuzzing process (wall time on a shared
machine says more about the other load than about the fuzzer). It also times the /proc reads around
one execution: opening /proc/self/status each time, as the fuzzer did, against descriptors kept open.

    python tools/bench_fuzz.py [--seconds 15] [--baseline-root DIR]     # writes bench-results/fuzz.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sqzdev.procmem import Probe, proc_status, reset_peak  # noqa: E402

TARGET_SETS = (["container"], ["federated"], ["h5"], [])  # [] = all three, equally often


def run_fuzz(root: str, targets: list[str], seconds: float) -> dict:
    """One ``fuzz.py run`` of the checkout at ``root``: its statistics line and its CPU time."""
    args = [sys.executable, os.path.join(root, "tools", "fuzz.py"), "run", "--seconds", str(seconds), "--seed", "1",
            "--findings", os.path.join(ROOT, "bench-results", "fuzz-findings")]
    for t in targets:
        args += ["--target", t]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, capture_output=True, text=True, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in r.stdout.splitlines() if x.startswith("{"))
    stats = json.loads(line)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"execs": stats["execs"], "by_target": stats["by_target"], "cpu_seconds": cpu,
            "findings": r.stdout.count("FINDING")}


def proc_costs(n: int = 20000) -> dict:
    """Microseconds of CPU per execution for the memory check's /proc work, three ways."""
    probe = Probe()

    def opened():
        reset_peak()
        proc_status("VmRSS")
        proc_status("VmHWM")

    def kept():
        probe.reset_peak()
        probe.rss()
        probe.peak()

    def kept_no_reset():
        probe.rss()
        probe.peak()

    out = {}
    for name, fn in (("open_each_time", opened), ("kept_descriptors", kept), ("kept_without_reset", kept_no_reset)):
        fn()
        c = time.process_time()
        for _ in range(n):
            fn()
        out[name] = (time.process_time() - c) / n * 1e6
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--baseline-root", help="another checkout to run the same commands with")
    args = ap.parse_args()
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    rows = []
    print(f"{'targets':<12} {'checkout':<10} {'execs':>7} {'exec/s':>8} {'CPU s':>6} {'exec/CPU-s':>10} {'findings':>8}")
    for targets in TARGET_SETS:
        for label, root in (("baseline", args.baseline_root), ("this", ROOT)):
            if root is None:
                continue
            res = run_fuzz(root, targets, args.seconds)
            row = {"targets": targets or "all", "checkout": label, "root": root, "seconds": args.seconds, **res,
                   "execs_per_second": res["execs"] / args.seconds,
                   "execs_per_cpu_second": res["execs"] / max(res["cpu_seconds"], 1e-9)}
            rows.append(row)
            print(f"{','.join(targets) or 'all':<12} {label:<10} {res['execs']:>7} {row['execs_per_second']:>8.1f} "
                  f"{res['cpu_seconds']:>6.2f} {row['execs_per_cpu_second']:>10.1f} {res['findings']:>8}")
    costs = proc_costs()
    print("\nmemory check, us of CPU per execution: " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    with open(os.path.join(ROOT, "bench-results", "fuzz.json"), "w") as fh:
        json.dump({"rows": rows, "proc_us_per_exec": costs, "loadavg": os.getloadavg()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
