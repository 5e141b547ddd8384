"""Peak memory and latency of lazy inference (``squeezefmt.keras.load(path, lazy=True)``).

    .venv/bin/python tools/bench_memory.py                       # ~2 min
    .venv/bin/python tools/bench_memory.py --presets lossless --layers 32 --batches 50

The model: ``--layers`` Dense layers (ReLU) whose kernels are 1-4 MiB each (widths cycle through
1024, 1024, 768, 512), so the float weights are far larger than the largest layer. It is saved as
an .h5 and packed with each preset (default: 8-bit quantization with Huffman-coded indices, and
lossless).

Each measurement runs in its own process. A process imports TensorFlow and squeezefmt, runs a
one-layer warm-up model (thread pools, tf.function machinery), then records its resident set as
its *baseline*, resets the kernel's high-water mark (``/proc/self/clear_refs``) and does the work;
the figure reported is ``VmHWM - baseline``: what the work cost on top of TensorFlow itself.

* ``tf_h5``: ``tf.keras.models.load_model(h5)`` + predict (the reference);
* ``sqz_eager``: ``squeezefmt.keras.load(sqz)`` + predict;
* ``sqz_lazy``: ``squeezefmt.keras.load(sqz, lazy=True)`` + predict (no decode cache);
* ``sqz_lazy_cached``: the same with ``cache_bytes`` = all decoded layers (memory for speed).

The memory figure covers loading and ``model.predict`` + ``model(x)`` on one batch of ``--batch``
rows; a second figure adds one ``model.predict`` over all ``--batches`` batches (Keras's predict
loop copies the input into a tf.data pipeline and gathers the outputs: the same extra megabytes in
every mode). Its predictions are compared with the eager .sqz model's (exactly equal expected).
Latency is measured afterwards: ``model.predict`` and ``model(x)`` on one batch at a time, time per
batch after a warm-up batch.
The goal (design.md section 7): ``sqz_lazy`` at most compressed size + largest layer + 10 %.

Speed table (``--speed``, on by default; ``--speed-only`` skips the tables above): ``predict`` over
1, 32 and 640 rows (``--rows``) in batches of 32, time (best of ``--repeats``) and peak RSS above the
baseline, each mode in its own process, after a warm-up (predict over one and then two batches) that
traces the functions the calls use (its own peak is the ``trace`` row). Before the timed calls with a
number of rows, one untimed call with that many rows: the first call with new shapes makes TensorFlow
build (and keep) kernels for them (oneDNN primitives: ~1 MiB for the CNN at 1 row, ~0.45 MiB without
oneDNN, ``--no-onednn``); its peak is printed apart (``1st call``), and what it keeps counts in the
baseline of the timed calls:

* ``eager``: ``squeezefmt.keras.load``;
* ``lazy_batch``: ``load(lazy=True)`` with layer-major predict switched off (every layer decoded once
  per batch);
* ``lazy_layer``: layer-major predict without the decode overlap (``overlap=False``);
* ``lazy_overlap``: layer-major predict, the next stage decoded while one computes (the default).

on the Dense model above (every preset), on a CNN (``examples/mnist_cnn.h5``, lossless) and on 12
Dense(2048) layers packed with 8-bit quantization (``--wide``). Goals (issue 15): 640-row lazy
predict <= 1.5x eager in the same run; lazy peak RSS <= (.sqz + two largest layers + activations)
x 1.1, activations = the schedule's estimate (squeezefmt/keras/lazy_memory.py) + the output array; identical outputs; one 32-row call <= eager + one decode of the float weights at 2 GB/s.

Prints the tables and writes ``bench-results/bench_memory.json``.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
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

MiB = 1 << 20
WIDTHS = (1024, 1024, 768, 512)
MODES = ("tf_h5", "sqz_eager", "sqz_lazy", "sqz_lazy_cached")
SPEED_MODES = ("eager", "lazy_batch", "lazy_layer", "lazy_overlap")


# -- process memory (Linux /proc) -----------------------------------------------------------------

from sqzdev.procmem import proc_status, reset_peak  # noqa: E402


# -- the model ------------------------------------------------------------------------------------

def build_model(layers: int, seed: int, cycle=WIDTHS):
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    widths = [cycle[i % len(cycle)] for i in range(layers + 1)]
    model = tf.keras.Sequential([tf.keras.Input((widths[0],))] + [
        tf.keras.layers.Dense(w, activation="relu", name=f"dense_{i:02d}") for i, w in enumerate(widths[1:])])
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # He-scaled weights so activations neither vanish nor blow up
        k, b = layer.get_weights()
        layer.set_weights([(rng.standard_normal(k.shape) * np.sqrt(2.0 / k.shape[0])).astype(np.float32),
                           (rng.standard_normal(b.shape) * 0.01).astype(np.float32)])
    return model


def prepare(work: str, layers: int, presets: list[str], seed: int) -> dict:
    import squeezefmt
    import squeezefmt.keras as sk
    from squeezefmt.presets import custom_preset

    model = build_model(layers, seed)
    h5 = os.path.join(work, "model.h5")
    model.save(h5, include_optimizer=False)
    sizes = [sum(w.nbytes for w in layer.get_weights()) for layer in model.layers]
    out = {"h5": h5, "h5_bytes": os.path.getsize(h5), "float_weight_bytes": sum(sizes),
           "largest_layer_bytes": max(sizes), "layers": len(sizes), "input_width": WIDTHS[0], "containers": {}}
    for name in presets:
        preset = custom_preset(quantize=8) if name == "quantize8" else name
        path = os.path.join(work, f"model-{name}.sqz")
        t = time.perf_counter()
        sk.pack(h5, path, preset=preset)
        with squeezefmt.open(path) as f:
            codecs = sorted({f.info(t).codec for t in f.keys()})
        out["containers"][name] = {"path": path, "bytes": os.path.getsize(path), "preset": preset,
                                   "codecs": codecs, "pack_seconds": round(time.perf_counter() - t, 2)}
    return out


# -- one measurement (child process) --------------------------------------------------------------

def child(mode: str, path: str, batch: int, batches: int, seed: int, cache_bytes: int) -> dict:
    import numpy as np
    import tensorflow as tf

    import squeezefmt.keras as sk

    warm = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(8)])
    warm.predict(np.zeros((2, 8), np.float32), verbose=0)
    warm(np.zeros((2, 8), np.float32))
    del warm
    xs = np.random.default_rng(seed).standard_normal((batches * batch, WIDTHS[0])).astype(np.float32)
    gc.collect()
    baseline = proc_status("VmRSS")
    peak_reset = reset_peak()

    t = time.perf_counter()
    if mode == "tf_h5":
        model = tf.keras.models.load_model(path, compile=False)
    elif mode == "sqz_eager":
        model = sk.load(path)
    elif mode == "sqz_lazy":
        model = sk.load(path, lazy=True)
    elif mode == "sqz_lazy_cached":
        model = sk.load(path, lazy=True, cache_bytes=cache_bytes)
    else:
        raise SystemExit(f"unknown mode {mode}")
    load_seconds = time.perf_counter() - t
    after_load = proc_status("VmRSS")

    # memory: load, then predict and model(x) on one batch (the weights' share of the peak) ...
    model.predict(xs[:batch], batch_size=batch, verbose=0)
    model(xs[:batch], training=False)
    peak = proc_status("VmHWM")
    # ... then one predict over all batches (adds Keras's predict loop: tf.data copies, outputs)
    out = model.predict(xs, batch_size=batch, verbose=0)
    peak_all = proc_status("VmHWM")

    # latency, after the memory figure (repeated predict() calls grow TensorFlow's heap a little)
    def per_batch(fn) -> float:
        fn(0)  # warm-up: tracing, first decode into the cache
        t = time.perf_counter()
        for i in range(1, batches):
            fn(i)
        return (time.perf_counter() - t) / max(1, batches - 1)

    chunk = lambda i: xs[i * batch:(i + 1) * batch]  # noqa: E731
    predict_s = per_batch(lambda i: model.predict(chunk(i), batch_size=batch, verbose=0))
    call_s = per_batch(lambda i: model(chunk(i), training=False))
    result = {
        "mode": mode, "baseline_rss": baseline, "peak_rss": peak, "peak_delta": peak - baseline,
        "peak_delta_all_batches": peak_all - baseline,
        "load_delta": after_load - baseline, "peak_reset": peak_reset, "load_seconds": round(load_seconds, 3),
        "predict_ms_per_batch": round(predict_s * 1e3, 3), "call_ms_per_batch": round(call_s * 1e3, 3),
        "output_sha256": hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest(),
    }
    if mode.startswith("sqz_lazy"):
        from squeezefmt.keras.lazy import lazy_state

        result["cache"] = lazy_state(model).cache.stats()
    return result


# -- speed table: eager / lazy per batch / layer-major / layer-major + overlap ------------------------

def speed_child(mode: str, path: str, rows_list: list[int], batch: int, repeats: int, seed: int) -> dict:
    import numpy as np
    import tensorflow as tf

    import squeezefmt.keras as sk
    from squeezefmt.keras.lazy import lazy_state
    from squeezefmt.keras.lazy_schedule import configure

    warm = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(8)])
    warm.predict(np.zeros((2, 8), np.float32), verbose=0)
    del warm
    model = sk.load(path, lazy=mode != "eager")
    if mode == "lazy_batch":
        configure(model, enabled=False)
    elif mode == "lazy_layer":
        configure(model, overlap=False)
    elif mode == "lazy_overlap":
        configure(model, overlap=True)
    shape = tuple(model.input_shape[1:])
    xs = np.random.default_rng(seed).random((max(rows_list),) + shape).astype(np.float32)
    gc.collect()
    before = proc_status("VmRSS")
    reset_peak()
    # tracing, outside the figures: the one-batch functions, and the batch loops (layer-major) that
    # calls of two or more batches use; its own peak is reported apart (trace_peak_delta)
    model.predict(xs[:batch], batch_size=batch, verbose=0)
    model.predict(xs[:2 * batch], batch_size=batch, verbose=0)
    trace_peak = proc_status("VmHWM") - before
    gc.collect()
    baseline = proc_status("VmRSS")
    out = {"mode": mode, "baseline_rss": baseline, "trace_peak_delta": trace_peak, "rows": {}}
    for rows in rows_list:
        # the first call with this many rows: TensorFlow (oneDNN) builds and keeps kernels for the new
        # shapes (the last partial batch's too); its peak is reported apart, and what it keeps joins the
        # baseline of the calls measured after it
        reset_peak()
        model.predict(xs[:rows], batch_size=batch, verbose=0)
        first = proc_status("VmHWM") - baseline
        gc.collect()
        baseline = proc_status("VmRSS")
        reset_peak()
        times, pred = [], None
        before = lazy_state(model).cache.stats()["decodes"] if mode != "eager" else 0
        for _ in range(repeats):
            t = time.perf_counter()
            pred = model.predict(xs[:rows], batch_size=batch, verbose=0)
            times.append(time.perf_counter() - t)
        entry = {"seconds": min(times), "peak_delta": proc_status("VmHWM") - baseline, "first_call_peak_delta": first,
                 "output_sha256": hashlib.sha256(np.ascontiguousarray(pred).tobytes()).hexdigest(),
                 "output_bytes": int(np.asarray(pred).nbytes)}
        if mode != "eager":
            entry["decodes_per_call"] = (lazy_state(model).cache.stats()["decodes"] - before) / repeats
            if mode != "lazy_batch":
                entry["schedule"] = dict(configure(model).last_call)
        out["rows"][str(rows)] = entry
        del pred
        gc.collect()
    return out


def run_speed_child(args, mode: str, path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--speed-child", mode, "--path", path, "--batch", str(args.batch),
           "--rows", args.rows, "--repeats", str(args.repeats), "--seed", str(args.seed)]
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"} if args.no_onednn else None
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def layer_sizes(path: str) -> list[int]:
    import squeezefmt

    with squeezefmt.open(path) as f:
        return [f.nbytes(name) for name in f.layer_names()]


def speed_case(args, label: str, path: str) -> dict:
    runs = {m: run_speed_child(args, m, path) for m in SPEED_MODES}
    sizes = sorted(layer_sizes(path), reverse=True)
    sqz = os.path.getsize(path)
    case = {"case": label, "sqz_bytes": sqz, "float_bytes": sum(sizes), "two_largest_layers": sum(sizes[:2]),
            "runs": runs, "goals": {}}
    for rows in args.rows.split(","):
        eager = runs["eager"]["rows"][rows]
        lazy = runs["lazy_overlap"]["rows"][rows]  # the default: layer-major with overlap
        sched = lazy.get("schedule", {})
        estimate = sched.get("activation_bytes")  # lazy_memory.py; older schedules: chunk rows x bytes per row
        if estimate is None:
            estimate = sched.get("chunk_rows", 0) * sched.get("activation_bytes_per_row", 0)
        activations = estimate + lazy["output_bytes"]
        bound = (sqz + sum(sizes[:2]) + activations) * 1.10
        case["goals"][rows] = {
            "lazy_over_eager_time": lazy["seconds"] / eager["seconds"],
            "rss_bound": int(bound), "rss_ok": lazy["peak_delta"] <= bound,
            "first_call_rss_ok": lazy.get("first_call_peak_delta", lazy["peak_delta"]) <= bound,
            "identical": all(runs[m]["rows"][rows]["output_sha256"] == eager["output_sha256"]
                             for m in ("lazy_layer", "lazy_overlap")),
            "per_batch_identical": runs["lazy_batch"]["rows"][rows]["output_sha256"] == eager["output_sha256"],
            "decode_budget_s": eager["seconds"] + sum(sizes) / 2e9,
        }
    return case


def print_speed(cases: list[dict], batch: int) -> None:
    print(f"\nspeed: predict(x[:rows], batch_size={batch}); time in ms (best of repeats) / peak RSS above baseline in MiB")
    head = "".join(f"{m:>20}" for m in SPEED_MODES)
    for case in cases:
        print(f"\n{case['case']}: .sqz {case['sqz_bytes'] / MiB:.1f} MiB, float weights {case['float_bytes'] / MiB:.1f} MiB, "
              f"two largest layers {case['two_largest_layers'] / MiB:.1f} MiB")
        print(f"{'rows':>6}{head}{'lazy/eager':>12}{'RSS goal':>10}{'RSS ok':>8}{'same':>6}{'same/b':>8}"
              f"{'32-row goal ms':>16}")
        for rows, goal in case["goals"].items():
            cells = "".join(f"{r['rows'][rows]['seconds'] * 1e3:>10.1f} /{r['rows'][rows]['peak_delta'] / MiB:>7.1f}"
                            for r in (case["runs"][m] for m in SPEED_MODES))
            print(f"{rows:>6}{cells}{goal['lazy_over_eager_time']:>12.2f}{goal['rss_bound'] / MiB:>10.1f}"
                  f"{str(goal['rss_ok']):>8}{str(goal['identical']):>6}{str(goal['per_batch_identical']):>8}"
                  f"{goal['decode_budget_s'] * 1e3:>16.1f}")
            first = "".join(f"{'1st call':>10} /{r['rows'][rows].get('first_call_peak_delta', 0) / MiB:>7.1f}"
                            for r in (case["runs"][m] for m in SPEED_MODES))
            print(f"{'':>6}{first}{'':>12}{'':>10}{str(goal.get('first_call_rss_ok')):>8}")
        trace = "".join(f"{'':>10}  {case['runs'][m].get('trace_peak_delta', 0) / MiB:>7.1f}" for m in SPEED_MODES)
        print(f"{'trace':>6}{trace}")
    print("(lazy/eager: lazy_overlap (the default) over eager time; RSS goal: (.sqz + two largest layers + activations) x 1.1, "
          "activations = the schedule's estimate for the call (squeezefmt/keras/lazy_memory.py) + the output; same: layer-major outputs == eager's, "
          "same/b: the per-batch path's; 32-row goal: eager + the float weights at 2 GB/s; trace: peak RSS of the "
          "warm-up, predict over 1 and then 2 batches, which traces the functions, before the rows above; 1st call: "
          "the peak of the first call with that many rows, before the timed ones, whose baseline includes what it kept: "
          "TensorFlow's kernels for new shapes)")


def speed_tables(args, work: str, info: dict | None) -> list[dict]:
    import squeezefmt.keras as sk
    from squeezefmt.presets import custom_preset

    cases = []
    if info is not None:
        for name, c in info["containers"].items():
            cases.append(speed_case(args, f"{info['layers']} Dense layers, {name}", c["path"]))
    cnn = os.path.join(work, "cnn.sqz")
    sk.pack(os.path.join(REPO, "examples", "mnist_cnn.h5"), cnn)
    cases.append(speed_case(args, "CNN examples/mnist_cnn.h5, lossless", cnn))
    if args.wide:
        model = build_model(12, args.seed, cycle=(2048,))
        h5, wide = os.path.join(work, "wide.h5"), os.path.join(work, "wide.sqz")
        model.save(h5, include_optimizer=False)
        sk.pack(h5, wide, preset=custom_preset(quantize=8))
        cases.append(speed_case(args, "12 x Dense(2048), quantize 8", wide))
    print_speed(cases, args.batch)
    return cases


def run_child(args, mode: str, path: str, cache_bytes: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--path", path, "--batch", str(args.batch),
           "--batches", str(args.batches), "--seed", str(args.seed), "--cache-bytes", str(cache_bytes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n: int) -> str:
    return f"{n / MiB:8.1f}"  # noqa: E231


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--presets", default="quantize8,lossless",
                    help="comma-separated: quantize8 (8-bit, Huffman) or any preset name")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the .h5/.sqz here (default: a temporary directory)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench-results", "bench_memory.json"))
    ap.add_argument("--speed", action=argparse.BooleanOptionalAction, default=True, help="the speed table")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table")
    ap.add_argument("--wide", action=argparse.BooleanOptionalAction, default=True,
                    help="speed table: also 12 x Dense(2048) packed with 8-bit quantization")
    ap.add_argument("--rows", default="1,32,640", help="speed table: rows per predict call")
    ap.add_argument("--repeats", type=int, default=3, help="speed table: best of this many calls")
    ap.add_argument("--no-onednn", action="store_true",
                    help="speed table: children run with TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own CPU kernels)")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--speed-child", choices=SPEED_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--cache-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.batch, args.batches, args.seed, args.cache_bytes)))
        return
    if args.speed_child:
        rows = [int(r) for r in args.rows.split(",")]
        print(json.dumps(speed_child(args.speed_child, args.path, rows, args.batch, args.repeats, args.seed)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp
        os.makedirs(work, exist_ok=True)
        info = prepare(work, args.layers, [p.strip() for p in args.presets.split(",") if p.strip()], args.seed)
        float_bytes, largest = info["float_weight_bytes"], info["largest_layer_bytes"]
        print(f"model: {info['layers']} Dense layers, float32 weights {float_bytes / MiB:.1f} MiB, "
              f"largest layer {largest / MiB:.2f} MiB, .h5 {info['h5_bytes'] / MiB:.1f} MiB; "
              f"batch {args.batch} x {args.batches}")
        result = {"model": {k: v for k, v in info.items() if k not in ("containers", "h5")}, "batch": args.batch}
        if not args.speed_only:
            reference = run_child(args, "tf_h5", info["h5"], 0)
            rows = []
            for name, c in info["containers"].items():
                results = {m: run_child(args, m, c["path"], float_bytes + MiB) for m in MODES[1:]}
                eager_hash = results["sqz_eager"]["output_sha256"]
                goal = (c["bytes"] + largest) * 1.10
                for m, r in results.items():
                    r["same_predictions_as_eager"] = r["output_sha256"] == eager_hash
                rows.append({"preset": name, **c, "goal_bytes": int(goal),
                             "lazy_meets_goal": results["sqz_lazy"]["peak_delta"] <= goal, "runs": results})

            for key, title in (("peak_delta", "load + one batch"),
                               ("peak_delta_all_batches", f"load + one batch + predict over {args.batches} batches")):
                print(f"\npeak memory above the TensorFlow baseline, {title} (MiB; each run in its own process)")
                print(f"{'container':<20}{'.sqz':>8}{'goal':>8}{'tf_h5':>8}{'eager':>8}{'lazy':>8}{'cached':>8}"
                      f"{'lazy/tf':>9}{'goal met':>9}  same preds")
                for row in rows:
                    r = row["runs"]
                    print(f"{row['preset']:<20}{mib(row['bytes'])}{mib(row['goal_bytes'])}{mib(reference[key])}"
                          f"{mib(r['sqz_eager'][key])}{mib(r['sqz_lazy'][key])}{mib(r['sqz_lazy_cached'][key])}"
                          f"{r['sqz_lazy'][key] / reference[key]:9.3f}{str(r['sqz_lazy'][key] <= row['goal_bytes']):>9}  "
                          f"{all(x['same_predictions_as_eager'] for x in r.values())}")
            print(f"(TensorFlow baseline RSS in these processes: {reference['baseline_rss'] / MiB:.0f} MiB)")

            print("\nlatency per batch (ms): model.predict / model(x)")
            print(f"{'container':<20}{'tf_h5':>16}{'eager':>16}{'lazy':>16}{'cached':>16}{'lazy/eager':>12}")
            ref = f"{reference['predict_ms_per_batch']:.2f}/{reference['call_ms_per_batch']:.2f}"
            for row in rows:
                r = row["runs"]
                cells = [f"{r[m]['predict_ms_per_batch']:.2f}/{r[m]['call_ms_per_batch']:.2f}" for m in MODES[1:]]
                ratio = r["sqz_lazy"]["predict_ms_per_batch"] / r["sqz_eager"]["predict_ms_per_batch"]
                print(f"{row['preset']:<20}{ref:>16}" + "".join(f"{c:>16}" for c in cells) + f"{ratio:12.2f}")

            result.update({"batches": args.batches, "tf_h5": reference, "containers": rows})
        if args.speed or args.speed_only:
            result["speed"] = speed_tables(args, work, info)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
