"""Decode throughput into float32: the C stages against numpy take and memcpy, and whole codecs.

    python tools/bench_decode.py [--mib 16] [--repeats 15] [--clock wall|cpu] [--sqz model.sqz ...]

Two tables, one run (best of ``--repeats``, one thread):

* **stages**: the loops that turn decoded symbols/planes into the float32 output, each writing a
  ``--mib`` MiB float32 array that is already mapped (so page faults are not counted): the C loop
  (squeezefmt/_decodec.c, squeezefmt/codecs/_bytegroupc.c), its numpy reference, and two baselines of
  the same output size measured in the same run: ``memcpy`` (``np.copyto`` of float32) and
  ``numpy take`` (``np.take`` of a 256-entry float32 table by uint8 indices). Two stages that come
  before them are timed too, per float32 output value: the Huffman decode of 8-bit quantization
  symbols (the entropy stage of quant/cluster) and the CRC-32 every decode checks first (zlib's and
  the C one of squeezefmt.checksum). Then the whole way from the Huffman stream to float32, two-stage
  (symbols to an index array, then the gather or per-channel dequant) against the fused C decoder
  (``huffman.decode_gather`` / ``decode_dequant``: each codeword straight to its float, no index array).
  Repeated decodes of one long stream run several decoders from the code boundaries the first decode
  recorded; the "first decode" rows forget them before every call (what a first call pays). Every row
  runs on one thread (``squeezefmt.threads.set_decode_threads(1)``) but the "two threads" ones: a
  repeated decode of 2**19 values or more in two halves at once, the second on a helper thread (what
  ``decode_gather`` does by default on a machine with two CPUs), timed by the wall clock whatever
  ``--clock`` says (one thread's CPU time would leave out the helper's).
* **codecs**: ``SqzFile.tensor`` of one 2048 x N float32 tensor (whole decode: CRC, entropy stage,
  float stage), per codec, against zstd-19 of the same float32 bytes decompressed by python-zstandard
  alone; once into a freshly mapped output (the default) and once with output buffers kept for reuse
  (``buffers.keep_buffers``, what lazy models do), which removes the page faults of fresh memory.

GB/s are bytes of float32 output per second. Writes bench-results/bench_decode.json.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import time
import zlib

import numpy as np
import zstandard

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import squeezefmt  # noqa: E402
from squeezefmt import buffers, checksum, threads  # noqa: E402
from squeezefmt.codecs import bytegroup, quantize  # noqa: E402
from squeezefmt.codecs.bytegroup import ByteGroup  # noqa: E402
from squeezefmt.codecs.cluster import Cluster  # noqa: E402
from squeezefmt.codecs.quantize import Quantize  # noqa: E402
from squeezefmt.codecs.raw import Raw  # noqa: E402
from squeezefmt.codecs.zstd_codec import Zstd  # noqa: E402
from squeezefmt.entropy import huffman  # noqa: E402


#: The clock of :func:`best`: wall time, or this thread's CPU time (``--clock cpu``: on a shared machine
#: it leaves out the time the thread waits for a core; every stage here runs on the calling thread).
CLOCK = time.perf_counter


def best(fn, repeats: int) -> float:
    fn()
    t_best = float("inf")
    for _ in range(repeats):
        t = CLOCK()
        fn()
        t_best = min(t_best, CLOCK() - t)
    return t_best


def stage_rows(n: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = buffers.empty_aligned(n, np.float32, populate=True)
    out.fill(0)
    src = rng.standard_normal(n).astype(np.float32)
    idx = rng.integers(0, 256, n).astype(np.uint8)
    table = rng.standard_normal(256).astype(np.float32)
    channels = 2048
    shift = np.zeros(channels, np.int32)
    zp = rng.integers(100, 150, channels).astype(np.int32)
    step = (rng.random(channels) * 1e-3 + 1e-4).astype(np.float32)
    planes = [bytes(rng.integers(0, 256, n).astype(np.uint8)) for _ in range(4)]
    u32 = out.view(np.uint32)
    # the symbols of an 8-bit quantization of a heavy-tailed weight tensor (as quant 8-bit per tensor)
    w = rng.standard_t(4, n)
    q8 = np.clip(np.round((w - w.min()) / (w.max() - w.min()) * 255), 0, 255).astype(np.uint8)
    q8_stream = huffman.encode(q8, 256)
    q8_sym, q8_table = np.empty(n, np.uint8), (np.arange(256, dtype=np.float32) - 128) * np.float32(1e-3)
    # the same weights quantized per output channel (the last axis, 2048 channels), as quant per_channel
    pc_zp = rng.integers(100, 150, channels).astype(np.int32)
    pc_shift = (int(pc_zp.max()) - pc_zp).astype(np.int32)
    pc_sym = (q8.reshape(-1, channels).astype(np.int64) + pc_shift).reshape(-1)
    pc_stream = huffman.encode(pc_sym, 256 + int(pc_shift.max()))
    pc_sym16 = np.empty(n, np.uint16)
    sym2 = idx.reshape(-1, channels)
    tests = {
        "memcpy (np.copyto float32)": lambda: np.copyto(out, src),
        "numpy take (256-entry table, uint8 idx)": lambda: np.take(table, idx, out=out),
        "new anonymous map, first write faults pages": lambda: _fresh_map(n * 4, False),
        "new anonymous map, MAP_POPULATE": lambda: _fresh_map(n * 4, True),
        "gather C (cluster / 1-channel quant)": lambda: buffers.gather(table, idx, out),
        "gather reference (chunked np.take)": lambda: buffers.gather_reference(table, idx, out),
        "dequant C (quant per channel)": lambda: buffers._decodec.dequant(idx, out, shift, zp, step, 1, 255),
        "dequant reference": lambda: quantize.dequantize_channels_reference(
            sym2, out.reshape(sym2.shape), shift.astype(np.int64), zp.astype(np.int64), step, 1, 255, "float32"),
        "huffman decode C (8-bit quantized weights)": lambda: huffman._c.decode(q8_stream, q8_sym),
        "two-stage C: huffman to uint8, then gather": lambda: (huffman._c.decode(q8_stream, q8_sym),
                                                               buffers.gather(q8_table, q8_sym, out)),
        "fused C: huffman straight to float32 (gather)": lambda: huffman.decode_gather(q8_stream, q8_table, out),
        "fused C: huffman to float32, first decode (no hints)": lambda: (
            _forget_hints(), huffman.decode_gather(q8_stream, q8_table, out)),
        "two-stage C: huffman to uint16, per-channel dequant": lambda: (
            huffman._c.decode(pc_stream, pc_sym16),
            buffers._decodec.dequant(pc_sym16, out, pc_shift, pc_zp, step, 1, 255)),
        "fused C: huffman to float32, per-channel dequant": lambda: huffman.decode_dequant(
            pc_stream, out, pc_shift, pc_zp, step, 1, 255),
        "crc32 (zlib) of float32 bytes": lambda: zlib.crc32(src),
        "crc32 C (squeezefmt.checksum) of float32 bytes": lambda: checksum.crc32(src),
        "bytegroup join C (4 planes, rotate)": lambda: bytegroup.join_planes_into(planes, u32, True),
        "bytegroup join reference": lambda: u32.__setitem__(slice(None), bytegroup.join_planes_reference(
            planes, 4, n, True)),
    }
    rows = []
    for name, fn in tests.items():
        if ("C " in name and buffers._decodec is None and "huffman" not in name) or (
                "C" in name and "huffman" in name and "c" not in huffman.BACKENDS):
            continue
        seconds = best(fn, repeats)
        rows.append({"stage": name, "seconds": seconds, "GBps": n * 4 / seconds / 1e9})
        if name == "fused C: huffman straight to float32 (gather)":
            seconds = two_threads(fn, repeats)
            rows.append({"stage": "the same, two threads (halves at once; wall clock)", "seconds": seconds,
                         "GBps": n * 4 / seconds / 1e9})
    memcpy, take = rows[0]["GBps"], rows[1]["GBps"]
    for r in rows:
        r["x_memcpy"], r["x_take"] = r["GBps"] / memcpy, r["GBps"] / take
    return rows


def two_threads(fn, repeats: int) -> float:
    """Best wall time of ``fn`` with two decode threads (then one again)."""
    global CLOCK
    clock, CLOCK = CLOCK, time.perf_counter
    threads.set_decode_threads(2)
    try:
        return best(fn, repeats)
    finally:
        threads.set_decode_threads(1)
        CLOCK = clock


def _forget_hints() -> None:
    """Drop the code boundaries earlier decodes recorded: the next long decode is a first one (two
    decoders, or one) instead of the hinted loops of a repeated decode."""
    huffman._c.hint_stats(True)


def _fresh_map(nbytes: int, populate: bool) -> None:
    """What a decode into a new output buffer pays before writing anything: mapping the pages."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (mmap.MAP_POPULATE if populate else 0)
    m = mmap.mmap(-1, nbytes, flags=flags)
    a = np.frombuffer(m, np.uint8)
    a[::4096] = 1
    del a
    m.close()


