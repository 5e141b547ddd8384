"""Benchmark: how fast and how cheaply the reader refuses hostile containers (issue 13).

For each case (header bombs: a few kilobytes of zstd that expand to tens of MiB of JSON; lying epr
and sparse streams; honest bombs over the decoded-bytes cap) it prints the file size, the time to
the error and the growth of the peak resident set, beside the baseline of the same run: plain
``json.loads`` of the bomb's JSON (what the reader did before it bounded the header).

    python tools/bench_hostile.py [--no-baseline]     # writes bench-results/hostile.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import squeezefmt  # noqa: E402
from squeezefmt import errors  # noqa: E402
from squeezefmt.codecs.epr import EPRLatents  # noqa: E402
from squeezefmt.codecs.zstd_codec import Zstd  # noqa: E402
from squeezefmt.container.layout import PREAMBLE_SIZE, align, encode_header  # noqa: E402

from sqzdev.procmem import proc_status, reset_peak  # noqa: E402
from sqzdev.vectors.core import assemble, forge, split  # noqa: E402


def header_file(raw: bytes) -> bytes:
    _flags, stored = encode_header(raw)
    start = align(PREAMBLE_SIZE + len(stored))
    return assemble(raw, [], start, start)


def bomb_json(body: bytes) -> bytes:
    return b'{"format":"squeezefmt","metadata":{"x":[' + body[:-1] + b']},"tensors":[]}'


def cases():
    yield "header [[],[],...] 63 MiB", bomb_json(b"[]," * (21 << 20))
    yield "header [0,0,...] 62 MiB", bomb_json(b"0," * (31 << 20))
    yield 'header ["","",...] 63 MiB', bomb_json(b'"",' * (21 << 20))
    yield "header 4400-digit integer", b'{"format":"squeezefmt","metadata":{"n":' + b"7" * 4400 + b'},"tensors":[]}'
    q = np.array([5, -3] + [0] * 30, np.int32)
    blob = squeezefmt.save({"w": EPRLatents(q, np.float16(0.0))})
    header, streams = split(blob)
    header["tensors"][0]["shape"] = [1 << 28]
    streams[0] = streams[0][:-1] + b"\xff\xff\xff\xff"
    yield "epr declaring 1 GiB, invalid stream", forge(header, streams)
    blob = squeezefmt.save({"w": np.zeros(16, np.float32)}, codecs={"w": Zstd(3)})
    header, streams = split(blob)
    header["tensors"][0]["shape"] = [1 << 29, 3]
    yield "zstd declaring 6 GiB (over the cap)", forge(header, streams)


def measure(fn):
    reset_peak()
    base = proc_status("VmRSS")
    t0 = time.perf_counter()
    try:
        fn()
        outcome = "accepted"
    except errors.SqueezeError as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - the baseline may fail any way
        outcome = type(exc).__name__
    return time.perf_counter() - t0, (proc_status("VmHWM") - base) / 2**20, outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-baseline", action="store_true", help="skip the json.loads baseline (slow: tens of s)")
    args = ap.parse_args()
    rows = []
    print(f"{'case':<40} {'file B':>8} {'reader s':>9} {'peak MiB':>9} {'result':<14} {'json.loads s':>12} {'MiB':>7}")
    for name, payload in cases():
        data = payload if payload.startswith(b"\x89SQZ") else header_file(payload)
        t, mib, outcome = measure(lambda: squeezefmt.open(data).verify())
        row = {"case": name, "file_bytes": len(data), "seconds": t, "peak_mib": mib, "result": outcome}
        if not payload.startswith(b"\x89SQZ") and not args.no_baseline and len(payload) > 1 << 20:
            bt, bmib, _ = measure(lambda: json.loads(payload))
            row.update(baseline_seconds=bt, baseline_peak_mib=bmib)
        rows.append(row)
        print(f"{name:<40} {len(data):>8} {t:>9.3f} {mib:>9.1f} {outcome:<14} "
              f"{row.get('baseline_seconds', float('nan')):>12.2f} {row.get('baseline_peak_mib', float('nan')):>7.0f}")
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-results", "hostile.json"), "w") as fh:
        json.dump({"rows": rows, "loadavg": os.getloadavg()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
