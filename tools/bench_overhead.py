"""Container overhead: where the bytes of small containers go (header, padding, streams).

    python tools/bench_overhead.py [--epr EPR.h5 ...] [--label NAME] [--out bench-results/overhead.json]

Uses only the public reader API (``SqzFile.header_size``, ``entry(name).streams``), so the same script
measures an older squeezefmt (run it with that version on PYTHONPATH) for a before/after table.
Cases, each packed with the default options unless said:

- every ``--epr`` .h5 (an EPR-trained model, e.g. from tools/epr_train.py);
- federated payloads of a small MLP (784-64-10, 50,890 weights) and a tiny one (20-16-3, 387 weights),
  deterministic random weights and a simulated training step: ``lossless`` full, ``lossless-delta``
  and ``lossy-delta-quant`` round 2 (the 8-bit / 4-bit quant deltas: the table in the README);
- the bundled examples/mnist_cnn.h5 (a larger model) and a 64-tensor weights-only Dense/BatchNorm file
  (sqzdev/dense_bn_h5.py; the header-fallback case).

For every case it also reports the zstd-19 size of the header JSON and header / zstd(JSON).
"""
from __future__ import annotations

import argparse
import json
import os
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
    print(f"squeezefmt {squeezefmt.__version__} from {os.path.dirname(squeezefmt.__file__)} ({args.label})")
    cols = ["file", "format", "tensors", "header", "padding", "streams", "zstd_json", "header_vs_zstd_json"]
    print(f"{'case':40s}" + "".join(f"{c:>12s}" for c in cols))
    for name, r in rows.items():
        print(f"{name[:40]:40s}" + "".join(f"{r[c]:>12}" for c in cols))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    old = json.load(open(args.out)) if os.path.exists(args.out) else {}
    old[args.label] = rows
    with open(args.out, "w") as fh:
        json.dump(old, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
