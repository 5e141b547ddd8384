"""Frozen federated payload vectors (spec/federated.md, section 7): decode, chain, refuse the wrong base."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from squeezefmt import federated as fl
from squeezefmt.errors import BaseMismatchError

from conftest import VECTORS

DIR = os.path.join(VECTORS, "federated")


def npz(name):
    with np.load(os.path.join(DIR, name), allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def payload(name):
    with open(os.path.join(DIR, name), "rb") as f:
        return f.read()


def ordered_like(arrays, reference):
    return {k: arrays[k] for k in reference}


def test_manifest_checksums():
    manifest = json.loads(payload("MANIFEST.json"))
    assert len(manifest["files"]) == 9
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(payload(name)).hexdigest() == entry["sha256"], name
        if name.endswith(".sqz"):
            info = fl.peek(payload(name))
            assert (info.kind, info.round, info.state, info.base) == (
                entry["kind"], entry["round"], entry["state"], entry["base"])


def same_bits(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k


def test_chain_of_rounds():
    base, r1, r2 = npz("base.npz"), npz("r1_state.npz"), npz("r2_state.npz")
    full = fl.decode_model(payload("r0_full.sqz"))
    base = ordered_like(base, full)
    same_bits(full, base)
    assert fl.content_hash(base) == fl.peek(payload("r0_full.sqz")).state
    out1 = fl.decode_model(payload("r1_delta_xor.sqz"), base=base)
    same_bits(out1, ordered_like(r1, out1))
    out2 = fl.decode_model(payload("r2_delta_add.sqz"), base=out1)
    same_bits(out2, ordered_like(r2, out2))
    same_bits(fl.decode_model(payload("r2_catchup.sqz")), out2)
    same_bits(fl.decode_model(payload("r2_keep.sqz"), base=out2), out2)
    # the same with the stateful decoder
    dec = fl.BroadcastDecoder()
    for name in ("r0_full.sqz", "r1_delta_xor.sqz", "r2_delta_add.sqz", "r2_keep.sqz"):
        dec.decode(payload(name))
    assert dec.state_hash == fl.content_hash(r2)


def test_wrong_base_vector_is_refused():
    wrong = npz("wrong_base.npz")
    with pytest.raises(BaseMismatchError):
        fl.decode_model(payload("r1_delta_xor.sqz"), base=ordered_like(wrong, npz("base.npz")))
    with pytest.raises(BaseMismatchError):
        fl.decode_model(payload("r2_keep.sqz"), base=wrong)
