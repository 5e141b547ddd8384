"""The fuzzing library behind tools/fuzz.py (issue 13): seeds, the structure-aware mutator, the
targets, the per-input checks and the pure Python driver. See tools/fuzz.py for what each target
covers and how findings are classified; tests/test_fuzz_tool.py runs it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
import traceback
from typing import Any, Callable

import numpy as np

import squeezefmt
from squeezefmt import errors
from squeezefmt.container.jsonbound import decode_header
from squeezefmt.container.layout import PREAMBLE_SIZE, parse_preamble
from squeezefmt.container.limits import Limits
from sqzdev import VECTORS
from sqzdev.procmem import proc_status, reset_peak  # noqa: F401 - reset_peak is used by tests through here
from sqzdev.vectors.core import forge

#: The fuzzer's reader limits: the defaults, with the decoded size capped so honest bombs stay cheap
#: (and below the memory slack: epr into float16 needs an int32 latent buffer, twice its output).
FUZZ_LIMITS = Limits(max_decoded_bytes=16 << 20, max_tensor_bytes=16 << 20)
#: Memory finding: peak RSS growth beyond the declared output of an input smaller than SMALL_INPUT.
MEMORY_SLACK = 64 << 20
SMALL_INPUT = 10_000

INTERESTING_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 4095, 4096, 65535, 65536, 2**31 - 1,
                    2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70,
                    -1, -2, -(2**31), -(2**63), -(2**63) - 1, 10**4400]
DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint64", "uint32",
          "uint16", "uint8", "bool", "complex64", "", None, 3]
CODEC_IDS = ["raw", "zstd", "bytegroup", "quant", "cluster", "sparse", "epr", "tt", "cabac", "nope", "", None, 7]


# ------------------------------------------------------------------------------------------------
# seeds


def seed_files(kind: str = "container") -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the spec's container vectors (valid and broken), or its federated payloads."""
    out = []
    for dirpath, _dirs, files in sorted(os.walk(VECTORS)):
        for fn in sorted(files):
            if not fn.endswith(".sqz"):
                continue
            is_fed = os.path.basename(dirpath) == "federated"
            if (kind == "federated") != is_fed and kind != "all":
                continue
            with open(os.path.join(dirpath, fn), "rb") as f:
                out.append((os.path.relpath(os.path.join(dirpath, fn), VECTORS), f.read()))
    return out


def split_container(data: bytes):
    """``(header object, stream bytes)`` of a container whose header parses, else None."""
    try:
        pre = parse_preamble(data[:PREAMBLE_SIZE])
        if pre.json_len > FUZZ_LIMITS.max_header_bytes or pre.header_len > len(data):
            return None
        header = json.loads(bytes(decode_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_len], pre)))
        streams = []
        for t in header["tensors"]:
            for s in t["streams"]:
                streams.append(data[s["offset"]: s["offset"] + s["length"]])
        return header, streams
    except Exception:  # noqa: BLE001 - not a parseable container: byte-level mutation only
        return None


# ------------------------------------------------------------------------------------------------
# the mutator


