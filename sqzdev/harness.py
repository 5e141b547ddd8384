"""Test harnesses shared by several test files.

* :func:`run_isolated` / :func:`run_without_tensorflow`: run a snippet in a fresh interpreter in
  which chosen top-level modules cannot be imported, and check afterwards that none was imported
  (the "decoding never imports TensorFlow" guarantee).
* :func:`vector_files` / :func:`expected_error`: the frozen vectors of a family under spec/vectors
  and the error class a broken vector's file name promises.
* :func:`verify_and_decode`: what the corruption tests run on a damaged container.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Iterable, Mapping

from sqzdev import REPO, VECTORS

#: What "no TensorFlow" means: none of these top-level modules may be imported.
TF_MODULES = ("tensorflow", "tensorflow_compression", "keras", "tf_keras")

_PRELUDE = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {block!r}:
            raise ImportError("blocked in this test: " + name)
sys.meta_path.insert(0, _Block())
"""
_EPILOGUE = """
_bad = sorted(m for m in sys.modules if m.split(".")[0] in {forbid!r})
assert not _bad, "imported: " + ", ".join(_bad[:5])
"""


def run_isolated(code: str, *, block: Iterable[str] = TF_MODULES, forbid: Iterable[str] = TF_MODULES,
                 env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``code`` (dedented) in a new interpreter at the repository root; return its stdout.

    Importing a top-level module named in ``block`` raises ImportError; after ``code`` ran, none
    named in ``forbid`` may be in ``sys.modules``. A non-zero exit fails with the end of stderr.
    """
    program = (_PRELUDE.format(block=tuple(block)) + textwrap.dedent(code)
               + _EPILOGUE.format(forbid=tuple(forbid)))
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", **dict(env or {})}
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=full_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def run_without_tensorflow(code: str, **kwargs) -> str:
    """:func:`run_isolated` with TensorFlow and Keras blocked and checked (the defaults)."""
    return run_isolated(code, **kwargs)


def verify_and_decode(data) -> dict:
    """Open ``data``, verify every checksum, then decode every tensor (what corruption tests expect to fail)."""
    import squeezefmt

    with squeezefmt.open(data) as f:
        f.verify()
        return f.tensors()


def vector_files(family: str = "", kind: str = "valid") -> list[str]:
    """Sorted stems of the ``.sqz`` vectors in ``spec/vectors/<family>/<kind>``."""
    d = os.path.join(VECTORS, family, kind)
    return sorted(f[:-4] for f in os.listdir(d) if f.endswith(".sqz")) if os.path.isdir(d) else []


def vector_path(stem: str, family: str = "", kind: str = "valid") -> str:
    return os.path.join(VECTORS, family, kind, stem + ".sqz")


def expected_error(stem: str):
    """The :mod:`squeezefmt.errors` class a broken vector named ``<ErrorClass>__<what>`` must raise."""
    from squeezefmt import errors  # noqa: PLC0415

    return getattr(errors, stem.split("__", 1)[0])


def reject_broken_vector(path: str):
    """Open and verify a broken vector; return the error it raised, which must be the one its name promises.

    The error must carry a message (errors say what is wrong).
    """
    import pytest  # noqa: PLC0415

    import squeezefmt  # noqa: PLC0415

    want = expected_error(os.path.basename(path)[:-4])
    with pytest.raises(want) as info:
        with squeezefmt.open(path) as f:
            f.verify()
    assert str(info.value), "errors must say what is wrong"
    return info.value


def randomize_weights(model, seed: int = 0):
    """Non-trivial weights in every layer of a Keras model (BatchNorm variances positive), no training.

    Works under tf.keras 2 (``tf.DType``) and Keras 3 (string dtypes); returns the model.
    """
    import numpy as np  # noqa: PLC0415 - the harness module itself stays import-light

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([
            (np.abs(rng.normal(size=v.shape)) + 0.5 if "variance" in v.name else rng.normal(size=v.shape) * 0.2)
            .astype(np.dtype(getattr(v.dtype, "as_numpy_dtype", v.dtype))) for v in layer.weights])
    return model


def check_manifest(root: str) -> None:
    """Assert that ``root/MANIFEST.json`` lists exactly the files under ``root/{valid,broken}`` with
    their SHA-256: the frozen vectors are neither added to nor changed behind the manifest's back."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    with open(os.path.join(root, "MANIFEST.json")) as f:
        manifest = json.load(f)
    on_disk = {f"{sub}/{fn}" for sub in ("valid", "broken") if os.path.isdir(os.path.join(root, sub))
               for fn in os.listdir(os.path.join(root, sub))}
    assert set(manifest) == on_disk
    for rel, digest in manifest.items():
        with open(os.path.join(root, rel), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, f"{root}/{rel} changed: vectors are frozen"
