"""Peak RSS of one layer-major stage against the schedule's activation estimate, per stage and chunk size.

    /work/main/.venv/bin/python tools/bench_stage_memory.py                  # the CNN, ~3 min
    /work/main/.venv/bin/python tools/bench_stage_memory.py --rows 32,64,128 --stages 1,2

Layer-major ``predict`` (squeezefmt/keras/lazy_schedule.py) runs each stage of a lazy model over the
rows of a chunk; the chunk is sized from the schedule's per-row estimate of what a stage holds. This
tool checks the estimate stage by stage. Each measurement runs in its own process: it loads the
model lazily (``--model``, packed lossless; default examples/mnist_cnn.h5), builds the schedule's
stages, makes the stage's input activations for ``rows`` rows (random, as numpy arrays: the
schedule's ``values``) and decodes the stage's weights, runs the stage once on two batches (tracing
of the one-batch and the batch-loop functions), then records its RSS as the baseline, resets the
kernel's high-water mark and runs the stage over ``rows`` rows as predict does (``_run_stage``).
Reported: ``VmHWM - baseline`` (what the stage's run held beyond its inputs and weights) against the
schedule's estimate for that stage (squeezefmt/keras/lazy_memory.py: its outputs for ``rows`` rows + its
slice working set; the inputs exist before the baseline here) and the estimate of the schedule before
lazy_memory.py (a TensorFlow copy of the inputs + the outputs twice, for ``rows`` rows).
Run from an older checkout (copy the file there) it measures that checkout's schedule.

``--kinds`` (on by default) adds, for one call of ``--batch`` rows through a one-layer model of each kind
(Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, BatchNorm, pooling ...), TensorFlow's own peak of
allocated bytes (its allocator's statistics, ``tf.config.experimental.get_memory_info``): what a kernel
allocates beyond its output, e.g. an im2col workspace, shows there.

``--predict`` adds whole ``predict`` calls over ``--predict-rows`` rows (default 640) with the
default activation budget, one process each, with the RSS goal of issue 15
((.sqz + two largest layers + activations) x 1.1, activations as the schedule estimates them).

Prints a table and writes ``bench-results/bench_stage_memory.json``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sqzdev.procmem import proc_status, reset_peak  # noqa: E402

MiB = 1 << 20


def _warm_tf():
    import numpy as np
    import tensorflow as tf

    warm = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(8)])
    warm.predict(np.zeros((2, 8), np.float32), verbose=0)
    del warm


def _tf_reset() -> bool:
    """Reset TensorFlow's own peak of allocated CPU bytes (its allocator's statistics), if it keeps one."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        return True
    except (ValueError, RuntimeError, AttributeError):
        return False


def _tf_peak(enabled: bool) -> int | None:
    import tensorflow as tf

    return int(tf.config.experimental.get_memory_info("CPU:0")["peak"]) if enabled else None


def _plan(model):
    from squeezefmt.keras.lazy_schedule import configure

    schedule = configure(model)
    plan = schedule._build()  # noqa: SLF001 - the tool measures the schedule's own stages
    if not isinstance(plan, tuple):
        raise SystemExit(f"layer-major predict unavailable: {plan}")
    return schedule, plan


def stage_child(path: str, index: int, rows: int, batch: int, seed: int) -> dict:
    import numpy as np

    import squeezefmt.keras as sk
    from squeezefmt.keras import lazy_schedule as ls
    from squeezefmt.keras.compat import numpy_dtype

    _warm_tf()
    model = sk.load(path, lazy=True)
    schedule, (graph, stages) = _plan(model)
    stage = stages[index]
    rng = np.random.default_rng(seed)

    def inputs(n):
        return {i: rng.standard_normal((n,) + tuple(graph.shapes[i][1:])).astype(numpy_dtype(graph.dtypes[i]))
                for i in stage.in_ids}

    weights = [w for w in schedule._decode_missing(stage, {}).values()]  # noqa: SLF001
    schedule._run_stage(stage, inputs(2 * batch), weights, batch, graph)  # noqa: SLF001 - traces the loop
    schedule._run_stage(stage, inputs(batch), weights, batch, graph)  # noqa: SLF001 - and one batch
    values = inputs(rows)
    gc.collect()
    stats = _tf_reset()
    baseline = proc_status("VmRSS")
    reset_peak()
    t = time.perf_counter()
    schedule._run_stage(stage, values, weights, batch, graph)  # noqa: SLF001
    seconds = time.perf_counter() - t
    peak = proc_status("VmHWM") - baseline
    tf_peak = _tf_peak(stats)
    mem = getattr(ls, "lazy_memory", None)  # None: a schedule from before lazy_memory.py
    row = mem.row_bytes if mem else ls._row_bytes  # noqa: SLF001
    in_row = sum(row(graph, i) for i in stage.in_ids)
    out_row = sum(row(graph, i) for i in stage.out_ids)
    estimate = rows * out_row + min(rows, batch) * mem.slice_bytes_per_row(stage, graph) if mem else None
    return {"stage": index, "rows": rows, "layers": [f"{s.layer.name}:{type(s.layer).__name__}" for s in stage.steps],
            "in_bytes_per_row": in_row, "out_bytes_per_row": out_row, "peak_delta": peak, "tf_peak": tf_peak,
            "old_estimate": (in_row + 2 * out_row) * rows, "estimate": estimate, "seconds": seconds}


