"""Lazy ``predict`` with two builds of the Huffman C decoder, called in turn in one process.

    python tools/bench_decoder_ab.py --base DIR [--rounds 11] [--rows 32,640] MODEL.sqz [MODEL.sqz ...]
    python tools/bench_decoder_ab.py --base DIR --streams [--rounds 40] MODEL.sqz [MODEL.sqz ...]

``DIR`` holds another build of ``squeezefmt/entropy/_huffmanc.c`` (e.g. main's) compiled as the module
``_huffmanc_base``; from that revision's source::

    sed 's/PyInit__huffmanc/PyInit__huffmanc_base/; s/HEAD_INIT, "_huffmanc"/HEAD_INIT, "_huffmanc_base"/' \\
        squeezefmt/entropy/_huffmanc.c > squeezefmt/entropy/_huffmanc_base.c
    gcc -shared -fPIC -O3 -std=c99 -DNDEBUG -I$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])") \\
        squeezefmt/entropy/_huffmanc_base.c -o DIR/_huffmanc_base$(python3-config --extension-suffix)

Per container and row count, ``--rounds`` rounds of: the eager model, the lazy model on the base decoder,
the lazy model on this tree's decoder with its recorded code boundaries forgotten (a first call), and on
this tree's decoder as a lazy model repeats it; best of each, so changes in the machine's load hit all
alike. Every prediction is checked equal to eager's. Prints times, the goal of issue 15 for one call
(eager + the float32 weights decoded at 2 GB/s) and the ratios.

``--streams``: no TensorFlow; the Huffman stream of each container's largest quant/cluster tensor decoded
to its values by ``decode_gather`` with the three decoders in turn (CPU time of the thread, best of
``--rounds``), each result checked equal to the container's own decode.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="directory holding the _huffmanc_base extension")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--rows", default="32,640")
    ap.add_argument("--streams", action="store_true", help="time decode_gather on the largest tensors only")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.base))
    import _huffmanc_base as base  # noqa: E402

    if args.streams:
        return streams(base, args.paths, args.rounds)
    import numpy as np

    import squeezefmt.keras as sk
    from squeezefmt.entropy import huffman

    new = huffman._c
    for path in args.paths:
        lazy, eager = sk.load(path, lazy=True), sk.load(path)
        goal_s = sum(w.nbytes for w in eager.get_weights()) / 2e9
        x = np.random.default_rng(0).random((640,) + tuple(lazy.inputs[0].shape[1:])).astype(np.float32)
        for rows in (int(r) for r in args.rows.split(",")):
            xs = x[:rows]
            ref = eager.predict(xs, batch_size=32, verbose=0)
            best = {m: float("inf") for m in ("eager", "base", "first", "repeat")}
            try:
                for r in range(args.rounds):
                    for mode in best:
                        huffman._c = base if mode == "base" else new
                        if mode == "first":
                            new.hint_stats(True)
                        model = eager if mode == "eager" else lazy
                        if mode == "repeat" and r == 0:
                            model.predict(xs, batch_size=32, verbose=0)
                        t = time.perf_counter()
                        y = model.predict(xs, batch_size=32, verbose=0)
                        best[mode] = min(best[mode], time.perf_counter() - t)
                        assert np.array_equal(y, ref), f"{mode} differs from eager"
            finally:
                huffman._c = new
            goal = best["eager"] + goal_s
            print(f"{os.path.basename(path):>22} {rows:4d} rows: " + ", ".join(
                f"{m} {v * 1e3:.0f} ms" for m, v in best.items()) + f"; goal {goal * 1e3:.0f} ms; x goal: " + ", ".join(
                f"{m} {best[m] / goal:.2f}" for m in ("base", "first", "repeat")) +
                f"; repeat / base {best['repeat'] / best['base']:.2f}; load {os.getloadavg()[0]:.1f}", flush=True)


def streams(base, paths: list[str], rounds: int) -> None:
    import numpy as np

    import squeezefmt
    from squeezefmt.entropy import huffman

    new, calls = huffman._c, []
    original = huffman.decode_gather

    def record(data, table, out, **kw):
        calls.append((bytes(data), np.array(table)))
        return original(data, table, out, **kw)

    for path in paths:
        with squeezefmt.open(path) as f:
            name = max(f.keys(), key=f.nbytes)
            huffman.decode_gather, calls[:] = record, []
            try:
                ref = f.tensor(name).reshape(-1)
            finally:
                huffman.decode_gather = original
        if not calls:
            print(f"{os.path.basename(path)}: {name} is not decoded by decode_gather")
            continue
        data, table = calls[-1]
        bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[table.itemsize]
        out = np.zeros(ref.size, table.dtype)
        best = {"base": float("inf"), "first": float("inf"), "repeat": float("inf")}
        for _ in range(rounds):
            for mode in best:
                module = base if mode == "base" else new
                if mode == "first":
                    new.hint_stats(True)
                t = time.thread_time()
                module.decode_gather(data, table.view(bits), out.view(bits))
                best[mode] = min(best[mode], time.thread_time() - t)
                assert out.tobytes() == ref.tobytes(), f"{mode} differs from the container's decode"
        print(f"{os.path.basename(path)} {name} ({ref.size} values): " + ", ".join(
            f"{m} {v * 1e3:.2f} ms {ref.nbytes / v / 1e9:.2f} GB/s" for m, v in best.items()) +
            f"; base / repeat {best['base'] / best['repeat']:.2f}x; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
