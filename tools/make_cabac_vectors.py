"""Write the frozen CABAC vectors in spec/vectors/cabac/ (only files that are missing).

    python tools/make_cabac_vectors.py

- ``streams.json``: coder-level vectors of spec/entropy-cabac.md. ``valid``: values, the encoder's
  parameters (``k``/``g``: null = the encoder's choice; ``force_cabac``: the CABAC mode whatever its
  size) and the stream hex, made by both backends byte for byte. ``invalid``: streams a decoder MUST
  reject with StreamError for the given count.
- ``valid/<stem>.sqz`` + ``<stem>.npz``: containers of ``cabac``-codec tensors; the npz holds, per
  tensor ``t``, the decoded values ``t`` (exact: ``float32(q) * float32(step)``) and ``t.q`` (int32).
- ``broken/StreamError__<what>.sqz``: well-formed containers whose ``cabac`` tensor is not.

``MANIFEST.json`` holds the SHA-256 of every .sqz; existing files are never rewritten.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import squeezefmt  # noqa: E402
from squeezefmt.codecs import Encoded  # noqa: E402
from squeezefmt.codecs.cabac_quant import CabacQuant  # noqa: E402
from squeezefmt.entropy import cabac  # noqa: E402
from sqzdev.vectors.core import write_manifest, write_new  # noqa: E402

OUT = os.path.join(ROOT, "spec", "vectors", "cabac")
EXAMPLE = [1, 0, -2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]


def stream_case(name, values, k=None, g=None, force_cabac=False, note=""):
    v = np.asarray(values, dtype=np.int32)
    if force_cabac:
        kk = cabac.choose_k(v) if k is None else k
        gg = cabac.choose_g(v, kk) if g is None else g
        data = cabac.encode_cabac(v, kk, gg, backend="python")
        assert data == cabac.encode_cabac(v, kk, gg, backend="c")
    else:
        data = cabac.encode(v, k, g, backend="python")
        assert data == cabac.encode(v, k, g, backend="c")
    for backend in ("python", "c"):
        assert np.array_equal(cabac.decode(data, v.size, backend=backend), v)
    return {"name": name, "note": note, "k": k, "g": g, "force_cabac": force_cabac, "count": int(v.size),
            "mode": cabac.stream_info(data)["mode"], "values": [int(x) for x in v], "hex": data.hex()}


def invalid_case(name, data: bytes, count: int, note: str):
    for backend in ("python", "c"):
        try:
            cabac.decode(data, count, backend=backend)
        except squeezefmt.errors.StreamError:
            continue
        raise AssertionError(f"{name}: {backend} accepted it")
    return {"name": name, "note": note, "count": count, "hex": data.hex()}


def stream_vectors():
    rng = np.random.default_rng(20261201)
    sparse = np.rint(rng.laplace(0, 0.35, 600)).astype(np.int32)
    wide = np.rint(rng.normal(0, 40, 300)).astype(np.int32)
    valid = [
        stream_case("spec_example", EXAMPLE, 1, 0, True, "annotated in spec/entropy-cabac.md section 8"),
        stream_case("all_zero_raw", [0, 0, 0, 0], note="RAW width 0 (CABAC 01 01 is not shorter)"),
        stream_case("empty", [], note="RAW width 0, no payload"),
        stream_case("empty_forced", [], 0, 0, True, "CABAC, empty payload"),
        stream_case("zeros_forced", [0] * 50, 1, 0, True, "50 zeros: V = 0, every byte trimmed"),
        stream_case("small_raw_wins", [5, -3, 0, 0, 1], note="too short for CABAC to pay: RAW width 4"),
        stream_case("laplace_sparse", sparse, note="rounded Laplace(0.35): mostly zeros, the encoder's K and g"),
        stream_case("laplace_k0", sparse, 0, 0, True, "K = 0: every non-zero magnitude through Exp-Golomb"),
        stream_case("wide_gaussian", wide, note="N(0, 40): K = 15 and a higher Exp-Golomb order"),
        stream_case("extremes", [2**31 - 1, -(2**31 - 1), 0, 1, -1, 65536], 2, 0, True,
                    "largest magnitudes: 30-bin Exp-Golomb prefixes"),
        stream_case("extremes_g15", [2**31 - 1, -(2**31 - 1), 0, 1], 15, 15, True, "K = 15, g = 15"),
        stream_case("long_carry", [0] * 200 + [1] + [0] * 200, 1, 0, True, "long zero runs (carry propagation)"),
    ]
    ok = bytes.fromhex(valid[0]["hex"])
    invalid = [
        invalid_case("empty_stream", b"", 1, "no header"),
        invalid_case("header_only_byte", b"\x01", 1, "mode without its parameter byte"),
        invalid_case("unknown_mode", b"\x02\x01\x8e", 1, "mode 2 is not defined"),
        invalid_case("raw_width_33", b"\x00\x21" + b"\x00" * 5, 1, "RAW width above 32"),
        invalid_case("raw_short", b"\x00\x04\x12", 4, "RAW payload too short"),
        invalid_case("raw_long", b"\x00\x04\x12\x34\x00", 4, "RAW payload too long"),
        invalid_case("raw_int32_min", b"\x00\x20\xff\xff\xff\xff", 1, "zigzag 2^32-1 = -2^31 is outside the range"),
        invalid_case("trailing_byte", ok + b"\x01", 16, "an extra byte after the canonical payload"),
        invalid_case("trailing_zero", ok + b"\x00", 16, "a trailing zero byte"),
        invalid_case("truncated", ok[:-1], 16, "last payload byte removed: not the canonical final value"),
        invalid_case("too_few_values", ok, 2, "count 2 for a 16-value stream: unread bytes"),
        invalid_case("payload_for_zero_count", b"\x01\x01\x07", 0, "count 0 needs an empty payload"),
        invalid_case("first_code_out_of_range", b"\x01\x01\xff\xff\xff\xff", 1, "code = 0xFFFFFFFF >= range"),
        invalid_case("eg_prefix_too_long", b"\x01\x00" + b"\xff\xff\xff\xfe" + b"\xff" * 8, 1,
                     "K = 0 and a bypass prefix of more than 30 ones"),
    ]
    return valid, invalid


class Forged(CabacQuant):
    """Writes the given stream and side information as a ``cabac`` tensor (for broken vectors)."""

    def __init__(self, stream: bytes, side: dict):
        super().__init__(step=1.0)
        self.stream, self.side = stream, side

    def encode(self, array):
        return Encoded(streams=[self.stream], side=self.side)


def write_container(path: str, arrays: dict, codecs: dict) -> bool:
    if os.path.exists(path):
        return False
    return write_new(path, squeezefmt.save(arrays, None, codecs=codecs))


def codec_vectors():
    rng = np.random.default_rng(20261202)
    w = rng.laplace(0, 0.03, (3, 3, 4, 8)).astype(np.float32)
    d = rng.normal(0, 0.05, (40, 12)).astype(np.float32)
    valid = {
        "v1_cabac_conv_per_tensor": {"conv/kernel:0": (w, CabacQuant(step=0.03125, lam=0.1))},
        "v1_cabac_dense_per_channel": {"fc/kernel:0": (d, CabacQuant(rel_step=0.75, per_channel=True, lam=0.05))},
        "v1_cabac_misc": {
            "f16": (d[:5].astype(np.float16), CabacQuant(step=0.01, lam=0.0)),
            "f64": (d[5:9].astype(np.float64), CabacQuant(step=1e-7, lam=0.0)),        # f32 step, wide indices
            "scalar": (np.array(0.3, np.float32), CabacQuant(step=0.125)),
            "empty": (np.zeros((0, 3), np.float32), CabacQuant(step=0.5)),
            "zeros": (np.zeros(100, np.float32), CabacQuant(rel_step=0.5)),
            "axis0": (d[:6], CabacQuant(rel_step=1.0, per_channel=True, axis=0, dead_zone=0.6)),
        },
    }
    ok = CabacQuant(step=0.5, lam=0.0).encode(np.array([0.5, 0, -1, 0, 0, 0, 0, 0, 1.5, 0, 0, 0, 0, 0, 0, 0],
                                                        np.float32)).streams[0]
    f16_one = np.array([1.0], "<f2").tobytes()
    broken = [
        ("StreamError__cabac_empty_stream", b"", {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_truncated_step", ok[:1], {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_zero_step", b"\x00\x00" + ok[2:], {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_nan_step", np.array([np.nan], "<f2").tobytes() + ok[2:], {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_negative_step", np.array([-1], "<f2").tobytes() + ok[2:], {"steps": "f16"}, "float32",
         (16,)),
        ("StreamError__cabac_unknown_step_format", ok, {"steps": "bf16"}, "float32", (16,)),
        ("StreamError__cabac_unknown_side_key", ok, {"steps": "f16", "scale": 2}, "float32", (16,)),
        ("StreamError__cabac_axis_out_of_range", ok, {"steps": "f16", "axis": 1}, "float32", (16,)),
        ("StreamError__cabac_missing_channel_steps", f16_one + ok[2:], {"steps": "f16", "axis": 0}, "float32",
         (16, 1)),
        ("StreamError__cabac_trailing_byte", ok + b"\x01", {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_truncated_payload", ok[:-1], {"steps": "f16"}, "float32", (16,)),
        ("StreamError__cabac_too_few_values", ok, {"steps": "f16"}, "float32", (2,)),
        ("StreamError__cabac_int_dtype", ok, {"steps": "f16"}, "int32", (16,)),
    ]
    return valid, broken


def main() -> int:
    os.makedirs(os.path.join(OUT, "valid"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "broken"), exist_ok=True)
    written = []
    path = os.path.join(OUT, "streams.json")
    if not os.path.exists(path):
        valid, invalid = stream_vectors()
        doc = {"description": "spec/entropy-cabac.md vectors. valid: decode(hex, count) == values, and the encoder "
                              "reproduces hex from (values, k, g, force_cabac). invalid: decode(hex, count) MUST raise "
                              "StreamError. Frozen: never regenerate.", "valid": valid, "invalid": invalid}
        written.append(write_new(path, (json.dumps(doc, indent=1) + "\n").encode()) and path)
    valid, broken = codec_vectors()
    for stem, tensors in valid.items():
        sqz = os.path.join(OUT, "valid", stem + ".sqz")
        if os.path.exists(sqz):
            continue
        arrays = {n: a for n, (a, _) in tensors.items()}
        codecs = {n: c for n, (_, c) in tensors.items()}
        expected = {}
        for n, (a, c) in tensors.items():
            expected[n + ".q"] = c.quantize(a)[0]
        write_container(sqz, arrays, codecs)
        with squeezefmt.open(sqz) as f:
            for n in f.keys():
                expected[n] = f.tensor(n)
        np.savez(os.path.join(OUT, "valid", stem + ".npz"), **expected)
        written.append(sqz)
    for stem, stream, side, dtype, shape in broken:
        sqz = os.path.join(OUT, "broken", stem + ".sqz")
        if write_container(sqz, {"t": np.zeros(shape, dtype)}, {"t": Forged(stream, side)}):
            written.append(sqz)
    write_manifest(OUT)
    print("\n".join(str(w) for w in written if w) or "nothing to write: every vector exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