def predict_child(path: str, rows: int, batch: int, seed: int, overlap: bool, activation_bytes: int) -> dict:
    import numpy as np

    import squeezefmt.keras as sk
    from squeezefmt.keras.lazy_schedule import configure

    _warm_tf()
    model = sk.load(path, lazy=True)
    cfg = configure(model, overlap=overlap, **({"activation_bytes": activation_bytes} if activation_bytes else {}))
    xs = np.random.default_rng(seed).random((rows,) + tuple(model.input_shape[1:])).astype(np.float32)
    model.predict(xs[:batch], batch_size=batch, verbose=0)  # tracing, as bench_memory.py
    gc.collect()
    stats = _tf_reset()
    baseline = proc_status("VmRSS")
    reset_peak()
    t = time.perf_counter()
    out = model.predict(xs, batch_size=batch, verbose=0)
    seconds = time.perf_counter() - t
    return {"rows": rows, "overlap": overlap, "peak_delta": proc_status("VmHWM") - baseline, "seconds": seconds,
            "tf_peak": _tf_peak(stats),
            "output_bytes": int(out.nbytes), "schedule": dict(cfg.last_call), "activation_budget": cfg.activation_bytes}


def kinds_child(batch: int) -> list[dict]:
    """TensorFlow's own peak of allocated CPU bytes for one call of small models, one layer kind each.

    What a kernel allocates beyond its output (``extra``): an im2col-style workspace would show here.
    The allocator's statistics count whole chunks, so sizes are rounded up (to powers of two at most)."""
    import numpy as np
    import tensorflow as tf

    L = tf.keras.layers
    cases = [("Conv2D 3x3 32->64 valid", [L.Conv2D(64, 3)], (28, 28, 32)),
             ("Conv2D 3x3 32->64 same", [L.Conv2D(64, 3, padding="same")], (28, 28, 32)),
             ("Conv2D 3x3 64->64 same 56x56", [L.Conv2D(64, 3, padding="same")], (56, 56, 64)),
             ("Conv2D 5x5 16->16 same 56x56", [L.Conv2D(16, 5, padding="same")], (56, 56, 16)),
             ("Conv2D 1x1 64->128", [L.Conv2D(128, 1)], (28, 28, 64)),
             ("Conv2D + BN + ReLU", [L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.ReLU()], (28, 28, 32)),
             ("DepthwiseConv2D 3x3", [L.DepthwiseConv2D(3, padding="same")], (28, 28, 64)),
             ("SeparableConv2D 32->64", [L.SeparableConv2D(64, 3, padding="same")], (28, 28, 32)),
             ("SeparableConv2D 32->64 dm 2", [L.SeparableConv2D(64, 3, padding="same", depth_multiplier=2)], (28, 28, 32)),
             ("MaxPooling2D", [L.MaxPooling2D()], (28, 28, 64)),
             ("BatchNormalization", [L.BatchNormalization()], (28, 28, 64)),
             ("ReLU", [L.ReLU()], (28, 28, 64)),
             ("Dense 2048", [L.Dense(2048)], (2048,)),
             ("Conv1D k5 64->64", [L.Conv1D(64, 5, padding="same")], (256, 64))]
    rows = []
    for name, layers, shape in cases:
        model = tf.keras.Sequential([tf.keras.Input(shape)] + layers)
        fn = tf.function(lambda x, model=model: model(x, training=False))
        x = tf.constant(np.random.default_rng(0).random((batch,) + shape).astype(np.float32))
        fn(x)
        if not _tf_reset():
            raise SystemExit("this TensorFlow keeps no CPU allocator statistics (oneDNN off?)")
        start = tf.config.experimental.get_memory_info("CPU:0")["current"]
        y = fn(x)
        peak = _tf_peak(True) - start
        rows.append({"kind": name, "in_bytes": int(x.numpy().nbytes), "out_bytes": int(y.numpy().nbytes),
                     "tf_peak": int(peak)})
    return rows