class Mutator:
    """Structure-aware mutations of a container (CRCs and canonical offsets recomputed)."""

    def __init__(self, rng: random.Random, donors: list[bytes] | None = None):
        self.rng = rng
        self.donors = donors or []

    # -- values ------------------------------------------------------------------------------------
    def value(self, old: Any = None, depth: int = 0) -> Any:
        r = self.rng
        choice = r.randrange(12)
        if choice == 0:
            return r.choice(INTERESTING_INTS)
        if choice == 1 and isinstance(old, int) and not isinstance(old, bool):
            return old + r.choice([-1, 1, -8, 8, 2**31, old])
        if choice == 2:
            return r.choice([None, True, False, "", "zstd", "raw", "float16", "float32", "rdft", "none", "x" * 5000])
        if choice == 3:
            return r.choice([0.5, -0.0, 1e308, 1e-320, 3.0, 88.5])
        if choice == 4 and depth < 3:
            return [self.value(depth=depth + 1) for _ in range(r.randrange(5))]
        if choice == 5 and depth < 3:
            return {r.choice(["codec", "side", "streams", "id", "version", "config", "planes", "values"]):
                    self.value(depth=depth + 1) for _ in range(r.randrange(3))}
        if choice == 6 and isinstance(old, list):
            return old + old[: r.randrange(len(old) + 1)] if old else [0]
        if choice == 7 and isinstance(old, list) and old:
            return old[: r.randrange(len(old))]
        if choice == 8:
            return r.randrange(-4, 300)
        if choice == 9 and isinstance(old, str):
            return old[: r.randrange(len(old) + 1)] + r.choice(["", "x", "\x00", "\ud800"])
        if choice == 10 and isinstance(old, dict) and old:
            k = r.choice(sorted(old))
            new = dict(old)
            new[k] = self.value(old[k], depth + 1)
            return new
        return r.randrange(0, 1 << r.randrange(1, 40))

    def leaf_paths(self, obj: Any, prefix=()) -> list[tuple]:
        paths = [prefix]
        if isinstance(obj, dict):
            for k, v in obj.items():
                paths.extend(self.leaf_paths(v, prefix + (k,)))
        elif isinstance(obj, list):
            for i, v in enumerate(obj[:16]):
                paths.extend(self.leaf_paths(v, prefix + (i,)))
        return paths

    def poke(self, obj: Any) -> Any:
        """``obj`` with one randomly chosen node replaced (or deleted from its container)."""
        paths = self.leaf_paths(obj)
        path = self.rng.choice(paths)
        if not path:
            return self.value(obj)
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if self.rng.random() < 0.15:
            del parent[key]
        else:
            parent[key] = self.value(parent[key])
        return obj

    # -- streams -------------------------------------------------------------------------------------
    def mutate_bytes(self, data: bytes, budget: int = 4) -> bytes:
        r = self.rng
        buf = bytearray(data)
        for _ in range(r.randrange(1, budget + 1)):
            op = r.randrange(7)
            pos = r.randrange(len(buf) + 1)
            if op == 0 and buf:
                buf[min(pos, len(buf) - 1)] ^= 1 << r.randrange(8)
            elif op == 1 and buf:
                buf[min(pos, len(buf) - 1)] = r.choice([0, 1, 0x7F, 0x80, 0xFF, r.randrange(256)])
            elif op == 2:
                buf[pos:pos] = bytes(r.randrange(256) for _ in range(r.randrange(1, 9)))
            elif op == 3 and buf:
                del buf[pos:pos + r.randrange(1, 17)]
            elif op == 4:
                del buf[pos:]
            elif op == 5 and len(buf) >= 4:
                p = min(pos, len(buf) - 4)
                buf[p:p + 4] = r.choice(INTERESTING_INTS[:20]).to_bytes(8, "little")[:4]
            elif op == 6 and buf:
                a = r.randrange(len(buf))
                buf[pos:pos] = buf[a:a + r.randrange(1, 33)]
        return bytes(buf)

    # -- whole containers ------------------------------------------------------------------------------
    def mutate(self, data: bytes) -> bytes:
        r = self.rng
        parsed = split_container(data)
        if parsed is None or r.random() < 0.1:
            return self.mutate_bytes(data)
        header, streams = parsed
        tensors = header.get("tensors") or []
        for _ in range(r.randrange(1, 3)):
            self._mutate_once(header, tensors, streams)
        final = None
        if r.random() < 0.05:  # after layout: break an offset, a length or a crc on purpose
            def final(h):  # noqa: E306
                recs = [s for t in h["tensors"] for s in t["streams"]]
                if recs:
                    rec = r.choice(recs)
                    key = r.choice(["offset", "length", "crc32"])
                    rec[key] = self.value(rec[key])
        try:
            return forge(header, streams, mutate=final, minor=r.choice([0, 0, 0, 1, 7]))
        except Exception:  # noqa: BLE001 - the mutation broke the stream/record pairing: raw bytes instead
            return self.mutate_bytes(data)

    def _mutate_once(self, header: dict, tensors: list, streams: list) -> None:
        r = self.rng
        op = r.randrange(11)
        t = r.choice(tensors) if tensors else None
        first = 0
        if t is not None:
            for u in tensors:
                if u is t:
                    break
                first += len(u.get("streams", []))
        if op <= 2 and t is not None and t.get("streams"):  # stream bytes
            k = first + r.randrange(len(t["streams"]))
            if k < len(streams):
                streams[k] = self.mutate_bytes(streams[k], budget=r.choice([1, 1, 2, 8]))
        elif op == 3 and t is not None:  # shape
            shape = list(t.get("shape") or [])
            choice = r.randrange(5)
            if choice == 0 and shape:
                shape[r.randrange(len(shape))] = self.value(shape[0])
            elif choice == 1:
                shape.append(r.choice([0, 1, 2, 3, 2**31, 2**40]))
            elif choice == 2 and shape:
                shape.pop(r.randrange(len(shape)))
            elif choice == 3:
                shape = [r.randrange(0, 70) for _ in range(r.randrange(0, 5))]
            else:
                shape = list(reversed(shape)) + ([0, 2**70] if r.random() < 0.3 else [])
            t["shape"] = shape
        elif op == 4 and t is not None:
            t["dtype"] = r.choice(DTYPES)
        elif op == 5 and t is not None:
            codec = t.get("codec") if isinstance(t.get("codec"), dict) else {}
            field = r.choice(["id", "version", "config"])
            if field == "id":
                codec["id"] = r.choice(CODEC_IDS)
            elif field == "version":
                codec["version"] = self.value(codec.get("version"))
            else:
                codec["config"] = self.poke(codec.get("config", {})) if r.random() < 0.7 else self.value()
            t["codec"] = codec
        elif op in (6, 7) and t is not None:  # side information, the richest input of the codecs
            t["side"] = self.poke(t.get("side", {})) if t.get("side") else self.value({}, 1)
        elif op == 8 and t is not None:  # drop or duplicate a stream
            recs = t.get("streams") or []
            if recs and r.random() < 0.5:
                i = r.randrange(len(recs))
                recs.pop(i)
                if first + i < len(streams):
                    streams.pop(first + i)
            elif recs:
                i = r.randrange(len(recs))
                recs.insert(i, dict(recs[i]))
                if first + i < len(streams):
                    streams.insert(first + i, streams[first + i])
        elif op == 9:
            header["metadata"] = self.poke(header.get("metadata", {})) if header.get("metadata") else self.value()
        elif op == 10 and self.donors:  # splice a tensor of another container
            donor = split_container(r.choice(self.donors))
            if donor and donor[0].get("tensors"):
                dh, ds = donor
                j = r.randrange(len(dh["tensors"]))
                d_first = sum(len(u["streams"]) for u in dh["tensors"][:j])
                dt = dh["tensors"][j]
                dt["name"] = f"spliced{r.randrange(1000)}"
                header.setdefault("tensors", []).append(dt)
                streams.extend(ds[d_first:d_first + len(dt["streams"])])


