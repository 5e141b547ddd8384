"""Post-training compression benchmark: size-accuracy curves of every squeezefmt lossy option and NNCodec.

    /work/main/.venv/bin/python tools/bench_posttrain.py                       # both models, everything
    /work/main/.venv/bin/python tools/bench_posttrain.py --models cnn390k --quick
    ... --nncodec-python .venv-nnc/bin/python                                   # where NNCodec lives

Models: ``mnist_cnn`` (examples/mnist_cnn.h5, 64k parameters with BatchNorm and separable convs) and
``cnn390k`` (a plain 389k-parameter MNIST CNN, trained on demand by tools/train_cnn390k.py and cached
outside the repository). Data: the MNIST test set split in two halves: rows 0-4999 are the data
``--eval`` searches on (its DATA.npz), rows 5000-9999 are held out; every row of the table gives the
accuracy change on the held-out half (``d_held``) and on the search half (``d_search``), in points.

Rows, all in one run and from the same decoded weights a user would get:

- ``lossless`` (the reference) and every lossy squeezefmt option: ``--quantize`` (per tensor and
  ``--per-channel``), ``--cluster``, ``--prune``, ``--preset deep-compression``, post-training EPR
  (``--preset epr``, ``--epr-max-rel-rms``, ``--epr-bits``), ``--preset compact`` and its
  ``compact-x<scale>`` family, and ``--eval`` at several budgets, with the default ``--confidence 0.5``
  (family ``eval``) and with ``--confidence 0`` (``eval z=0``), for each ``--roundings`` value (default
  ``gptq``, the CLI's default; ``rdo`` rows are ``eval-rdo``); one sensitivity measurement per model and rounding,
  one allocation per row; ``search_s`` is its time, the shared measurement included.
  TT-SVD (``--tt-rank``) is left out: it replaces Dense layers by TT layers rather than compressing
  weights in place.
- NNCodec 2.1.3 (PyPI ``nncodec``) at several qps, run by tools/nncodec_worker.py in a separate venv
  (``--nncodec-python``; default ``.venv-nnc/bin/python`` in the repository, or ``$NNCODEC_PYTHON``).
  Kernels are given to it in PyTorch layout; its decoded weights are evaluated in the same Keras model.
  Without it the NNCodec rows are skipped with a message.

Ratio = float32 bytes of the weights over the compressed size (the whole .sqz file, header and model
config included; NNCodec's bitstream). Encode/decode times are wall-clock seconds of one run on a
shared machine (``encode_s``: packing with known settings; ``decode_s``: decoding every tensor with
numpy). Writes ``bench-results/posttrain.json`` and ``bench-results/posttrain.png`` (the PNG needs
matplotlib, in this interpreter or in the NNCodec one).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

BUDGETS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
NNCODEC_QPS = (-38, -32, -28, -24, -20, -18, -16, -14, -12, -10)


def squeezefmt_options(quick: bool) -> list:
    """``[(family, setting, preset name)]`` for every lossy squeezefmt option (and lossless)."""
    from squeezefmt.presets.compact import preset_name as compact_name
    from squeezefmt.presets.epr import preset_name as epr_name
    from squeezefmt.presets import custom_preset

    rows = [("lossless", "", "lossless")]
    rows += [("quantize", f"{b} bits", custom_preset(quantize=b)) for b in ((8, 4) if quick else (8, 6, 5, 4))]
    rows += [("quantize/ch", f"{b} bits", custom_preset(quantize=b, per_channel=True))
             for b in ((4,) if quick else (6, 5, 4, 3))]
    rows += [("cluster", f"{b} bits", custom_preset(cluster=b)) for b in ((3,) if quick else (5, 4, 3, 2))]
    rows += [("prune", f"{p:g}", custom_preset(prune=p)) for p in (() if quick else (0.5, 0.8))]
    rows += [("deep-compression", "", "deep-compression"), ("epr", "default", "epr")]
    rows += [("epr", f"rms {v:g}", epr_name(max_rel_rms=v)) for v in (() if quick else (0.01, 0.05, 0.1))]
    rows += [("epr", f"{v:g} bits", epr_name(bits_per_weight=v)) for v in (() if quick else (2.0, 3.0))]
    rows += [("compact", f"x{s:g}", compact_name(s)) for s in ((1.0,) if quick else (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0))]
    return rows


def load_models(names, tf_dtype=np.float32) -> dict:
    import train_cnn390k

    paths = {"mnist_cnn": os.path.join(ROOT, "examples", "mnist_cnn.h5")}
    if "cnn390k" in names:
        paths["cnn390k"] = str(train_cnn390k.ensure_model())
    return {n: paths[n] for n in names}


class Evaluated:
    """A model's classifier and the two halves of the MNIST test set."""

    def __init__(self, h5: str, x: np.ndarray, y: np.ndarray):
        from squeezefmt.keras.evaluate import KerasClassifier
        from squeezefmt.keras.formats import read_archive as read_h5
        from squeezefmt.search.data import EvalData

        self.archive = read_h5(h5)
        self.clf = KerasClassifier(self.archive)
        shape = tuple(self.clf.model.inputs[0].shape[1:])
        x = x.reshape((-1, *shape))
        half = len(y) // 2
        self.search_data = EvalData([x[:half]], y[:half])
        self.held_data = EvalData([x[half:]], y[half:])
        self.raw = sum(a.nbytes for a in self.archive.arrays.values())
        self.base = self.accuracies(self.archive.arrays)

    def correct(self, arrays) -> tuple:
        """Per-row correctness (held-out half, search half), boolean arrays."""
        out = []
        for data in (self.held_data, self.search_data):
            p = self.clf.predict(arrays, data)
            out.append(np.argmax(p, 1) == data.y)
        return tuple(out)

    def accuracies(self, arrays) -> tuple:
        """(held-out accuracy, search-half accuracy), percent."""
        return tuple(100.0 * float(np.mean(c)) for c in self.correct(arrays))

    def row(self, family, setting, nbytes, arrays, encode_s, decode_s, **extra) -> dict:
        held_ok, search_ok = self.correct(arrays)
        held, search = 100.0 * float(np.mean(held_ok)), 100.0 * float(np.mean(search_ok))
        return {"family": family, "setting": setting, "bytes": int(nbytes), "ratio": self.raw / nbytes,
                "acc_held": held, "acc_search": search, "d_held": held - self.base[0],
                "d_search": search - self.base[1], "encode_s": encode_s, "decode_s": decode_s, **extra,
                "_correct": np.concatenate([held_ok, search_ok])}  # for the McNemar test; not written to JSON


