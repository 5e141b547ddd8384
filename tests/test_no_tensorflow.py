"""The core (import, save, open, decode, pack/unpack of .h5) works with TensorFlow unimportable."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import ROOT, VECTORS

BLOCK = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tensorflow_compression", "keras", "tf_keras"):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
""")


def run(code: str):
    proc = subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_and_decode_without_tensorflow():
    out = run(f"""
        import numpy as np, squeezefmt, os
        for fn in sorted(os.listdir({os.path.join(VECTORS, 'valid')!r})):
            if fn.endswith(".sqz"):
                squeezefmt.load(os.path.join({os.path.join(VECTORS, 'valid')!r}, fn))
        data = squeezefmt.save({{"w": np.ones((3, 3), np.float32)}})
        assert squeezefmt.load(data)["w"].sum() == 9
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
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
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
        print("ok")
    """)
    assert out.strip() == "ok"