# ------------------------------------------------------------------------------------------------
# targets


#: The limits the targets open containers with (run_one sets it; replay also uses the defaults).
_LIMITS = FUZZ_LIMITS


def _declared_container(data: bytes) -> int:
    try:
        with squeezefmt.open(data, limits=_LIMITS) as f:
            return sum(f.entry(n).nbytes for n in f.keys())
    except errors.SqueezeError:
        return 0


def target_container(data: bytes) -> int:
    """Open, verify, decode every tensor; returns the declared decoded bytes."""
    with squeezefmt.open(data, limits=_LIMITS) as f:
        declared = sum(f.entry(n).nbytes for n in f.keys())
        f.verify()
        for name in f.keys():
            f.tensor(name)
            f.info(name)
    return declared


_FED_BASE: dict | None = None


def target_federated(data: bytes) -> int:
    from squeezefmt.federated.payload import decode_model

    global _FED_BASE
    if _FED_BASE is None:
        with np.load(os.path.join(VECTORS, "federated", "base.npz"), allow_pickle=False) as z:
            _FED_BASE = {k: z[k] for k in z.files}
    declared = _declared_container(data)
    for base in (None, _FED_BASE):
        try:
            decode_model(data, base, limits=_LIMITS)
        except errors.SqueezeError:
            pass
    return declared


