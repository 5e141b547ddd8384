"""Run NNCodec (PyPI ``nncodec``, the MPEG NNR reference codec) on a dict of weights at several qps.

Called by tools/bench_posttrain.py with the Python of a separate venv that has NNCodec and CPU torch
(they are never squeezefmt dependencies)::

    .venv-nnc/bin/python tools/nncodec_worker.py IN.npz OUT_DIR --qp -16 --qp -12

IN.npz holds the model's weights under their squeezefmt tensor names, already in PyTorch layout (the
benchmark transposes Keras kernels before and after, so NNCodec sees what it sees for a torch model).
For each qp this writes ``OUT_DIR/qp<qp>.npz`` (the decoded weights, same names) and prints one JSON
line: ``{"qp", "bytes", "encode_s", "decode_s"}``. ``bytes`` is the length of NNCodec's bitstream.
Everything else is NNCodec's default configuration (dependent quantization on, row skipping on,
``nonweight_qp`` -75 for 1-D parameters).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np


def run(params: dict, qp: int) -> tuple:
    from nncodec.nn import decode, encode  # noqa: PLC0415

    args = {"qp": qp, "verbose": False}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        bitstream = encode({k: v.copy() for k, v in params.items()}, args=args)
        t1 = time.perf_counter()
        decoded = decode(bitstream)
        t2 = time.perf_counter()
    if isinstance(decoded, tuple):
        decoded = decoded[0]
    out = {k: np.asarray(decoded[k], dtype=np.float32).reshape(params[k].shape) for k in params}
    return bytes(bitstream), out, t1 - t0, t2 - t1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("out_dir")
    ap.add_argument("--qp", type=int, action="append", required=True)
    a = ap.parse_args(argv)
    with np.load(a.weights) as z:
        params = {k: z[k].astype(np.float32) for k in z.files}
    os.makedirs(a.out_dir, exist_ok=True)
    for qp in a.qp:
        bitstream, decoded, enc_s, dec_s = run(params, qp)
        np.savez(os.path.join(a.out_dir, f"qp{qp}.npz"), **decoded)
        print(json.dumps({"qp": qp, "bytes": len(bitstream), "encode_s": enc_s, "decode_s": dec_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
