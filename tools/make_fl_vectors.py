#!/usr/bin/env python3
"""Write the federated payload test vectors in spec/vectors/federated/ (never overwrites).

A three-round broadcast of a small model, with every payload a receiver needs and the state it must
hold after each one::

    base.npz                 round-0 model (what r0_full.sqz decodes to)
    r0_full.sqz              full payload, lossless                       -> base.npz
    r1_delta_xor.sqz         exact XOR delta against base.npz              -> r1_state.npz
    r2_delta_add.sqz         lossy delta (quant, 4 bits) against r1_state  -> r2_state.npz
    r2_keep.sqz              "keep": the receiver must already hold r2_state
    r2_catchup.sqz           full payload of r2_state (for a receiver that missed rounds)
    wrong_base.npz           a model r1_delta_xor.sqz MUST be refused against (BaseMismatchError)
    MANIFEST.json            SHA-256 of every file, and each payload's announced state hash

The arrays are float32/float16/int64 so that both delta operations (add for floats, XOR for the
rest) appear. Existing files are left alone: vectors are frozen once written
(tests/test_federated_vectors.py checks them); delete a file by hand only before its first commit.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squeezefmt import federated as fl  # noqa: E402

OUT = ROOT / "spec" / "vectors" / "federated"


def model(rng):
    return {
        "dense/kernel": rng.normal(0, 0.05, (48, 16)).astype(np.float32),
        "dense/bias": rng.normal(0, 0.01, (16,)).astype(np.float32),
        "embed": rng.normal(0, 0.5, (20, 4)).astype(np.float16),
        "step": np.array([3], np.int64),
    }


def npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k.replace("/", "__"): v for k, v in arrays.items()})
    return buf.getvalue()


def main() -> int:
    rng = np.random.default_rng(20240607)
    w0 = model(rng)
    enc = fl.BroadcastEncoder(fl.FederatedPreset("vectors", delta=True, delta_bits=4, min_lossy_elements=64))
    files: dict[str, bytes] = {}
    lossless = fl.BroadcastEncoder("lossless-delta")
    files["r0_full.sqz"] = lossless.encode(w0)
    files["base.npz"] = npz_bytes(lossless.state)
    w1 = {k: (v + rng.laplace(0, 0.002, v.shape).astype(v.dtype)) if v.dtype.kind == "f" else v + 1
          for k, v in w0.items()}
    files["r1_delta_xor.sqz"] = lossless.encode(w1)
    files["r1_state.npz"] = npz_bytes(lossless.state)
    # round 2 continues from r1_state with a lossy delta: the encoder must hold exactly r1_state
    enc.encode(lossless.state, full=True)  # its state is r1_state (lossless: same bits)
    assert enc.state_hash == lossless.state_hash
    w2 = {k: (v + rng.laplace(0, 0.002, v.shape).astype(v.dtype)) if v.dtype.kind == "f" else v + 1
          for k, v in w1.items()}
    files["r2_delta_add.sqz"] = enc.encode(w2, round=2)
    files["r2_state.npz"] = npz_bytes(enc.state)
    files["r2_keep.sqz"] = enc.keep_payload()
    files["r2_catchup.sqz"] = enc.full_payload()
    files["wrong_base.npz"] = npz_bytes({k: (v * 2 if v.dtype.kind == "f" else v) for k, v in w0.items()})

    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"files": {}}
    wrote = 0
    for name, data in files.items():
        path = OUT / name
        if path.exists():
            continue
        path.write_bytes(data)
        entry = {"sha256": hashlib.sha256(data).hexdigest()}
        if name.endswith(".sqz"):
            info = fl.peek(data)
            entry.update({"kind": info.kind, "round": info.round, "state": info.state, "base": info.base})
        manifest["files"][name] = entry
        wrote += 1
    if wrote:
        manifest["note"] = ("Frozen test vectors of spec/federated.md, written by tools/make_fl_vectors.py; never "
                            "regenerated. Names in the .npz files use '__' for '/'.")
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {wrote} new file(s) to {OUT} ({len(files) - wrote} already present, left alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
