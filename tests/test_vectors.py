"""Frozen vectors in spec/vectors: valid files decode to their .npz, broken files raise their named error.

These files are never regenerated; a change that breaks one is a format change.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import squeezefmt


from conftest import VECTORS
from sqzdev.harness import check_manifest, expected_error, reject_broken_vector

VALID = sorted(f[:-4] for f in os.listdir(os.path.join(VECTORS, "valid")) if f.endswith(".sqz"))
BROKEN = sorted(f for f in os.listdir(os.path.join(VECTORS, "broken")) if f.endswith(".sqz"))


def test_manifest_matches_files():
    check_manifest(VECTORS)


@pytest.mark.parametrize("stem", VALID)
def test_valid_vector_decodes(stem):
    expected = np.load(os.path.join(VECTORS, "valid", stem + ".npz"), allow_pickle=False)
    with squeezefmt.open(os.path.join(VECTORS, "valid", stem + ".sqz")) as f:
        assert sorted(f.keys()) == sorted(expected.files)
        for name in f.keys():
            got = f.tensor(name)
            want = expected[name]
            if f.info(name).dtype == "bfloat16":
                got = got.view(np.uint16)
            assert got.shape == want.shape and np.array_equal(got, want), name
        f.verify()


@pytest.mark.parametrize("stem", [s for s in VALID if s.startswith("v1_")])
def test_valid_vector_is_what_this_writer_writes(stem):
    """Determinism across versions of the writer: re-encoding as format 1.0 gives the frozen bytes
    (format 1.1 vectors: tests/test_format_v11.py)."""
    from sqzdev.vectors.core import bf16_fix, valid_cases

    cases = {s: (a, c, m) for s, a, c, m in valid_cases()}
    arrays, codecs, meta = cases[stem]
    data = squeezefmt.save(bf16_fix(arrays), None, codecs=codecs, metadata=meta, format_version=(1, 0))
    with open(os.path.join(VECTORS, "valid", stem + ".sqz"), "rb") as f:
        frozen = f.read()
    # The writer version string is part of the header; compare everything but that field.
    assert data.replace(squeezefmt.__version__.encode(), b"0.1.0") == frozen


@pytest.mark.parametrize("name", BROKEN)
def test_broken_vector_is_rejected(name):
    path = os.path.join(VECTORS, "broken", name)
    reject_broken_vector(path)
    want = expected_error(name[:-4])
    # the same bytes from memory behave the same
    with open(path, "rb") as fh:
        data = fh.read()
    with pytest.raises(want):
        with squeezefmt.open(data) as f:
            f.verify()


def test_broken_corpus_covers_every_error_class():
    covered = {n.split("__")[0] for n in BROKEN}
    assert {"FormatError", "TruncatedError", "VersionError", "HeaderError", "ChecksumError", "LimitError",
            "UnknownCodecError", "StreamError"} <= covered