def h5_from_bytes(data: bytes) -> bytes:
    """A small, structurally hostile Keras .h5 file image derived from ``data`` (h5py, in memory)."""
    import h5py

    r = random.Random(data)
    bio = io.BytesIO()
    with h5py.File(bio, "w") as f:
        full = r.random() < 0.5
        root = f.create_group("model_weights") if full else f
        if full and r.random() < 0.8:
            f.attrs["model_config"] = r.choice(['{"class_name": "Sequential", "config": {"layers": []}}', "{",
                                                "[1, 2]", '{"config": {"name": 3}}'])
        if r.random() < 0.3:
            f.attrs["training_config"] = r.choice(["{}", b"\xff\xfe", "7"])
        if r.random() < 0.3:
            f.attrs["keras_version"] = r.choice(["2.14.0", 3, b"\xff"])
        layers = [f"l{i}" for i in range(r.randrange(0, 4))]
        attr_kind = r.randrange(6)
        if attr_kind == 0:
            root.attrs["layer_names"] = np.asarray([n.encode() for n in layers] or [b""])
        elif attr_kind == 1:
            root.attrs["layer_names"] = 5
        elif attr_kind == 2:
            root.attrs["layer_names"] = np.asarray([1.5, 2.5])
        elif attr_kind == 3:
            root.attrs["layer_names0"] = np.asarray([n.encode() for n in layers] or [b"x"])
        elif attr_kind == 4:
            root.attrs["layer_names"] = np.asarray([b"\xff\xfe"])
        else:
            root.attrs["layer_names"] = np.asarray([n.encode() for n in layers]) if layers else np.asarray([])
        for name in layers:
            if r.random() < 0.1:
                root.create_dataset(name, data=np.zeros(3))  # a dataset where a group belongs
                continue
            g = root.create_group(name)
            weights = [f"{name}/w{j}:0" for j in range(r.randrange(0, 3))]
            if r.random() < 0.9:
                g.attrs["weight_names"] = np.asarray([w.encode() for w in weights]) if weights else np.asarray([])
            elif r.random() < 0.5:
                g.attrs["weight_names"] = np.asarray([[1, 2]])
            for w in weights:
                kind = r.randrange(9)
                if kind == 0:
                    g.create_group(w)  # group instead of dataset
                elif kind == 1:
                    g.create_dataset(w, data=np.asarray([b"abc", b"de"]))
                elif kind == 2:
                    g.create_dataset(w, data=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
                elif kind == 3:  # declared huge, nothing written (HDF5 allocates lazily)
                    g.create_dataset(w, shape=(r.choice([1 << 20, 1 << 30, 1 << 40]), 1024), dtype="f4",
                                     chunks=(1, 1024))
                elif kind == 4:
                    g.create_dataset(w, data=np.zeros((0, 3), np.float32))
                elif kind == 5:
                    g.create_dataset(w, data=np.float32(r.random()))
                elif kind == 6:
                    g.create_dataset(w, data=np.asarray([1 + 2j]))
                elif kind == 7:
                    g.create_dataset(w, shape=None, dtype="f4")  # HDF5 null dataspace
                else:
                    g.create_dataset(w, data=(np.arange(r.randrange(1, 50)) % 2).astype(r.choice(["f4", "f2", "i8", "u1", "?"])))
        if full and r.random() < 0.3:
            og = f.create_group("optimizer_weights")
            og.attrs["weight_names"] = np.asarray([b"iter:0"])
            if r.random() < 0.5:
                og.create_dataset("iter:0", data=np.int64(3))
    return bio.getvalue()


def target_h5(data: bytes) -> int:
    import h5py

    from squeezefmt.keras.formats.h5 import read_h5

    image = h5_from_bytes(data)
    with h5py.File(io.BytesIO(image), "r") as f:
        archive = read_h5(f, include_optimizer=bool(data[:1] and data[0] & 1))
    squeezefmt.save(archive.arrays, metadata={"kind": archive.kind})
    return sum(a.nbytes for a in archive.arrays.values())


TARGETS: dict[str, Callable[[bytes], int]] = {
    "container": target_container, "federated": target_federated, "h5": target_h5,
}


# ------------------------------------------------------------------------------------------------
# running one input


class Finding(Exception):
    pass


def run_one(target: str, data: bytes, *, timeout: float = 1.0, check_memory: bool = True,
            limits: Limits = FUZZ_LIMITS) -> dict:
    """Run ``data`` through ``target``; returns ``{"ok", "kind", "detail", "seconds", "extra_mib"}``."""
    global _LIMITS
    _LIMITS = limits
    fn = TARGETS[target]
    measure = check_memory and len(data) < SMALL_INPUT and reset_peak()
    base = proc_status("VmRSS") if measure else 0
    t0 = time.perf_counter()
    kind, detail, declared = None, "", 0
    try:
        declared = fn(data)
    except errors.SqueezeError as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, errors.SqueezeError) and target != "h5":
            kind, detail = "catch-all", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if target != "h5":
            declared = _declared_container(data) if kind is None else 0
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - that is what we are looking for
        kind, detail = type(exc).__name__, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    seconds = time.perf_counter() - t0
    extra_mib = 0.0
    if measure:
        grown = proc_status("VmHWM") - base
        extra_mib = (grown - declared) / 2**20
        if kind is None and grown > declared + MEMORY_SLACK:
            kind, detail = "memory", f"peak RSS grew {grown >> 20} MiB for {declared >> 20} MiB declared"
    if kind is None and seconds > timeout:
        kind, detail = "timeout", f"{seconds:.2f} s"
    return {"ok": kind is None, "kind": kind, "detail": detail, "seconds": seconds, "extra_mib": extra_mib}


