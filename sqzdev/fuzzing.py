"""The fuzzing library behind tools/fuzz.py (issue 13): seeds, the structure-aware mutator, the
targets, the per-input checks and the pure Python driver. See tools/fuzz.py for what each target
covers and how findings are classified; tests/test_fuzz_tool.py runs it.
"""
from __future__ import annotations

import hashlib
import itertools
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
from squeezefmt.container.layout import PREAMBLE_SIZE, align, parse_preamble
from squeezefmt.container.limits import Limits
from sqzdev import VECTORS
from sqzdev.procmem import Probe, reset_peak  # noqa: F401 - reset_peak is used by tests through here
from sqzdev.vectors.core import forge

#: The fuzzer's reader limits: the defaults, with the decoded size capped so honest bombs stay cheap
#: (and below the memory slack: cabac-coded epr holds int32 latents and float32 products, 4x its
#: float16 output).
FUZZ_LIMITS = Limits(max_decoded_bytes=16 << 20, max_tensor_bytes=16 << 20)
#: Memory finding: peak RSS growth beyond the declared output of an input smaller than SMALL_INPUT.
MEMORY_SLACK = 64 << 20
SMALL_INPUT = 10_000
#: zstd level of the forged headers: fast (the writer's 19 cost the fuzzer a sixth of its time).
FORGE_LEVEL = 1

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
    parsed = _split_text(data)
    return None if parsed is None else (json.loads(parsed[0]), list(parsed[1]))


def _split_text(data: bytes):
    """``(header JSON bytes, tuple of stream bytes)`` of a container whose header parses, else None."""
    try:
        pre = parse_preamble(data[:PREAMBLE_SIZE])
        if pre.json_len > FUZZ_LIMITS.max_header_bytes or pre.header_len > len(data):
            return None
        text = bytes(decode_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + pre.header_len], pre))
        header = json.loads(text)
        streams = []
        for t in header["tensors"]:
            for s in t["streams"]:
                streams.append(data[s["offset"]: s["offset"] + s["length"]])
        return text, tuple(streams), align(PREAMBLE_SIZE + pre.header_len)
    except Exception:  # noqa: BLE001 - not a parseable container: byte-level mutation only
        return None


# ------------------------------------------------------------------------------------------------
# the mutator


class Mutator:
    """Structure-aware mutations of a container (CRCs and canonical offsets recomputed)."""

    #: Parsed parents kept (a pool of mutants is a few hundred; past this the cache starts over).
    CACHE_SIZE = 4096

    def __init__(self, rng: random.Random, donors: list[bytes] | None = None):
        self.rng = rng
        self.donors = donors or []
        self._parsed: dict[bytes, tuple | None] = {}

    def split(self, data: bytes):
        """:func:`split_container` of ``data``, parsed once per parent and then taken from a cache
        (the header JSON is kept as text: ``json.loads`` of it is the mutable copy). The third item
        is where the parent's streams start, the layout's first guess for its mutants."""
        try:
            parsed = self._parsed[data]
        except KeyError:
            if len(self._parsed) >= self.CACHE_SIZE:
                self._parsed.clear()
            parsed = self._parsed[data] = _split_text(data)
        return None if parsed is None else (json.loads(parsed[0]), list(parsed[1]), parsed[2])

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
        parsed = self.split(data)
        if parsed is None or r.random() < 0.1:
            return self.mutate_bytes(data)
        header, streams, start = parsed
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
            return forge(header, streams, mutate=final, minor=r.choice([0, 0, 0, 1, 7]), level=FORGE_LEVEL,
                         copy=False, start=start)
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
            donor = self.split(r.choice(self.donors))
            if donor and donor[0].get("tensors"):
                dh, ds, _ = donor
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
#: What a target has declared so far in the current run: the declared decoded bytes, noted as soon as
#: the container is open, so a run that fails later need not open the input a second time.
_NOTE: dict = {"declared": None}
#: A run whose peak grew less than this cannot be a memory finding and reports its growth as its
#: extra memory (an upper bound), without opening the input again to learn its declared size.
EXACT_EXTRA_FROM = 1 << 20


def _declared_container(data: bytes) -> int:
    try:
        with squeezefmt.open(data, limits=_LIMITS) as f:
            declared = sum(f.entry(n).nbytes for n in f.keys())
    except errors.SqueezeError:
        return 0
    _NOTE["declared"] = declared
    return declared


def target_container(data: bytes) -> int:
    """Open, verify, decode every tensor; returns the declared decoded bytes."""
    with squeezefmt.open(data, limits=_LIMITS) as f:
        declared = _NOTE["declared"] = sum(f.entry(n).nbytes for n in f.keys())
        f.verify()
        for name in f.keys():
            f.tensor(name)
            f.info(name)
    return declared