def _pack_and_decode(ev: Evaluated, preset: str, codecs=None) -> tuple:
    import squeezefmt
    from squeezefmt.keras.pack import pack_archive

    t0 = time.perf_counter()
    blob = pack_archive(ev.archive, None, preset=preset, codecs=codecs)
    t1 = time.perf_counter()
    decoded = squeezefmt.load(blob)
    t2 = time.perf_counter()
    return len(blob), decoded, t1 - t0, t2 - t1


def bench_options(ev: Evaluated, options, say) -> list:
    rows = []
    for family, setting, preset in options:
        nbytes, decoded, enc, dec = _pack_and_decode(ev, preset)
        rows.append(ev.row(family, setting, nbytes, decoded, enc, dec, preset=preset))
        say(rows[-1])
    return rows


def bench_eval(ev: Evaluated, budgets, confidences, say, rounding: str = "gptq") -> list:
    """``--eval`` at each budget and ``--confidence``: one sensitivity measurement on the search half,
    one allocation per budget and confidence (family ``eval`` for the default confidence)."""
    from squeezefmt.presets.epr import wants_epr
    from squeezefmt.search import StepSearch

    scorer = ev.clf.scorer(ev.search_data)
    ctx = ev.archive.contexts()
    select = lambda n, a: n in ctx and wants_epr(a, ctx[n])  # noqa: E731 - as pack --eval selects
    t0 = time.process_time()
    from squeezefmt.keras.eval_pack import search_backend
    from squeezefmt.keras.evaluate import DEFAULT_CONFIDENCE
    backend = search_backend(ev.clf, ev.search_data, rounding)
    from squeezefmt.keras.eval_pack import fine_select
    searcher = StepSearch(ev.archive.arrays, scorer.guarded_accuracy, distortion=scorer.kl, select=select,
                          backend=backend, fine=fine_select(ctx))
    searcher.prepare(max(budgets))
    prepare_cpu = time.process_time() - t0
    rows = []
    for z, budget in [(z, b) for z in confidences for b in budgets]:
        scorer.confidence = z
        c0 = time.process_time()
        result = searcher.run(budget)
        cpu = prepare_cpu + time.process_time() - c0
        nbytes, decoded, enc, dec = _pack_and_decode(ev, "lossless", result.codecs)
        family = "eval" if rounding == "gptq" else f"eval-{rounding}"
        rows.append(ev.row(family if z == DEFAULT_CONFIDENCE else f"{family} z={z:g}", f"max-drop {budget:g}", nbytes, decoded, enc, dec,
                           met=result.met, confidence=z, rounding=rounding,
                           search_s=result.seconds, search_cpu_s=cpu, evaluations=result.evaluations,
                           steps={n: c.step for n, c in result.choices.items()},
                           bits_per_weight={n: round(c.bits_per_weight, 3) for n, c in result.choices.items()}))
        say(rows[-1])
    return rows