def run(args, *extra) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--path", args.path, "--batch", str(args.batch),
           "--seed", str(args.seed), *map(str, extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def count_stages(path: str) -> int:
    import squeezefmt.keras as sk

    model = sk.load(path, lazy=True)
    return len(_plan(model)[1][1])


def estimated(res: dict) -> int:
    """The schedule's activation estimate for the call (before lazy_memory.py: chunk rows x bytes per row)."""
    sched = res["schedule"]
    if "activation_bytes" in sched:
        return sched["activation_bytes"]
    return sched["chunk_rows"] * sched["activation_bytes_per_row"]


def goal(path: str, res: dict) -> float:
    import squeezefmt

    with squeezefmt.open(path) as f:
        sizes = sorted((f.nbytes(n) for n in f.layer_names()), reverse=True)
    activations = estimated(res) + res["output_bytes"]
    return (os.path.getsize(path) + sum(sizes[:2]) + activations) * 1.10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "examples", "mnist_cnn.h5"))
    ap.add_argument("--rows", default="32,64,96,192")
    ap.add_argument("--stages", default="all", help="comma-separated stage indices, or all")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="processes per cell; the lowest peak is kept")
    ap.add_argument("--predict", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--predict-rows", type=int, default=640)
    ap.add_argument("--activation-bytes", type=int, default=0, help="predict: budget (default: the schedule's)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench-results", "bench_stage_memory.json"))
    ap.add_argument("--kinds", action=argparse.BooleanOptionalAction, default=True,
                    help="TensorFlow's allocator peak for one call of each layer kind (one process)")
    ap.add_argument("--kinds-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--stage-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--predict-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--overlap", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child-rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage_child is not None:
        print(json.dumps(stage_child(args.path, args.stage_child, args.child_rows, args.batch, args.seed)))
        return
    if args.kinds_child:
        print(json.dumps(kinds_child(args.batch)))
        return
    if args.predict_child is not None:
        print(json.dumps(predict_child(args.path, args.predict_child, args.batch, args.seed, bool(args.overlap),
                                       args.activation_bytes)))
        return

    import squeezefmt.keras as sk

    with tempfile.TemporaryDirectory() as tmp:
        args.path = os.path.join(tmp, "model.sqz")
        sk.pack(args.model, args.path)
        n = count_stages(args.path)
        stages = range(n) if args.stages == "all" else [int(s) for s in args.stages.split(",")]
        results = {"model": args.model, "batch": args.batch, "load": os.getloadavg(), "stages": [], "predict": []}
        print(f"{args.model}: {n} stages; load average {os.getloadavg()[0]:.1f}")
        print(f"{'stage':>5} {'rows':>5}{'TF peak':>10}{'peak MiB':>10}{'estimate':>10}{'old est.':>10}{'peak/est':>10}  layers")
        for s in stages:
            for rows in (int(r) for r in args.rows.split(",")):
                runs = [run(args, "--stage-child", s, "--child-rows", rows) for _ in range(args.repeats)]
                r = min(runs, key=lambda x: x["peak_delta"])
                r["peaks"] = [x["peak_delta"] for x in runs]
                results["stages"].append(r)
                est = r["estimate"]
                tfp = r["tf_peak"] / MiB if r["tf_peak"] is not None else float("nan")
                print(f"{s:>5} {rows:>5}{tfp:>10.2f}{r['peak_delta'] / MiB:>10.2f}"
                      f"{(est / MiB if est is not None else float('nan')):>10.2f}{r['old_estimate'] / MiB:>10.2f}"
                      f"{(r['peak_delta'] / est if est else float('nan')):>10.2f}  {' '.join(r['layers'])}")
        if args.kinds:
            cmd = [sys.executable, os.path.abspath(__file__), "--kinds-child", "--batch", str(args.batch)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"layer kinds failed:\n{proc.stderr[-3000:]}")
            results["kinds"] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"\none call of {args.batch} rows: TensorFlow's allocator peak (MiB; chunks, rounded up)")
            print(f"{'layer kind':<32}{'input':>8}{'output':>8}{'TF peak':>9}{'extra':>8}")
            for k in results["kinds"]:
                print(f"{k['kind']:<32}{k['in_bytes'] / MiB:>8.2f}{k['out_bytes'] / MiB:>8.2f}{k['tf_peak'] / MiB:>9.2f}"
                      f"{(k['tf_peak'] - k['out_bytes']) / MiB:>8.2f}")
        if args.predict:
            print(f"\npredict over {args.predict_rows} rows, batch {args.batch}")
            print(f"{'overlap':>8}{'chunk':>7}{'est. MiB':>10}{'TF peak':>10}{'peak MiB':>10}{'goal MiB':>10}{'ok':>6}{'time s':>8}")
            for overlap in (0, 1):
                runs = [run(args, "--predict-child", args.predict_rows, "--overlap", overlap,
                            "--activation-bytes", args.activation_bytes) for _ in range(args.repeats)]
                r = min(runs, key=lambda x: x["peak_delta"])
                r["peaks"] = [x["peak_delta"] for x in runs]
                r["goal"] = goal(args.path, r)
                results["predict"].append(r)
                sched = r["schedule"]
                print(f"{overlap:>8}{sched['chunk_rows']:>7}{estimated(r) / MiB:>10.2f}"
                      f"{(r['tf_peak'] or 0) / MiB:>10.2f}"
                      f"{r['peak_delta'] / MiB:>10.2f}{r['goal'] / MiB:>10.2f}{str(r['peak_delta'] <= r['goal']):>6}"
                      f"{r['seconds']:>8.2f}")
        results["load_after"] = os.getloadavg()
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"load average after: {os.getloadavg()[0]:.1f}\nwrote {args.out}")


if __name__ == "__main__":
    main()
