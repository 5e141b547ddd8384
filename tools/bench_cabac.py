"""Benchmark the context-adaptive arithmetic coder against Huffman and Elias gamma, in one run.

Inputs (integer indices of quantized weights):

- ``<model> <kernel>``: the kernels of a real Keras .h5 model (default: the 390k-parameter MNIST CNN in
  /work/wt/models, else examples/mnist_cnn.h5) quantized as the ``compact`` preset does (RDO step per
  tensor), every kernel of the model concatenated, tiled to ``--n`` values for the timings;
- ``laplace(s)``: rounded Laplace(0, s) integers, ``--n`` of them (s = 0.3: ~1 bit, 0.6: ~1.8 bits,
  1.0: ~2.5 bits, as wide as quantized weights usually get).

Coders, each measured on the same int32 values:

- ``cabac C`` / ``cabac ref``: squeezefmt.entropy.cabac, C extension / pure Python reference (the
  reference is timed on a ``REF_PREFIX`` prefix; its bytes are identical to C's), ``K`` by
  ``choose_k``; ``cabac C, K by size``: ``encode_smallest`` (K and g from the coder's own cost
  model, one pass, then one encode: what the codecs write);
- ``huffman C``: squeezefmt.entropy.huffman on ``value - min`` (what ``quant`` codes);
- ``gamma C``: squeezefmt.entropy.gamma (tfc-compatible run-length Elias gamma, what ``epr`` codes).

Reported: bits per value, ratio to the empirical order-0 entropy of the values (an ideal static coder;
an adaptive context coder can go below it), encode / decode throughput in M values/s (best of
``--repeat``, process CPU time so that other processes sharing the machine do not inflate it; wall
time is in the JSON). Goal (design.md section 7): cabac decode >= 50 M weights/s on the C path.

    python tools/bench_cabac.py                   # writes bench-results/cabac.json
    python tools/bench_cabac.py --n 1000000 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from squeezefmt.entropy import cabac, gamma, huffman  # noqa: E402

REF_PREFIX = 50_000
DEFAULT_MODELS = ["/work/wt/models/mnist_cnn_390k.h5", os.path.join(ROOT, "examples", "mnist_cnn.h5")]


def model_indices(path: str) -> np.ndarray:
    """Every kernel of a Keras .h5, quantized as the compact preset does, concatenated."""
    import h5py

    from squeezefmt.presets.compact import compact_codec

    parts = []
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and "kernel" in name.split("/")[-1] and obj.size >= 256:
                parts.append(compact_codec(obj[()]).quantize(obj[()])[0])
        group.visititems(visit)
    return np.concatenate(parts).astype(np.int32)


def entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best CPU seconds, best wall seconds, result)."""
    best_cpu = best_wall = float("inf")
    out = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, out


def coders(values: np.ndarray):
    """(name, encode(values) -> bytes, decode(bytes, n) -> values, prefix-only)."""
    k = cabac.choose_k(values)
    g = cabac.choose_g(values, k)
    lo = int(values.min())
    alphabet = int(values.max()) - lo + 1
    sym_dtype = np.uint8 if alphabet <= 256 else np.uint16
    yield "cabac C", (lambda v: cabac.encode(v, k, g, backend="c")), (lambda d, n: cabac.decode(d, n, backend="c")), False
    yield ("cabac C, K by size", (lambda v: cabac.encode_smallest(v, backend="c")),
           (lambda d, n: cabac.decode(d, n, backend="c")), False)
    yield ("cabac ref", (lambda v: cabac.encode(v, k, g, backend="python")),
           (lambda d, n: cabac.decode(d, n, backend="python")), True)
    yield ("huffman C", (lambda v: huffman.encode((v - lo).astype(sym_dtype), alphabet_size=alphabet)),
           (lambda d, n: huffman.decode(d, n, dtype=sym_dtype)), False)
    yield "gamma C", (lambda v: gamma.encode(v)), (lambda d, n: gamma.decode(d, n)), False


def run_case(name: str, values: np.ndarray, n: int, repeat: int) -> list[dict]:
    reps = -(-n // values.size)
    tiled = np.tile(values, reps)[:n] if values.size < n else values[:n]
    h0 = entropy_bits(values)
    rows = []
    for coder, enc, dec, prefix_only in coders(values):
        data = tiled[:REF_PREFIX] if prefix_only else tiled
        if prefix_only:        # the reference's bytes equal the C path's (tests); its size is not re-measured
            size_bits = None
        else:                  # compression: the real (untiled) values
            size_bits = 8 * len(enc(values)) / values.size
        ce, we, stream = timed(lambda: enc(data), 1 if prefix_only else repeat)
        cd, wd, back = timed(lambda: dec(stream, data.size), 1 if prefix_only else repeat)
        if coder.startswith("huffman"):
            back = back.astype(np.int64) + int(values.min())
        assert np.array_equal(np.asarray(back, np.int64), data.astype(np.int64)), coder
        rows.append({"input": name, "coder": coder, "values": int(values.size), "timed_values": int(data.size),
                     "bits_per_value": None if size_bits is None else round(size_bits, 4),
                     "entropy_bits": round(h0, 4),
                     "vs_entropy": round(size_bits / h0, 4) if h0 and size_bits is not None else None,
                     "encode_M_per_s": round(data.size / ce / 1e6, 2), "decode_M_per_s": round(data.size / cd / 1e6, 2),
                     "encode_M_per_s_wall": round(data.size / we / 1e6, 2),
                     "decode_M_per_s_wall": round(data.size / wd / 1e6, 2)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4_000_000, help="values per timing (inputs are tiled)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench-results", "cabac.json"))
    args = ap.parse_args(argv)
    if "c" not in cabac.BACKENDS:
        sys.exit("the C extension _cabacc is not built: python setup.py build_ext --inplace")
    rng = np.random.default_rng(0)
    cases = []
    model = args.model or next((p for p in DEFAULT_MODELS if os.path.exists(p)), None)
    if model:
        cases.append((f"{os.path.basename(model)} kernels (compact)", model_indices(model)))
    for s in (0.3, 0.6, 1.0):
        cases.append((f"laplace({s})", np.rint(rng.laplace(0, s, args.n)).astype(np.int32)))
    rows = []
    print(f"{'input':<36} {'coder':<10} {'bits/value':>10} {'H0':>7} {'xH0':>6} {'enc M/s':>8} {'dec M/s':>8}")
    for name, values in cases:
        for r in run_case(name, values, args.n, args.repeat):
            rows.append(r)
            bits = "=C" if r["bits_per_value"] is None else f"{r['bits_per_value']:.3f}"
            ratio = "" if r["vs_entropy"] is None else f"{r['vs_entropy']:.3f}"
            print(f"{r['input']:<36} {r['coder']:<10} {bits:>10} {r['entropy_bits']:>7.3f} "
                  f"{ratio:>6} {r['encode_M_per_s']:>8.2f} {r['decode_M_per_s']:>8.2f}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"tool": "tools/bench_cabac.py", "n": args.n, "repeat": args.repeat, "model": model,
                   "platform": platform.platform(), "python": platform.python_version(),
                   "timing": "best of repeat, process CPU time (wall time in *_wall)", "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
