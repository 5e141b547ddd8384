"""Container overhead: where the bytes of small containers go (header, padding, streams).

    python tools/bench_overhead.py [--epr EPR.h5 ...] [--tfc] [--baseline DIR] [--label NAME] [--out bench-results/overhead.json]

Uses only the public reader API (``SqzFile.header_size``, ``entry(name).streams``), so the same script
measures an older squeezefmt (run it with that version on PYTHONPATH) for a before/after table.
``--baseline DIR`` does both in one run: it measures the squeezefmt package under DIR (e.g. a
``git archive <commit> squeezefmt | tar -x -C DIR`` export) in a subprocess, then this checkout, and
prints them side by side. The EPR models come from ``tools/epr_train.py`` (``--epochs``,
``--snapshot-epochs``); this tool does not train. ``--tfc`` (TensorFlow + tensorflow-compression)
adds the TFC notebook's own bytes for every ``--epr`` model (its ``PowerLawEntropyModel`` strings plus
float16 log-steps, ``epr_train.tfc_tutorial_bytes``) and the ratio .sqz / notebook.
Cases, each packed with the default options unless said:

- every ``--epr`` .h5 (an EPR-trained model, e.g. from tools/epr_train.py);
- federated payloads of a small MLP (784-64-10, 50,890 weights) and a tiny one (20-16-3, 387 weights),
  deterministic random weights and a simulated training step: ``lossless`` full, ``lossless-delta``
  and ``lossy-delta-quant`` round 2 (the 8-bit / 4-bit quant deltas: the table in the README);
- the bundled examples/mnist_cnn.h5 (a larger model) and a 64-tensor weights-only Dense/BatchNorm file
  (sqzdev/dense_bn_h5.py; the header-fallback case).

For every case it also reports the zstd-19 size of the header JSON and header / zstd(JSON), and
(this checkout only) the header JSON's bytes by part before compression
(``squeezefmt.container.breakdown.header_breakdown(f, "json")``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def breakdown(data: bytes) -> dict:
    import squeezefmt
    from squeezefmt.container.jsonbound import decode_header
    from squeezefmt.container.layout import PREAMBLE_SIZE, parse_preamble

    pre = parse_preamble(data[:PREAMBLE_SIZE])
    json_text = decode_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_len], pre)
    with squeezefmt.open(data) as f:
        streams = sum(s.length for n in f.keys() for s in f.entry(n).streams)
        version = "%d.%d" % f.format_version
        tensors = len(f)
    zjson = len(zstandard.ZstdCompressor(level=19).compress(json_text))
    return {"file": len(data), "format": version, "tensors": tensors, "header": pre.header_len,
            "padding": len(data) - PREAMBLE_SIZE - pre.header_len - streams, "streams": streams,
            "json": len(json_text), "zstd_json": zjson, "header_vs_zstd_json": round(pre.header_len / zjson, 3)}


def fl_payloads() -> dict[str, bytes]:
    out = {}
    for label, (n_in, hidden, n_out) in (("fl_mlp", (784, 64, 10)), ("fl_tiny", (20, 16, 3))):
        out.update(_fl_payloads(label, n_in, hidden, n_out))
    return out


def _fl_payloads(label: str, n_in: int, hidden: int, n_out: int) -> dict[str, bytes]:
    from squeezefmt import federated as fl

    rng = np.random.default_rng(0)
    w0 = [rng.normal(0, 0.05, (n_in, hidden)).astype(np.float32), np.zeros(hidden, np.float32),
          rng.normal(0, 0.1, (hidden, n_out)).astype(np.float32), np.zeros(n_out, np.float32)]

    def step(ws, seed):
        r = np.random.default_rng(seed)
        return [w + r.normal(0, 0.002, w.shape).astype(np.float32) for w in ws]
    out = {}
    for preset in ("lossless", "lossless-delta", "lossy-delta-quant"):
        enc = fl.BroadcastEncoder(preset)
        first = enc.encode(w0)
        second = enc.encode(step(w0, 1))
        if preset == "lossless":
            out[f"{label}_full_lossless"] = first
        else:
            out[f"{label}_delta_{preset}"] = second
    return out


def _load_file(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epr", nargs="*", default=[])
    ap.add_argument("--label", default="current")
    ap.add_argument("--tfc", action="store_true", help="add the TFC notebook's bytes for the --epr models")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="also measure the squeezefmt package under DIR (before/after in one run)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "overhead.json"))
    args = ap.parse_args(argv)
    sys.path.append(ROOT)  # after PYTHONPATH: an older squeezefmt given there is the one measured
    import squeezefmt
    import squeezefmt.keras as sk

    cases: dict[str, bytes] = {}
    for path in args.epr:
        cases[f"epr:{os.path.basename(path)}"] = sk.pack(path)
    cases.update(fl_payloads())
    cases["mnist_cnn.h5"] = sk.pack(os.path.join(ROOT, "examples", "mnist_cnn.h5"))
    dense_bn_h5 = _load_file(os.path.join(ROOT, "sqzdev", "dense_bn_h5.py"))  # this checkout's fixture

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dense_bn.h5")
        dense_bn_h5.write(path, 12, 16, 0)
        cases["dense_bn.h5 (64 tensors, weights only)"] = sk.pack(path)
    rows = {name: breakdown(data) for name, data in cases.items()}
    if args.tfc:
        for path in args.epr:
            rows[f"epr:{os.path.basename(path)}"]["tfc_notebook"] = tfc_bytes(path)
    for name, data in cases.items():
        rows[name]["json_parts"] = json_parts(data)
    print(f"squeezefmt {squeezefmt.__version__} from {os.path.dirname(squeezefmt.__file__)} ({args.label})")
    before = _baseline_rows(args) if args.baseline else None
    print_table(rows, before)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    old = json.load(open(args.out)) if os.path.exists(args.out) else {}
    old[args.label] = rows
    if before is not None:
        old["baseline"] = {"dir": args.baseline, "rows": before}
    with open(args.out, "w") as fh:
        json.dump(old, fh, indent=1)
    return 0


def tfc_bytes(h5: str) -> int:
    """The TFC notebook's own bytes for an EPR model: its strings plus float16 log-steps."""
    import tensorflow as tf

    import squeezefmt.keras.epr  # noqa: F401 - registers the EPR layers for load_model
    epr_train = _load_file(os.path.join(HERE, "epr_train.py"))
    return int(epr_train.tfc_tutorial_bytes(tf.keras.models.load_model(h5))[0])


