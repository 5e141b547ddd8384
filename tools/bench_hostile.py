"""Benchmark: how fast and how cheaply the reader refuses hostile containers (issue 13).

For each case (header bombs: a few kilobytes of zstd that expand to tens of MiB of JSON; lying epr
and sparse streams; honest bombs over the decoded-bytes cap) it prints the file size, the time to
the error and the growth of the peak resident set, beside the baseline of the same run: plain
``json.loads`` of the bomb's JSON (what the reader did before it bounded the header).

A second table: the scratch of ``epr`` decoding into float16/bfloat16 (a valid 32 Mi-element tensor,
64 MiB of output): the peak resident set's growth beyond the output, against the whole-latent path
of the same run (every int32 latent decoded first, 128 MiB, as the decoder did before it decoded in
parts).

    python tools/bench_hostile.py [--no-baseline] [--epr-elements N]   # writes bench-results/hostile.json
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
    blob = squeezefmt.save({"w": EPRLatents(q, np.float16(0.0))}, format_version=(1, 0))
    header, streams = split(blob)
    header["tensors"][0]["shape"] = [1 << 28]
    streams[0] = streams[0][:-1] + b"\xff\xff\xff\xff"
    yield "epr declaring 1 GiB, invalid stream", forge(header, streams)
    blob = squeezefmt.save({"w": np.zeros(16, np.float32)}, codecs={"w": Zstd(3)}, format_version=(1, 0))
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


def whole_latent_decode(stream, side, spec):
    """The 16-bit epr path before it decoded in parts: all int32 latents first, then the conversion
    (the baseline of the scratch table; same arithmetic, so the same bits)."""
    import math

    from squeezefmt.codecs import epr
    from squeezefmt.dtypes import numpy_dtype
    from squeezefmt.entropy import gamma

    _, _, lshape, sshape = epr.parse_side(side, spec)
    view = memoryview(stream)
    log_steps = epr._read_steps(view, sshape, side)
    n = math.prod(lshape)
    out = np.empty(lshape, numpy_dtype(spec.dtype))
    q = gamma.decode(view[log_steps.nbytes:], n)
    steps = np.exp(log_steps.astype(np.float32)).reshape(-1)
    flat = out.reshape(-1)
    for a in range(0, n, epr.DECODE_CHUNK):
        b = min(n, a + epr.DECODE_CHUNK)
        part = q[a:b].astype(np.float32) * (steps[0] if steps.size == 1 else steps[np.arange(a, b) % steps.size])
        flat[a:b] = epr._cast16(part, spec.dtype)
    return out.reshape(spec.shape)


def epr_scratch_rows(elements: int) -> list[dict]:
    from squeezefmt.codecs.base import TensorSpec
    from squeezefmt.codecs.epr import decode_stream

    rng = np.random.default_rng(13)
    q = rng.integers(-20, 21, size=(elements // 64, 64)).astype(np.int32)
    q[rng.random(q.shape) < 0.85] = 0
    steps = rng.uniform(-6, -2, size=(64,)).astype(np.float16)
    _, enc = EPRLatents(q, steps).encode()
    del q
    rows = []
    print(f"\n{'epr into':<10} {'elements':>10} {'stream MB':>9} {'output MiB':>10} {'parts: extra MiB':>16} "
          f"{'s':>6} {'whole latents: extra MiB':>24} {'s':>6} {'same bits':>9}")
    for dtype in ("float16", "bfloat16"):
        spec = TensorSpec(dtype, (elements // 64, 64))
        out_mib = elements * 2 / 2**20
        got = {}
        row = {"dtype": dtype, "elements": elements, "stream_bytes": len(enc.streams[0]), "output_mib": out_mib}
        for key, fn in (("parts", decode_stream), ("whole", whole_latent_decode)):
            t, mib, outcome = measure(lambda: got.__setitem__(key, fn(enc.streams[0], enc.side, spec)))
            row[f"{key}_seconds"], row[f"{key}_extra_mib"] = t, mib - out_mib
            got[key] = got[key].tobytes() if key in got else None
        row["identical"] = got["parts"] == got["whole"] and got["parts"] is not None
        del got
        rows.append(row)
        print(f"{dtype:<10} {elements:>10} {len(enc.streams[0]) / 1e6:>9.2f} {out_mib:>10.0f} "
              f"{row['parts_extra_mib']:>16.1f} {row['parts_seconds']:>6.2f} {row['whole_extra_mib']:>24.1f} "
              f"{row['whole_seconds']:>6.2f} {str(row['identical']):>9}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-baseline", action="store_true", help="skip the json.loads baseline (slow: tens of s)")
    ap.add_argument("--epr-elements", type=int, default=32 << 20, help="size of the epr scratch case (0: skip)")
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
    epr_rows = epr_scratch_rows(args.epr_elements) if args.epr_elements else []
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-results", "hostile.json"), "w") as fh:
        json.dump({"rows": rows, "epr_scratch": epr_rows, "loadavg": os.getloadavg()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