def codec_rows(n: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(1)
    w = (rng.standard_t(4, size=(2048, n // 2048)) * 0.03).astype(np.float32)
    cases = {
        "raw": Raw(), "zstd-19": Zstd(19), "bytegroup (lossless preset)": ByteGroup(19),
        "quant 8-bit per tensor": Quantize(8), "quant 8-bit per channel": Quantize(8, per_channel=True),
        "cluster 5-bit": Cluster(5),
    }
    rows = []
    z = zstandard.ZstdCompressor(level=19).compress(w.tobytes())
    dz = zstandard.ZstdDecompressor()
    s = best(lambda: dz.decompress(z), repeats)
    rows.append({"codec": "baseline: zstd-19 of the bytes, python-zstandard decompress", "seconds": s,
                 "GBps": w.nbytes / s / 1e9, "stored_bytes": len(z), "kept_seconds": s, "kept_GBps": w.nbytes / s / 1e9})
    for name, codec in cases.items():
        data = squeezefmt.save({"w": w}, codecs={"w": codec})
        with squeezefmt.open(data) as f:
            info = f.info("w")
            s = best(lambda: f.tensor("w"), repeats)
            previous = buffers.keep_buffers(4 * w.nbytes)  # outputs reused, as lazy models do
            kept = best(lambda: f.tensor("w"), repeats)
            if not previous:
                buffers.keep_buffers(0)
        rows.append({"codec": name, "seconds": s, "GBps": w.nbytes / s / 1e9, "stored_bytes": info.stored_bytes,
                     "kept_seconds": kept, "kept_GBps": w.nbytes / kept / 1e9})
    base = rows[0]["GBps"]
    for r in rows:
        r["x_zstd"], r["kept_x_zstd"] = r["GBps"] / base, r["kept_GBps"] / base
    return rows


def container_row(path: str, repeats: int) -> dict:
    """Whole decode of the largest tensor of a real container (e.g. a model packed by bench_memory): as a
    lazy model repeats it, and as a first decode of the stream (no code boundaries recorded yet)."""
    with squeezefmt.open(path) as f:
        name = max(f.keys(), key=f.nbytes)
        info = f.info(name)
        previous = buffers.keep_buffers(4 * info.nbytes)
        seconds = best(lambda: f.tensor(name), repeats)
        first = best(lambda: (_forget_hints(), f.tensor(name)), repeats) if "c" in huffman.BACKENDS else seconds
        halves = two_threads(lambda: f.tensor(name), repeats)
        if not previous:
            buffers.keep_buffers(0)
    cfg = ",".join(f"{k}={v}" for k, v in sorted(info.codec_config.items()) if k in ("bits", "per_channel"))
    return {"container": os.path.basename(path), "tensor": name, "codec": f"{info.codec} {cfg}".strip(),
            "bits_per_value": 8 * info.stored_bytes / max(1, int(np.prod(info.shape))), "seconds": seconds,
            "GBps": info.nbytes / seconds / 1e9, "first_seconds": first, "first_GBps": info.nbytes / first / 1e9,
            "two_threads_seconds": halves, "two_threads_GBps": info.nbytes / halves / 1e9}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=16, help="float32 output size per stage/codec run (MiB)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=os.path.join("bench-results", "bench_decode.json"))
    ap.add_argument("--sqz", action="append", default=[], metavar="FILE",
                    help="also time the whole decode of this container's largest tensor (repeatable)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the thread's CPU time (steadier when other jobs share the cores)")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    threads.set_decode_threads(1)  # one thread but in the "two threads" rows
    n = (args.mib << 20) // 4
    n -= n % 2048
    stages = stage_rows(n, args.repeats)
    print(f"float stages, {args.mib} MiB float32 output into mapped memory, one thread (best of {args.repeats}, "
          f"{args.clock} clock; load average {os.getloadavg()[0]:.1f})")
    print(f"  {'stage':<52}{'ms':>8}{'GB/s':>8}{'x memcpy':>10}{'x take':>8}")
    for r in stages:
        print(f"  {r['stage']:<52}{r['seconds'] * 1e3:>8.2f}{r['GBps']:>8.2f}{r['x_memcpy']:>10.2f}{r['x_take']:>8.2f}")
    codecs = codec_rows(n, args.repeats)
    print(f"\nwhole tensor decode (SqzFile.tensor), 2048 x {n // 2048} float32")
    print(f"  {'':<73}{'fresh output buffer':>24}{'kept buffers (lazy)':>24}")
    print(f"  {'codec':<62}{'stored MiB':>11}{'ms':>8}{'GB/s':>8}{'x zstd':>8}{'ms':>8}{'GB/s':>8}{'x zstd':>8}")
    for r in codecs:
        print(f"  {r['codec']:<62}{r['stored_bytes'] / 2**20:>11.2f}{r['seconds'] * 1e3:>8.2f}{r['GBps']:>8.2f}"
              f"{r['x_zstd']:>8.2f}{r['kept_seconds'] * 1e3:>8.2f}{r['kept_GBps']:>8.2f}{r['kept_x_zstd']:>8.2f}")
    containers = [container_row(path, args.repeats) for path in args.sqz]
    if containers:
        print(f"\nlargest tensor of a container (SqzFile.tensor, output buffers kept as lazy models keep them)")
        print(f"  {'':<96}{'repeated':>16}{'first decode':>16}{'two threads':>16}")
        print(f"  {'container / tensor':<62}{'codec':>22}{'bits/weight':>12}" + f"{'ms':>8}{'GB/s':>8}" * 3)
        for r in containers:
            print(f"  {r['container'] + ' ' + r['tensor']:<62}{r['codec']:>22}{r['bits_per_value']:>12.2f}"
                  f"{r['seconds'] * 1e3:>8.2f}{r['GBps']:>8.2f}{r['first_seconds'] * 1e3:>8.2f}{r['first_GBps']:>8.2f}"
                  f"{r['two_threads_seconds'] * 1e3:>8.2f}{r['two_threads_GBps']:>8.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"mib": args.mib, "repeats": args.repeats, "clock": args.clock, "load": os.getloadavg()[0],
                   "stages": stages, "codecs": codecs, "containers": containers,
                   "c_decodec": buffers._decodec is not None}, fh, indent=2)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