def torch_layout(archive) -> dict:
    """Weights as a torch model holds them: conv (O, I, H, W), depthwise (C*m, 1, H, W), dense (out, in)."""
    ctx = archive.contexts()
    out = {}
    for name, a in archive.arrays.items():
        role = ctx[name].role if name in ctx else None
        if a.ndim == 4 and role == "depthwise_kernel":
            h, w, c, m = a.shape
            out[name] = np.ascontiguousarray(a.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w))
        elif a.ndim == 4:
            out[name] = np.ascontiguousarray(a.transpose(3, 2, 0, 1))
        elif a.ndim == 2:
            out[name] = np.ascontiguousarray(a.T)
        else:
            out[name] = np.ascontiguousarray(a)
    return out


def keras_layout(archive, torch_arrays) -> dict:
    """The inverse of :func:`torch_layout`."""
    ctx = archive.contexts()
    out = {}
    for name, a in archive.arrays.items():
        t = np.asarray(torch_arrays[name])
        role = ctx[name].role if name in ctx else None
        if a.ndim == 4 and role == "depthwise_kernel":
            h, w, c, m = a.shape
            out[name] = t.reshape(c, m, h, w).transpose(2, 3, 0, 1)
        elif a.ndim == 4:
            out[name] = t.transpose(2, 3, 1, 0)
        elif a.ndim == 2:
            out[name] = t.T
        else:
            out[name] = t
        if out[name].shape != a.shape:
            raise ValueError(f"NNCodec returned {name} with shape {t.shape}")
    return out


def nncodec_python(arg) -> str | None:
    for cand in (arg, os.environ.get("NNCODEC_PYTHON"), os.path.join(ROOT, ".venv-nnc", "bin", "python")):
        if cand and os.path.exists(cand):
            ok = subprocess.run([cand, "-c", "import nncodec.nn"], capture_output=True).returncode == 0
            if ok:
                return os.path.abspath(cand)
    return None