def json_parts(data: bytes) -> dict:
    """Header JSON bytes by part, before compression (empty for a squeezefmt without that breakdown)."""
    import squeezefmt

    try:
        from squeezefmt.container.breakdown import header_breakdown

        with squeezefmt.open(data) as f:
            return header_breakdown(f, "json")
    except (ImportError, TypeError):
        return {}


def _baseline_rows(args) -> dict:
    """The same cases measured with the squeezefmt under ``args.baseline`` (a subprocess)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "before.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--label", "before", "--out", out, "--epr", *args.epr]
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline))
        subprocess.run(cmd, check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        rows = json.load(open(out))["before"]
    for name, r in rows.items():
        r.pop("json_parts", None)
    return rows


def print_table(rows: dict, before: dict | None) -> None:
    cols = ["file", "format", "tensors", "header", "padding", "streams", "zstd_json", "header_vs_zstd_json"]
    if before is None:
        print(f"{'case':40s}" + "".join(f"{c:>12s}" for c in cols))
        for name, r in rows.items():
            print(f"{name[:40]:40s}" + "".join(f"{r[c]:>12}" for c in cols))
    else:
        print(f"{'case':40s} {'before: file = 40 + header + padding + streams':>48s} "
              f"{'after: file = 40 + header + padding + streams':>48s}")
        for name, r in rows.items():
            b = before.get(name)
            left = f"{b['file']:,} = 40 + {b['header']} + {b['padding']} + {b['streams']:,} ({b['format']})" if b else "-"
            right = f"{r['file']:,} = 40 + {r['header']} + {r['padding']} + {r['streams']:,} ({r['format']})"
            print(f"{name[:40]:40s} {left:>48s} {right:>48s}")
    for name, r in rows.items():
        if "tfc_notebook" in r:
            b = (before or {}).get(name)
            was = f"before {b['file'] / r['tfc_notebook']:.4f}x, " if b else ""
            print(f"{name}: TFC notebook bytes {r['tfc_notebook']:,}; .sqz / notebook: {was}"
                  f"now {r['file'] / r['tfc_notebook']:.4f}x")
    for name, r in rows.items():
        parts = r.get("json_parts") or {}
        if parts:
            shown = ", ".join(f"{k} {v}" for k, v in parts.items() if k not in ("stored header",) and v)
            print(f"  header JSON of {name}: {shown}")


if __name__ == "__main__":
    raise SystemExit(main())
