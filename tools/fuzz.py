"""Structure-aware fuzzer for the squeezefmt readers (issue 13).

Targets (``--target``):

- ``container``: ``open`` + ``verify`` + every tensor (so every codec decoder, nested ones too);
- ``federated``: the federated payload decoder (``decode_model`` against the spec's base model);
- ``h5``: the Keras .h5 reader and packer on hostile HDF5 *structures* (groups for datasets, string
  and compound dtypes, huge declared shapes, attributes of the wrong type), built with h5py from
  the fuzzer's input bytes (byte-level HDF5 corruption would fuzz libhdf5, not squeezefmt).

The mutator (:class:`Mutator`) parses a container, rewrites header fields (shapes, dtypes, offsets,
lengths, codec ids and versions, configs, side information, metadata) or stream bytes, then lays
it out again with canonical offsets and recomputed CRCs; without that, checksums reject nearly
every mutation on the first byte. A tenth of the time it flips raw bytes to keep the checksums
themselves honest.

Findings: any exception that is not a SqueezeError (``FileNotFoundError`` aside), a SqueezeError
from a reader's defensive catch-all (an internal exception the codec should have turned into its own
StreamError), a run over 1 s of CPU time (or 10 s of wall-clock time: a niced fuzzer on a busy
machine is starved, not hung), a worker that dies or stays on one input for 5 minutes, or an input
under 10 KB whose run makes the peak resident set grow more than 64 MiB beyond the declared size of
what it decoded (peak reset and read around every run, on /proc descriptors kept open).

Drivers::

    python tools/fuzz.py run --seconds 60            # pure Python random mutation (no atheris needed)
    python tools/fuzz.py run --seconds 10800 --processes 2 --target container:4 --target federated:2 \
        --target h5:1 --json run.json                # weighted targets; run.json rewritten every minute
    python tools/fuzz.py atheris --target container -- -max_total_time=600 -timeout=1
    python tools/fuzz.py replay tests/fuzz_corpus    # re-run saved inputs

The library (mutator, targets, checks, pure driver) is :mod:`sqzdev.fuzzing`, the worker processes of
``run`` are :mod:`sqzdev.fuzzpool` (a worker that dies is reported as a ``crash`` finding with its
input); the test suite runs the pure driver for 60 s and replays ``tests/fuzz_corpus``
(tests/test_fuzz_tool.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _coverage():
    """Under ``fuzz.py atheris``, squeezefmt is imported with atheris's coverage instrumentation."""
    if __name__ == "__main__" and sys.argv[1:2] == ["atheris"]:
        import atheris

        return atheris.instrument_imports(include=["squeezefmt"])
    return contextlib.nullcontext()


with _coverage():
    import squeezefmt  # noqa: E402,F401
    import squeezefmt.codecs  # noqa: E402,F401
    import squeezefmt.federated.payload  # noqa: E402,F401
    import squeezefmt.keras.formats.h5  # noqa: E402,F401
    from sqzdev.fuzzing import (  # noqa: E402
        TARGETS, Finding, Mutator, replay, run_one, seed_files,
    )
    from sqzdev.fuzzpool import run_pool  # noqa: E402


def run_atheris(target: str, argv: list[str]) -> None:
    import atheris

    def test_one(data: bytes) -> None:
        result = run_one(target, data, timeout=1.0)
        if not result["ok"] and result["kind"] in ("timeout", "memory"):
            result = run_one(target, data, timeout=1.0)  # a loaded machine: confirm before reporting
        if not result["ok"]:
            raise Finding(f"{result['kind']}: {result['detail']}")

    mutator = Mutator(random.Random(0), SEEDS_CACHE)  # one instance: its cache of parsed parents

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = mutator.rng = random.Random(seed)
        if target == "h5":
            return atheris.Mutate(data, max_size)
        if not data or rng.random() < 0.05:
            data = rng.choice(SEEDS_CACHE or [b""])
        out = mutator.mutate(data)
        return out[:max_size]

    SEEDS_CACHE.extend(d for _, d in seed_files("federated" if target == "federated" else "container"))
    atheris.Setup([sys.argv[0]] + argv, test_one, custom_mutator=custom_mutator)
    atheris.Fuzz()


SEEDS_CACHE: list[bytes] = []


def write_seed_dir(path: str, target: str) -> None:
    os.makedirs(path, exist_ok=True)
    if target == "h5":
        for i in range(8):
            with open(os.path.join(path, f"seed{i}"), "wb") as fh:
                fh.write(bytes([i]) * 16)
        return
    for name, data in seed_files("federated" if target == "federated" else "container"):
        with open(os.path.join(path, name.replace("/", "__")), "wb") as fh:
            fh.write(data)


def parse_targets(specs: list[str] | None) -> tuple[tuple[str, ...], list[float] | None]:
    """``["container:4", "h5"]`` -> targets and weights (None: all targets, equal weights)."""
    if not specs:
        return tuple(sorted(TARGETS)), None
    names, weights = [], []
    for spec in specs:
        name, _, w = spec.partition(":")
        if name not in TARGETS:
            raise SystemExit(f"fuzz.py: error: unknown target {name!r} (choose from {', '.join(sorted(TARGETS))})")
        try:
            weights.append(float(w) if w else 1.0)
        except ValueError:
            raise SystemExit(f"fuzz.py: error: bad weight in {spec!r}") from None
        names.append(name)
    return tuple(names), (weights if len(set(weights)) > 1 else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="pure Python random-mutation fuzzing")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--target", action="append", metavar="NAME[:WEIGHT]",
                   help=f"one of {', '.join(sorted(TARGETS))}, repeatable; WEIGHT: relative frequency")
    p.add_argument("--seed", type=int, default=int(time.time()), help="worker i uses seed + i")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--findings", default=os.path.join(ROOT, "fuzz-findings"))
    p.add_argument("--json", help="write the statistics here (rewritten every --write-every seconds)")
    p.add_argument("--write-every", type=float, default=60.0)
    a = sub.add_parser("atheris", help="coverage-guided fuzzing with atheris (libFuzzer flags after --)")
    a.add_argument("--target", choices=sorted(TARGETS), default="container")
    a.add_argument("--seed-dir", help="write the seed corpus here first (then pass it to libFuzzer)")
    a.add_argument("rest", nargs=argparse.REMAINDER)
    rp = sub.add_parser("replay", help="re-run saved inputs")
    rp.add_argument("dirs", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        targets, weights = parse_targets(args.target)
        stats = run_pool(args.seconds, processes=max(1, args.processes), targets=targets, weights=weights,
                         seed=args.seed, findings_dir=args.findings, json_path=args.json,
                         write_every=args.write_every, log=lambda m: print(m, flush=True))
        print(json.dumps({k: v for k, v in stats.items() if k != "findings"}))
        print(f"{len(stats['findings'])} finding(s)")
        return 1 if stats["findings"] else 0
    if args.cmd == "atheris":
        if args.seed_dir:
            write_seed_dir(args.seed_dir, args.target)
        rest = [x for x in args.rest if x != "--"]
        run_atheris(args.target, rest)
        return 0
    bad = replay(args.dirs)
    for b in bad:
        print(b["file"], b["kind"], b["detail"][-500:])
    print(f"{len(bad)} failing input(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
