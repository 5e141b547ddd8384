"""Container benchmark: sizes and times of .sqz presets against the .h5 and zstd baselines.

For each Keras .h5 given (default: the bundled example model) it measures, in one run:
- size of the .h5, of zstd-19 of the .h5, of zstd-19 of the raw float32 weight bytes;
- for each preset: .sqz size, ratio vs the float weights, pack time, numpy decode time and
  decode throughput (bytes of decoded weights per second), Keras load time with --keras;
- for the lossless preset: the order-0 limit for float weights (entropy of sign+exponent plus
  raw mantissa bits) and how close byte grouping gets to it.
Prints a table and writes JSON (``--json``, default bench-results/bench.json).

    python tools/bench.py [model.h5 ...] [--presets lossless,fast] [--keras]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import zstandard

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import squeezefmt  # noqa: E402
from squeezefmt import buffers  # noqa: E402
from squeezefmt.keras.formats.h5 import read_h5  # noqa: E402
from squeezefmt.keras.pack import pack_archive  # noqa: E402
from squeezefmt.presets import names as preset_names  # noqa: E402
from sqzdev.timing import best_of  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "..", "examples", "mnist_cnn.h5")


def order0_limit(weights: list[np.ndarray]) -> float:
    """Compression ratio limit of float32 weights under an order-0 model of sign+exponent (9 bits)
    with the 23 mantissa bits stored raw: 32 / (H(sign, exponent) + 23)."""
    f32 = [w.astype(np.float32, copy=False).ravel() for w in weights if w.dtype == np.float32 and w.size]
    if not f32:
        return float("nan")
    u = np.concatenate(f32).view(np.uint32) >> 23
    counts = np.bincount(u, minlength=512)
    p = counts[counts > 0] / u.size
    return 32.0 / (float(-(p * np.log2(p)).sum()) + 23.0)


def bench_model(path: str, presets: list[str], keras: bool, repeats: int) -> dict:
    archive = read_h5(path)
    arrays = archive.arrays
    weights_bytes = sum(a.nbytes for a in arrays.values())
    raw = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    with open(path, "rb") as f:
        h5 = f.read()
    z = zstandard.ZstdCompressor(level=19)
    result = {
        "model": os.path.basename(path), "tensors": len(arrays), "weights_bytes": weights_bytes,
        "h5_bytes": len(h5), "zstd19_h5_bytes": len(z.compress(h5)), "zstd19_weights_bytes": len(z.compress(raw)),
        "order0_limit_ratio": order0_limit(list(arrays.values())), "presets": {},
    }
    for name in presets:
        t0 = time.perf_counter()
        data = pack_archive(archive, None, preset=name)
        pack_s = time.perf_counter() - t0
        decode_s = best_of(lambda: squeezefmt.load(data), repeats)
        row = {"sqz_bytes": len(data), "ratio_vs_weights": weights_bytes / len(data),
               "ratio_vs_h5": len(h5) / len(data), "pack_s": pack_s, "decode_s": decode_s,
               "decode_GBps": weights_bytes / decode_s / 1e9}
        with squeezefmt.open(data) as f:
            row["streams_bytes"] = sum(f.info(k).stored_bytes for k in f.keys())
            row["header_bytes"] = f.header_size
        if keras:
            import squeezefmt.keras as sk  # noqa: PLC0415

            sk.load(data)  # warm up TensorFlow
            row["keras_load_s"] = best_of(lambda: sk.load(data), max(1, repeats // 3))
        result["presets"][name] = row
    lossless = result["presets"].get("lossless")
    if lossless:
        # ratio of the weight streams alone (no header/model config), the quantity the limit bounds
        result["lossless_stream_ratio"] = weights_bytes / lossless["streams_bytes"]
        result["fraction_of_limit"] = result["lossless_stream_ratio"] / result["order0_limit_ratio"]
        result["bytegroup_vs_zstd_weights"] = result["zstd19_weights_bytes"] / lossless["streams_bytes"]
    return result


def bench_large_tensor(repeats: int) -> dict:
    """Decode throughput of lossless packing on one 8 MiB heavy-tailed float32 tensor (per-tensor
    overheads, which dominate small example models, vanish here), against zstd-19 of the same bytes."""
    rng = np.random.default_rng(0)
    w = (rng.standard_t(4, size=(2048, 1024)) * 0.03).astype(np.float32)
    data = squeezefmt.save({"w": w}, preset="lossless")
    z = zstandard.ZstdCompressor(level=19).compress(w.tobytes())
    dz = zstandard.ZstdDecompressor()
    sq_s = best_of(lambda: squeezefmt.load(data), repeats)
    z_s = best_of(lambda: dz.decompress(z), repeats)
    # the same with output buffers kept for reuse (as lazy models do): no fresh pages per decode
    previous = buffers.keep_buffers(4 * w.nbytes)
    kept_s = best_of(lambda: squeezefmt.load(data), repeats)
    if not previous:
        buffers.keep_buffers(0)
    return {"bytes": w.nbytes, "sqz_ratio": w.nbytes / len(data), "zstd19_ratio": w.nbytes / len(z),
            "sqz_decode_GBps": w.nbytes / sq_s / 1e9, "zstd19_decode_GBps": w.nbytes / z_s / 1e9,
            "sqz_decode_GBps_kept_buffers": w.nbytes / kept_s / 1e9}


def print_table(results: list[dict]) -> None:
    for r in results:
        print(f"\n{r['model']}: {r['tensors']} tensors, {r['weights_bytes']} bytes of weights")
        print(f"  .h5 {r['h5_bytes']} B | zstd-19(.h5) {r['zstd19_h5_bytes']} B "
              f"({r['h5_bytes'] / r['zstd19_h5_bytes']:.2f}x) | zstd-19(weights) {r['zstd19_weights_bytes']} B "
              f"({r['weights_bytes'] / r['zstd19_weights_bytes']:.3f}x)")
        print(f"  {'preset':<18}{'sqz bytes':>11}{'x weights':>10}{'x .h5':>8}{'pack s':>9}{'decode ms':>11}{'GB/s':>7}"
              + (f"{'keras load s':>14}" if any('keras_load_s' in p for p in r['presets'].values()) else ""))
        for name, p in r["presets"].items():
            line = (f"  {name:<18}{p['sqz_bytes']:>11}{p['ratio_vs_weights']:>10.3f}{p['ratio_vs_h5']:>8.2f}"
                    f"{p['pack_s']:>9.2f}{p['decode_s'] * 1e3:>11.2f}{p['decode_GBps']:>7.2f}")
            if "keras_load_s" in p:
                line += f"{p['keras_load_s']:>14.2f}"
            print(line)
        if "fraction_of_limit" in r:
            print(f"  lossless weight streams: {r['lossless_stream_ratio']:.4f}x; order-0 limit "
                  f"{r['order0_limit_ratio']:.4f}x -> {100 * r['fraction_of_limit']:.1f} % of the limit; "
                  f"byte-grouped vs plain zstd-19 of the same weights: {r['bytegroup_vs_zstd_weights']:.3f}x smaller")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=[DEFAULT_MODEL])
    ap.add_argument("--presets", default="all", help="comma-separated preset names, or 'all'")
    ap.add_argument("--keras", action="store_true", help="also time squeezefmt.keras.load (imports TensorFlow)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=os.path.join("bench-results", "bench.json"))
    args = ap.parse_args(argv)
    presets = preset_names() if args.presets == "all" else args.presets.split(",")
    presets = ["lossless"] + [p for p in presets if p != "lossless"]
    results = [bench_model(m, presets, args.keras, args.repeats) for m in args.models]
    print_table(results)
    large = bench_large_tensor(args.repeats)
    print(f"\n8 MiB float32 tensor: lossless {large['sqz_ratio']:.3f}x at {large['sqz_decode_GBps']:.2f} GB/s decode; "
          f"zstd-19 {large['zstd19_ratio']:.3f}x at {large['zstd19_decode_GBps']:.2f} GB/s "
          f"(decode speed ratio {large['sqz_decode_GBps'] / large['zstd19_decode_GBps']:.2f}); "
          f"{large['sqz_decode_GBps_kept_buffers']:.2f} GB/s with output buffers kept for reuse")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"results": results, "large_tensor": large, "squeezefmt": squeezefmt.__version__}, f, indent=2)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
