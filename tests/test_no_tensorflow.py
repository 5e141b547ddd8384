"""The core (import, save, open, decode, pack/unpack of .h5) works with TensorFlow unimportable."""
from __future__ import annotations

import os

from conftest import ROOT, VECTORS
from sqzdev.harness import run_without_tensorflow

def run(code: str) -> str:
    return run_without_tensorflow(code)


def test_import_and_decode_without_tensorflow():
    out = run(f"""
        import numpy as np, squeezefmt, os
        for fn in sorted(os.listdir({os.path.join(VECTORS, 'valid')!r})):
            if fn.endswith(".sqz"):
                squeezefmt.load(os.path.join({os.path.join(VECTORS, 'valid')!r}, fn))
        data = squeezefmt.save({{"w": np.ones((3, 3), np.float32)}})
        assert squeezefmt.load(data)["w"].sum() == 9
        print("ok")
    """)
    assert out.strip() == "ok"


def test_keras_pack_and_unpack_without_tensorflow(tmp_path):
    example = os.path.join(ROOT, "examples", "mnist_cnn.h5")
    if not os.path.exists(example):
        import pytest
        pytest.skip("bundled example model not present")
    out = run(f"""
        import squeezefmt.keras as sk, squeezefmt
        sk.pack({example!r}, {str(tmp_path / 'm.sqz')!r})
        sk.unpack({str(tmp_path / 'm.sqz')!r}, {str(tmp_path / 'm.h5')!r})
        print("ok")
    """)
    assert out.strip() == "ok"
