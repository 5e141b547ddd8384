"""Benchmark the run-length gamma coder against tensorflow-compression's C++ op, in one run.

    python tools/bench_gamma.py [--n 4000000] [--repeats 7] [--json bench-results/gamma.json]

Data: rounded Laplacian latents, as EPR-trained models have them ("epr": scale 0.4, ~71 % zeros)
and a denser set ("dense": scale 8, ~6 % zeros). For each, encode and decode throughput in
values/s of:

- ``tfc``:    ``tfc.run_length_gamma_encode`` / ``run_length_gamma_decode``, eager, with the input
              tensors built beforehand; only the op call is timed;
- ``c``:      ``squeezefmt.entropy.gamma`` with the C extension (the full public call);
- ``numpy``:  the vectorized numpy fallback;
- ``python``: the pure Python reference, timed on a smaller prefix (``--ref-n``) and reported
              per value (its speed does not depend on the length).

Every implementation's output is checked against tfc's before it is timed. Best of
``--repeats`` runs. The design target (design.md section 7) is >= 5x tfc's op in both directions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from squeezefmt.entropy import gamma  # noqa: E402
from sqzdev.timing import best_of  # noqa: E402

TARGET_RATIO = 5.0
DATASETS = {"epr": 0.4, "dense": 8.0}  # Laplace scale of the latents before rounding


def latents(n: int, scale: float, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0.0, scale, n)).astype(np.int32)


def bench_dataset(v: np.ndarray, args, tfc_mod, tf_mod) -> dict:
    n = v.size
    out: dict = {}
    reference_bytes = None
    if tfc_mod is not None:
        tv = tf_mod.constant(v)
        code = tfc_mod.run_length_gamma_encode(tv)
        reference_bytes = code.numpy()
        shape = tf_mod.constant([n], tf_mod.int32)
        assert np.array_equal(tfc_mod.run_length_gamma_decode(code, shape).numpy(), v)
        out["tfc"] = {
            "encode": n / best_of(lambda: tfc_mod.run_length_gamma_encode(tv), args.repeats),
            "decode": n / best_of(lambda: tfc_mod.run_length_gamma_decode(code, shape), args.repeats),
        }
    for backend in gamma.available_backends():
        size = min(n, args.ref_n) if backend == "python" else n
        part = v[:size]
        repeats = 1 if backend == "python" else (max(2, args.repeats // 2) if backend == "numpy" else args.repeats)
        data = gamma.encode(part, backend=backend)
        if reference_bytes is not None and size == n:
            assert data == reference_bytes, f"{backend} bytes differ from tfc's"
        assert np.array_equal(gamma.decode(data, size, backend=backend), part), backend
        out[backend] = {
            "encode": size / best_of(lambda: gamma.encode(part, backend=backend), repeats),
            "decode": size / best_of(lambda: gamma.decode(data, size, backend=backend), repeats),
        }
        if backend == "python":
            out[backend]["measured_on"] = size
    info = {
        "values": n,
        "zero_fraction": float(np.mean(v == 0)),
        "bytes": len(gamma.encode(v)),
        "bits_per_value": 8.0 * len(gamma.encode(v)) / n,
        "results_values_per_s": out,
    }
    if "tfc" in out:
        info["ratio_vs_tfc"] = {
            impl: {d: out[impl][d] / out["tfc"][d] for d in ("encode", "decode")} for impl in out if impl != "tfc"
        }
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4_000_000, help="values per dataset (default 4M)")
    ap.add_argument("--ref-n", type=int, default=200_000, help="values for the pure Python reference")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=os.path.join("bench-results", "gamma.json"))
    ap.add_argument("--no-tfc", action="store_true", help="skip tensorflow-compression")
    args = ap.parse_args(argv)

    tfc_mod = tf_mod = None
    if not args.no_tfc:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow as tf_mod  # noqa: PLC0415
            import tensorflow_compression as tfc_mod  # noqa: PLC0415
        except ImportError:
            print("tensorflow-compression not installed: no tfc baseline", file=sys.stderr)

    report = {
        "benchmark": "run-length Elias gamma (tfc-compatible)",
        "target": f">= {TARGET_RATIO:g}x tfc's op, encode and decode, same run",
        "default_backend": gamma.BACKEND,
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "numpy": np.__version__,
                    "tensorflow": getattr(tf_mod, "__version__", None)},
        "datasets": {},
    }
    for name, scale in DATASETS.items():
        report["datasets"][name] = info = bench_dataset(latents(args.n, scale), args, tfc_mod, tf_mod)
        info["laplace_scale"] = scale
        print(f"\n{name}: {info['values']:,} values, {100 * info['zero_fraction']:.1f} % zeros, "
              f"{info['bits_per_value']:.3f} bits/value")
        print(f"  {'implementation':<16}{'encode Mval/s':>15}{'decode Mval/s':>15}{'enc vs tfc':>12}{'dec vs tfc':>12}")
        for impl, r in info["results_values_per_s"].items():
            ratio = info.get("ratio_vs_tfc", {}).get(impl)
            rs = (f"{ratio['encode']:>11.2f}x{ratio['decode']:>11.2f}x" if ratio else f"{'':>12}{'':>12}")
            label = impl + (f" (on {r['measured_on']:,})" if "measured_on" in r else "")
            print(f"  {label:<16}{r['encode'] / 1e6:>15.2f}{r['decode'] / 1e6:>15.2f}{rs}")
    epr = report["datasets"]["epr"].get("ratio_vs_tfc", {}).get("c")
    if epr:
        report["meets_target"] = bool(min(epr.values()) >= TARGET_RATIO)
        print(f"\nC path vs tfc on EPR latents: encode {epr['encode']:.1f}x, decode {epr['decode']:.1f}x "
              f"(target >= {TARGET_RATIO:g}x): {'met' if report['meets_target'] else 'NOT met'}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