def bench_nncodec(ev: Evaluated, python: str, qps, say) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "weights.npz")
        np.savez(src, **torch_layout(ev.archive))
        cmd = [python, os.path.join(HERE, "nncodec_worker.py"), src, tmp] + [f"--qp={q}" for q in qps]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)  # NNCodec writes .nnc files into its cwd
        if proc.returncode != 0:
            print(f"NNCodec failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return rows
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            with np.load(os.path.join(tmp, f"qp{r['qp']}.npz")) as z:
                decoded = keras_layout(ev.archive, {k: z[k] for k in z.files})
            rows.append(ev.row("nncodec", f"qp {r['qp']}", r["bytes"], decoded, r["encode_s"], r["decode_s"]))
            say(rows[-1])
    return rows


def fmt(row: dict) -> str:
    extra = ""
    if row["family"].startswith("eval"):
        extra = f"  search {row['search_s']:.0f}s wall / {row['search_cpu_s']:.0f}s CPU{'' if row['met'] else '  NOT MET'}"
    return (f"  {row['family']:<17}{row['setting']:<15}{row['bytes']:>9} {row['ratio']:>7.2f}x "
            f"{row['d_held']:>+7.2f} {row['d_search']:>+7.2f} {row['encode_s']:>8.3f} {row['decode_s']:>8.3f}{extra}")


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` and ``c`` discordant predictions (a binomial sign test)."""
    from math import comb

    n, k = b + c, min(b, c)
    return 1.0 if n == 0 else min(1.0, 2.0 * sum(comb(n, i) for i in range(k + 1)) / 2.0 ** n)


def versus_nncodec(rows: list) -> list:
    """For each NNCodec row, the smallest squeezefmt file at least as accurate on held-out AND on search
    rows (None: no squeezefmt option matches its accuracy); printed as the "ahead of NNCodec" check.

    Where no squeezefmt file of at least NNCodec's ratio is that accurate, the most accurate one of at
    least its ratio is compared prediction by prediction on all rows: ``discordant`` = (rows only ours
    gets right, rows only NNCodec gets right) and ``mcnemar_p``, whether the difference is more than noise.
    """
    ours = [r for r in rows if r["family"] not in ("nncodec", "lossless")]
    out = []
    for n in (r for r in rows if r["family"] == "nncodec"):
        match = [r for r in ours if r["d_held"] >= n["d_held"] - 1e-9 and r["d_search"] >= n["d_search"] - 1e-9]
        best = max(match, key=lambda r: r["ratio"]) if match else None
        v = {"nncodec": n["setting"], "nncodec_ratio": n["ratio"], "d_held": n["d_held"],
             "d_search": n["d_search"], "ours": None if best is None else f"{best['family']} {best['setting']}",
             "ours_ratio": None if best is None else best["ratio"],
             "ahead": best is not None and best["ratio"] >= n["ratio"]}
        smaller = [r for r in ours if r["ratio"] >= n["ratio"]]
        if not v["ahead"] and smaller:
            near = max(smaller, key=lambda r: (int(r["_correct"].sum()), r["ratio"]))
            b = int(np.sum(near["_correct"] & ~n["_correct"]))
            c = int(np.sum(n["_correct"] & ~near["_correct"]))
            v.update(nearest=f"{near['family']} {near['setting']}", nearest_ratio=near["ratio"],
                     nearest_d_held=near["d_held"], nearest_d_search=near["d_search"],
                     discordant=[b, c], mcnemar_p=mcnemar_p(b, c))
        out.append(v)
    return out


HEADER = (f"  {'option':<17}{'setting':<15}{'bytes':>9} {'ratio':>8} {'d_held':>7} {'d_srch':>7} "
          f"{'enc s':>8} {'dec s':>8}")


def plot(results: dict, png: str, python: str | None) -> str:
    """Write the PNG with matplotlib from this interpreter or ``python``; returns a status message."""
    script = os.path.join(HERE, "plot_posttrain.py")
    for interp in (sys.executable, python):
        if interp and subprocess.run([interp, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            subprocess.run([interp, script, png + ".json", png], check=True)
            return f"wrote {os.path.relpath(png, ROOT)}"
    return "no matplotlib in this interpreter or the NNCodec one: PNG skipped"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mnist_cnn,cnn390k")
    ap.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS), help="--eval budgets (points)")
    ap.add_argument("--confidences", default="0.5,1,0", help="--eval --confidence values")
    ap.add_argument("--roundings", default="gptq", help="--eval --rounding values (gptq, rdo)")
    ap.add_argument("--qps", default=",".join(str(q) for q in NNCODEC_QPS), help="NNCodec qps")
    ap.add_argument("--nncodec-python", default=None)
    ap.add_argument("--quick", action="store_true", help="fewer settings per option")
    ap.add_argument("--parts", default="options,eval,nncodec", help="which row groups to run")
    ap.add_argument("--rows", type=int, default=10000, help="MNIST test rows used (halves: search / held-out)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "posttrain.json"))
    args = ap.parse_args(argv)

    from sqzdev import datasets

    names = [n for n in args.models.split(",") if n]
    paths = load_models(names)
    (_, _), (x, y) = datasets.load_mnist()
    x = x[:args.rows].astype(np.float32) / 255.0
    y = y[:args.rows].astype(np.int64)
    nnc = nncodec_python(args.nncodec_python)
    if nnc is None:
        print("NNCodec not found (pip install torch==2.13.0 nncodec==2.1.3 in a venv, pass --nncodec-python): "
              "its rows are skipped")
    budgets = [float(b) for b in args.budgets.split(",") if b]
    confidences = [float(z) for z in args.confidences.split(",") if z]
    options = squeezefmt_options(args.quick)
    results = {"models": {}, "nncodec": nnc is not None, "budgets": budgets}
    for name in names:
        t0 = time.perf_counter()
        ev = Evaluated(paths[name], x, y)
        half = len(y) // 2
        print(f"\n{name}: {paths[name]}, {ev.raw // 4} float32 weights ({ev.raw} bytes); exact accuracy "
              f"{ev.base[0]:.2f} % held-out (rows {half}-{len(y) - 1}), {ev.base[1]:.2f} % search half (rows 0-{half - 1})")
        print(HEADER)
        say = lambda row: print(fmt(row), flush=True)  # noqa: E731
        parts = args.parts.split(",")
        rows = bench_options(ev, options if "options" in parts else options[:1], say)
        if "eval" in parts:
            for rounding in args.roundings.split(","):
                rows += bench_eval(ev, budgets, confidences, say, rounding)
        if nnc is not None and "nncodec" in parts:
            rows += bench_nncodec(ev, nnc, [int(q) for q in args.qps.split(",") if q], say)
        vs = versus_nncodec(rows)
        if vs:
            print("\n  NNCodec point          its ratio  d_held d_srch   best squeezefmt at least as accurate (both halves)")
            for v in vs:
                ours = f"{v['ours']} {v['ours_ratio']:.2f}x" if v["ours"] else "none"
                print(f"  {v['nncodec']:<22}{v['nncodec_ratio']:>8.2f}x {v['d_held']:>+7.2f} {v['d_search']:>+6.2f}   "
                      f"{ours}{'' if v['ahead'] else '   <- NNCodec ahead'}")
                if "nearest" in v:
                    b, c = v["discordant"]
                    print(f"  {'':<22}{'':>9} {'':>7} {'':>6}   most accurate at >= its ratio: {v['nearest']} "
                          f"{v['nearest_ratio']:.2f}x ({v['nearest_d_held']:+.2f} / {v['nearest_d_search']:+.2f}); "
                          f"rows only ours / only NNCodec gets right: {b} / {c}, McNemar p = {v['mcnemar_p']:.2f}")
        for r in rows:
            r.pop("_correct", None)
        results["models"][name] = {"path": paths[name], "float_bytes": ev.raw, "base_acc_held": ev.base[0],
                                   "base_acc_search": ev.base[1], "rows": rows, "versus_nncodec": vs,
                                   "seconds": time.perf_counter() - t0}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}")
    png = os.path.splitext(args.out)[0] + ".png"
    with open(png + ".json", "w") as f:
        json.dump(results, f)
    try:
        print(plot(results, png, nnc))
    finally:
        os.unlink(png + ".json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