def save_finding(outdir: str, target: str, data: bytes, result: dict) -> str:
    os.makedirs(os.path.join(outdir, target), exist_ok=True)
    name = f"{result['kind']}-{hashlib.sha256(data).hexdigest()[:16]}"
    path = os.path.join(outdir, target, name + ".bin")
    with open(path, "wb") as fh:
        fh.write(data)
    with open(path[:-4] + ".txt", "w") as fh:
        fh.write(result["detail"])
    return path


# ------------------------------------------------------------------------------------------------
# drivers


def fuzz_random(seconds: float, *, targets=("container", "federated", "h5"), seed: int = 0,
                findings_dir: str | None = None, max_execs: int | None = None, recheck: bool = True,
                log=None) -> dict:
    """The pure Python driver: random structure-aware mutation, no coverage feedback."""
    rng = random.Random(seed)
    seeds = {"container": [d for _, d in seed_files("container")],
             "federated": [d for _, d in seed_files("federated")]}
    seeds["h5"] = [bytes(rng.randrange(256) for _ in range(16)) for _ in range(8)]
    donors = seeds["container"]
    mut = Mutator(rng, donors)
    pool: dict[str, list[bytes]] = {t: list(seeds[t]) for t in targets}
    stats = {"execs": 0, "findings": [], "by_target": {t: 0 for t in targets}, "max_seconds": 0.0,
             "max_extra_mib": 0.0}
    end = time.monotonic() + seconds
    while time.monotonic() < end and (max_execs is None or stats["execs"] < max_execs):
        target = rng.choice(targets)
        parent = rng.choice(pool[target])
        data = mut.mutate(parent) if target != "h5" else mut.mutate_bytes(parent, 8)
        result = run_one(target, data)
        if not result["ok"] and result["kind"] in ("timeout", "memory") and recheck:
            result = run_one(target, data)  # a loaded machine: confirm before reporting
        stats["execs"] += 1
        stats["by_target"][target] += 1
        stats["max_seconds"] = max(stats["max_seconds"], result["seconds"])
        stats["max_extra_mib"] = max(stats["max_extra_mib"], result["extra_mib"])
        if not result["ok"]:
            where = save_finding(findings_dir, target, data, result) if findings_dir else None
            stats["findings"].append({"target": target, "kind": result["kind"], "path": where,
                                      "detail": result["detail"][-2000:]})
            if log:
                log(f"FINDING {target} {result['kind']} {where}\n{result['detail'][-1500:]}")
        elif rng.random() < 0.05 and len(data) < 64_000:
            pool[target].append(data)  # keep some mutants: deeper mutation chains
            if len(pool[target]) > 400:
                pool[target].pop(rng.randrange(len(seeds[target]), len(pool[target])))
    return stats


def replay(paths: list[str], timeout: float = 5.0) -> list[dict]:
    """Re-run saved inputs (``<dir>/<target>/*.bin`` or ``*.sqz``), with the fuzzer's limits and with
    the default ones; returns the failing runs."""
    from squeezefmt.container.limits import DEFAULT_LIMITS

    bad = []
    for root in paths:
        for target in sorted(os.listdir(root)):
            tdir = os.path.join(root, target)
            if target not in TARGETS or not os.path.isdir(tdir):
                continue
            for fn in sorted(os.listdir(tdir)):
                if not fn.endswith((".bin", ".sqz")):
                    continue
                with open(os.path.join(tdir, fn), "rb") as fh:
                    data = fh.read()
                for limits in (FUZZ_LIMITS, DEFAULT_LIMITS):
                    result = run_one(target, data, timeout=timeout, limits=limits)
                    if not result["ok"]:
                        bad.append({"file": os.path.join(tdir, fn), **result})
    return bad
