"""Frozen quant / cluster / sparse vectors (spec/vectors/{quant,cluster,sparse}): valid files decode to their
.npz bit for bit, broken files raise their named error, and this writer still writes the valid bytes."""
from __future__ import annotations

import os

import numpy as np
import pytest

import squeezefmt


from conftest import VECTORS
from sqzdev.harness import check_manifest, reject_broken_vector

KINDS = ("quant", "cluster", "sparse")


def _files(kind, sub, ext=".sqz"):
    d = os.path.join(VECTORS, kind, sub)
    return sorted(f for f in os.listdir(d) if f.endswith(ext)) if os.path.isdir(d) else []


VALID = [(k, f[:-4]) for k in KINDS for f in _files(k, "valid")]
BROKEN = [(k, f) for k in KINDS for f in _files(k, "broken")]


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_matches_files(kind):
    check_manifest(os.path.join(VECTORS, kind))


@pytest.mark.parametrize("kind,stem", VALID)
def test_valid_vector_decodes(kind, stem):
    base = os.path.join(VECTORS, kind, "valid", stem)
    expected = np.load(base + ".npz", allow_pickle=False)
    with squeezefmt.open(base + ".sqz") as f:
        assert sorted(f.keys()) == sorted(expected.files)
        for name in f.keys():
            got, want = f.tensor(name), expected[name]
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), name
        assert any(f.info(n).codec == kind for n in f.keys())   # tiny tensors may fall back to raw
        f.verify()


@pytest.mark.parametrize("kind,stem", VALID)
def test_valid_vector_is_what_this_writer_writes(kind, stem):
    from sqzdev.vectors.deep import valid_cases

    cases = {(k, s): (a, c) for k, s, a, c in valid_cases()}
    arrays, codecs = cases[(kind, stem)]
    data = squeezefmt.save(arrays, None, codecs=codecs, format_version=(1, 0)).replace(squeezefmt.__version__.encode(), b"0.1.0")
    with open(os.path.join(VECTORS, kind, "valid", stem + ".sqz"), "rb") as f:
        assert data == f.read()


@pytest.mark.parametrize("kind,name", BROKEN)
def test_broken_vector_is_rejected(kind, name):
    reject_broken_vector(os.path.join(VECTORS, kind, "broken", name))


def test_every_kind_has_vectors():
    for kind in KINDS:
        assert any(k == kind for k, _ in VALID) and any(k == kind for k, _ in BROKEN), kind
