"""Write the frozen ``epr`` test vectors in spec/vectors/epr/ (only files that are missing).

    python tools/make_epr_vectors.py

- ``valid/<stem>.sqz``: containers whose tensors are ``epr`` streams of fixed integer latents; beside
  each, ``<stem>.npz`` with, per tensor ``t``: ``t`` (the decoded values, float64 of what the
  reference decoder returns), ``t.q`` (int32 latents) and ``t.s`` (float16 log-steps). Decoders must
  reproduce ``t.q`` and ``t.s`` exactly and ``t`` to within 1e-6 relative (float32 ``exp`` and FFTs
  differ in the last bit between libraries).
- ``broken/StreamError__<what>.sqz``: containers that are well formed (CRCs, layout) but whose ``epr``
  stream or side information is not, so decoding the tensor MUST raise ``StreamError``.

``MANIFEST.json`` holds the SHA-256 of every file; existing files and entries are never rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

import squeezefmt  # noqa: E402
from squeezefmt.codecs import Encoded  # noqa: E402
from squeezefmt.codecs.epr import EPR, EPRLatents  # noqa: E402
from squeezefmt.rdft import rdft_shape  # noqa: E402

from sqzdev import VECTORS  # noqa: E402

OUT = os.path.join(VECTORS, "epr")


class Forged(EPR):
    """Writes the given stream and side information as an ``epr`` tensor (for broken vectors)."""

    def __init__(self, stream: bytes, side: dict):
        super().__init__()
        self.stream, self.side = stream, side

    def get_config(self):
        return {}

    def encode(self, array):
        return Encoded(streams=[self.stream], side=self.side)


def _power_law(rng, shape, scale=3.0):
    """Integer latents shaped like EPR-trained ones: mostly zeros, a heavy tail."""
    x = rng.standard_t(1.5, size=shape) * 0.6
    return np.round(x * (rng.random(shape) < 0.5) * scale / 3.0).astype(np.int32)


def valid_cases():
    rng = np.random.default_rng(20240603)
    cases = {}
    # tfc's own test vector: [-6, 3, 0, 0] -> d1 6d, with log-step 0 (step 1)
    cases["v1_epr_tfc_vector"] = {"x": (np.array([-6, 3, 0, 0], np.int32), np.float16(0.0), "none", (4,), "float32")}
    # a dense kernel and its bias, one log-step each (the tutorial's CompressibleDense)
    q = _power_law(rng, (24, 10))
    cases["v1_epr_dense"] = {
        "fc/kernel:0": (q, np.float16(-4.0), "none", (24, 10), "float32"),
        "fc/bias:0": (_power_law(rng, (10,)), np.float16(-5.25), "none", (10,), "float32"),
    }
    # a conv kernel as its RDFT latent with per-frequency log-steps (the tutorial's CompressibleConv2D)
    for h, w in ((5, 5), (3, 4)):
        lshape = rdft_shape((h, w, 3, 4))
        steps = (-4.0 - 0.25 * rng.integers(0, 8, lshape[2:])).astype(np.float16)
        cases[f"v1_epr_conv{h}x{w}"] = {"conv/kernel:0": (_power_law(rng, lshape), steps, "rdft", (h, w, 3, 4), "float32")}
    # other declared dtypes, a scalar, an empty tensor, all zeros, a per-column step (step_dims 1)
    cases["v1_epr_misc"] = {
        "f16": (_power_law(rng, (6, 7)), np.float16(-3.5), "none", (6, 7), "float16"),
        "f64": (_power_law(rng, (5,)), np.float16(-1.0), "none", (5,), "float64"),
        "scalar": (np.array(-17, np.int32), np.float16(-6.0), "none", (), "float32"),
        "empty": (np.zeros((0, 3), np.int32), np.float16(0.0), "none", (0, 3), "float32"),
        "zeros": (np.zeros((100,), np.int32), np.float16(-2.0), "none", (100,), "float32"),
        "per_column": (_power_law(rng, (8, 3)), np.array([-3.0, -4.0, -5.0], np.float16), "none", (8, 3), "float32"),
        "large_values": (np.array([2**31 - 1, -(2**31 - 1), 1, -1, 65536], np.int32), np.float16(-20.0), "none", (5,),
                         "float32"),
    }
    return cases


def build_valid(tensors):
    """``(items, codecs, expected)``: pre-encoded EPR latents per tensor (no explicit codecs needed)."""
    arrays, codecs, expected = {}, {}, {}
    for name, (q, s, transform, shape, dtype) in tensors.items():
        item = EPRLatents(q, s, transform, shape=shape, dtype=dtype)
        arrays[name] = item
        expected[name] = item.dense().astype(np.float64)
        expected[f"{name}.q"] = np.asarray(q, np.int32)
        expected[f"{name}.s"] = np.asarray(s, np.float16)
    return arrays, codecs, expected


def broken_cases():
    """(stem, stream, side, dtype, shape)."""
    ok = b"\x00\x00\xd1\x6d"  # log-step 0.0, then tfc's [-6, 3, 0, 0]
    nan16 = np.array([np.nan], "<f2").tobytes()
    inf16 = np.array([np.inf], "<f2").tobytes()
    big16 = np.array([100.0], "<f2").tobytes()
    return [
        ("StreamError__epr_truncated_steps", b"\x00", {}, "float32", (4,)),
        ("StreamError__epr_empty_stream", b"", {}, "float32", (4,)),
        ("StreamError__epr_nan_step", nan16 + ok[2:], {}, "float32", (4,)),
        ("StreamError__epr_inf_step", inf16 + ok[2:], {}, "float32", (4,)),
        ("StreamError__epr_step_overflows", big16 + ok[2:], {}, "float32", (4,)),
        ("StreamError__epr_trailing_byte", ok + b"\x00", {}, "float32", (4,)),
        ("StreamError__epr_nonzero_padding", b"\x00\x00\xd1\xed", {}, "float32", (4,)),
        ("StreamError__epr_truncated_gamma", b"\x00\x00\xd1", {}, "float32", (4,)),
        ("StreamError__epr_run_overruns", b"\x00\x00\xd1\x6d", {}, "float32", (3,)),
        ("StreamError__epr_too_few_values", b"\x00\x00\xd1\x6d", {}, "float32", (5,)),
        ("StreamError__epr_unknown_side_key", ok, {"steps": 1}, "float32", (4,)),
        ("StreamError__epr_unknown_transform", ok, {"transform": "dct"}, "float32", (4,)),
        ("StreamError__epr_step_dims_too_big", ok, {"step_dims": 2}, "float32", (4,)),
        ("StreamError__epr_step_dims_bool", ok, {"step_dims": True}, "float32", (4,)),
        ("StreamError__epr_rdft_rank2", ok, {"transform": "rdft"}, "float32", (2, 2)),
        ("StreamError__epr_int_dtype", ok, {}, "int32", (4,)),
    ]


def _write_new(path: str, data: bytes, manifest: dict, rel: str) -> None:
    if os.path.exists(path):
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        if manifest.get(rel, digest) != digest:
            raise SystemExit(f"{rel} does not match MANIFEST.json: vectors are frozen, do not edit them")
        manifest.setdefault(rel, digest)
        return
    with open(path, "wb") as fh:
        fh.write(data)
    manifest[rel] = hashlib.sha256(data).hexdigest()
    print("wrote", rel)


def main() -> None:
    import io

    os.makedirs(os.path.join(OUT, "valid"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "broken"), exist_ok=True)
    mpath = os.path.join(OUT, "MANIFEST.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else {}
    for stem, tensors in valid_cases().items():
        arrays, codecs, expected = build_valid(tensors)
        _write_new(os.path.join(OUT, "valid", stem + ".sqz"),
                   squeezefmt.save(arrays, None, codecs=codecs, metadata={"vector": stem}), manifest,
                   f"valid/{stem}.sqz")
        buf = io.BytesIO()
        np.savez(buf, **expected)
        _write_new(os.path.join(OUT, "valid", stem + ".npz"), buf.getvalue(), manifest, f"valid/{stem}.npz")
    for stem, stream, side, dtype, shape in broken_cases():
        data = squeezefmt.save({"x": np.zeros(shape, dtype)}, None, codecs={"x": Forged(stream, side)},
                               metadata={"vector": stem})
        _write_new(os.path.join(OUT, "broken", stem + ".sqz"), data, manifest, f"broken/{stem}.sqz")
    with open(mpath, "w") as fh:
        json.dump(dict(sorted(manifest.items())), fh, indent=1)
        fh.write("\n")