_FED_BASE: tuple | None = None


def _fed_base() -> tuple:
    """The spec's federated base model as named arrays, and its content hash (computed once)."""
    global _FED_BASE
    if _FED_BASE is None:
        from squeezefmt.federated.payload import as_named_arrays, content_hash

        with np.load(os.path.join(VECTORS, "federated", "base.npz"), allow_pickle=False) as z:
            arrays = as_named_arrays({k: z[k] for k in z.files})[0]
        _FED_BASE = (arrays, content_hash(arrays))
    return _FED_BASE


def target_federated(data: bytes) -> None:
    """``decode_model`` without a base and with the spec's base model, as its three steps: the
    payload is read (and its tensors decoded) once, then applied to each base. The first
    SqueezeError is re-raised after both, so run_one classifies it like the container target's."""
    from squeezefmt.federated.payload import apply_payload, read_payload, to_layout

    info, tensors = read_payload(data, limits=_LIMITS)
    first = None
    for base, base_hash in ((None, None), _fed_base()):
        try:
            to_layout(apply_payload(info, tensors, base, base_hash), info.layout)
        except errors.SqueezeError as exc:
            first = first or exc
    if first is not None:
        raise first


def h5_from_bytes(data: bytes) -> bytes:
    """A small, structurally hostile Keras .h5 file image derived from ``data`` (h5py, in memory)."""
    import h5py

    r = random.Random(data)
    # HDF5's in-memory "core" driver: a BytesIO goes through Python callbacks for every block
    with h5py.File(f"fuzz-{next(_H5_NAMES)}.h5", "w", driver="core", backing_store=False) as f:
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
        f.flush()
        return f.id.get_file_image()


_H5_NAMES = itertools.count()


def open_h5_image(image: bytes):
    """An h5py File reading the file image ``image`` from memory (read-only, core driver)."""
    import h5py

    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    fapl.set_file_image(image)
    return h5py.File(h5py.h5f.open(f"fuzz-{next(_H5_NAMES)}.h5".encode(), h5py.h5f.ACC_RDONLY, fapl=fapl))


def target_h5(data: bytes) -> int:
    from squeezefmt.keras.formats.h5 import read_h5

    image = h5_from_bytes(data)
    with open_h5_image(image) as f:
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


_PROBE = Probe()


def run_one(target: str, data: bytes, *, timeout: float = 1.0, check_memory: bool = True,
            limits: Limits = FUZZ_LIMITS) -> dict:
    """Run ``data`` through ``target``; returns ``{"ok", "kind", "detail", "seconds", "cpu_seconds",
    "extra_mib"}``.

    Time: a run is a ``timeout`` when it used more than ``timeout`` seconds of CPU (this thread's),
    or more than ten times that in wall-clock time (a run that waits). Wall-clock time alone would
    flag a fuzzer that the scheduler starves (a niced run on a busy machine), not squeezefmt.

    Memory (inputs under SMALL_INPUT): the peak RSS is reset before the run and read after it, on
    /proc descriptors kept open (a few microseconds, see :class:`sqzdev.procmem.Probe`).
    """
    global _LIMITS
    _LIMITS = limits
    fn = TARGETS[target]
    measure = check_memory and len(data) < SMALL_INPUT and _PROBE.reset_peak()
    base = _PROBE.rss() if measure else 0
    _NOTE["declared"] = None
    t0, c0 = time.perf_counter(), time.thread_time()
    kind, detail, declared = None, "", None
    try:
        declared = fn(data)
    except errors.SqueezeError as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, errors.SqueezeError) and target != "h5":
            kind, detail = "catch-all", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - that is what we are looking for
        kind, detail = type(exc).__name__, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    extra_mib = 0.0
    if measure:
        grown = _PROBE.peak() - base
        if declared is None:
            declared = _NOTE["declared"]
        if declared is None:  # the target did not say (or failed before it could): open the input
            declared = _declared_container(data) if grown >= EXACT_EXTRA_FROM and target != "h5" else 0
        extra_mib = (grown - declared) / 2**20
        if kind is None and grown > declared + MEMORY_SLACK:
            kind, detail = "memory", f"peak RSS grew {grown >> 20} MiB for {declared >> 20} MiB declared"
    if kind is None and (cpu > timeout or seconds > 10 * timeout):
        kind, detail = "timeout", f"{cpu:.2f} s of CPU, {seconds:.2f} s wall-clock"
    return {"ok": kind is None, "kind": kind, "detail": detail, "seconds": seconds, "cpu_seconds": cpu,
            "extra_mib": extra_mib}


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


def new_stats(targets) -> dict:
    """The statistics a run reports (and :mod:`sqzdev.fuzzpool` adds up over processes)."""
    return {"execs": 0, "findings": [], "by_target": {t: 0 for t in targets}, "max_seconds": 0.0,
            "max_extra_mib": 0.0, "max_cpu_seconds": 0.0,
            "max_by_target": {t: {"seconds": 0.0, "cpu_seconds": 0.0, "extra_mib": 0.0} for t in targets},
            "cpu_seconds": 0.0, "wall_seconds": 0.0}


class Inflight:
    """The input being run, written in place to ``<findings>/.inflight-<pid>`` (target name, newline,
    bytes) so that an input that kills the process (a crash in a C decoder) is not lost."""

    def __init__(self, findings_dir: str | None):
        self.path = self.fd = None
        if findings_dir:
            os.makedirs(findings_dir, exist_ok=True)
            self.path = os.path.join(findings_dir, f".inflight-{os.getpid()}")
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def put(self, target: str, data: bytes) -> None:
        if self.fd is not None:
            blob = target.encode() + b"\n" + data
            os.pwrite(self.fd, blob, 0)
            os.ftruncate(self.fd, len(blob))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            os.unlink(self.path)
            self.fd = None


def fuzz_random(seconds: float, *, targets=("container", "federated", "h5"), seed: int = 0,
                findings_dir: str | None = None, max_execs: int | None = None, recheck: bool = True,
                log=None, weights=None, progress=None, progress_every: float = 60.0) -> dict:
    """The pure Python driver: random structure-aware mutation, no coverage feedback.

    ``weights``: relative frequency of each target (default: equal). ``progress(stats)`` is called
    every ``progress_every`` seconds with the statistics so far (and once at the end).
    """
    rng = random.Random(seed)
    seeds = {"container": [d for _, d in seed_files("container")],
             "federated": [d for _, d in seed_files("federated")]}
    seeds["h5"] = [bytes(rng.randrange(256) for _ in range(16)) for _ in range(8)]
    donors = seeds["container"]
    mut = Mutator(rng, donors)
    pool: dict[str, list[bytes]] = {t: list(seeds.get(t, [b"x"])) for t in targets}
    stats = new_stats(targets)
    inflight = Inflight(findings_dir)
    t0, c0 = time.monotonic(), time.process_time()
    end = t0 + seconds
    next_report = t0 + progress_every
    try:
        while max_execs is None or stats["execs"] < max_execs:
            now = time.monotonic()
            if now >= end:
                break
            if progress and now >= next_report:
                next_report = now + progress_every
                progress(_snapshot(stats, t0, c0))
            target = rng.choices(targets, weights)[0] if weights else rng.choice(targets)
            parent = rng.choice(pool[target])
            data = mut.mutate(parent) if target in ("container", "federated") else mut.mutate_bytes(parent, 8)
            inflight.put(target, data)
            result = run_one(target, data)
            if not result["ok"] and result["kind"] in ("timeout", "memory") and recheck:
                result = run_one(target, data)  # a loaded machine: confirm before reporting
            _count(stats, target, result)
            if not result["ok"]:
                where = save_finding(findings_dir, target, data, result) if findings_dir else None
                stats["findings"].append({"target": target, "kind": result["kind"], "path": where,
                                          "detail": result["detail"][-2000:]})
                if log:
                    log(f"FINDING {target} {result['kind']} {where}\n{result['detail'][-1500:]}")
            elif rng.random() < 0.05 and len(data) < 64_000:
                pool[target].append(data)  # keep some mutants: deeper mutation chains
                if len(pool[target]) > 400:
                    pool[target].pop(rng.randrange(len(seeds.get(target, [b"x"])), len(pool[target])))
    finally:
        inflight.close()
    stats = _snapshot(stats, t0, c0)
    if progress:
        progress(stats)
    return stats


def _count(stats: dict, target: str, result: dict) -> None:
    stats["execs"] += 1
    stats["by_target"][target] += 1
    top = stats["max_by_target"][target]
    for k in ("seconds", "cpu_seconds", "extra_mib"):
        top[k] = max(top[k], result[k])
    stats["max_seconds"] = max(stats["max_seconds"], result["seconds"])
    stats["max_cpu_seconds"] = max(stats["max_cpu_seconds"], result["cpu_seconds"])
    stats["max_extra_mib"] = max(stats["max_extra_mib"], result["extra_mib"])


def _snapshot(stats: dict, t0: float, c0: float) -> dict:
    stats["wall_seconds"] = time.monotonic() - t0
    stats["cpu_seconds"] = time.process_time() - c0
    return json.loads(json.dumps(stats))


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
