"""Evaluation data files for ``pack --eval``: reading, checking and splitting a DATA.npz (numpy only).

Layout: ``x`` (one model input) or ``x0``, ``x1``, ... (several inputs, in the model's input order),
and ``y``: integer class labels ``(N,)`` or one-hot rows ``(N, classes)``. Every input has the same
number of rows ``N >= 1``. Files are read with ``allow_pickle=False``. Anything else raises
:class:`EvalDataError` with a one-line message; checks against a model (input shapes, the number of
classes) are the model adapter's (:mod:`squeezefmt.keras.evaluate`).
"""
from __future__ import annotations

import dataclasses
import os
import re
import zipfile

import numpy as np

from ..errors import SqueezeError

class EvalDataError(SqueezeError):
    """An evaluation data file is unreadable, inconsistent or does not fit the model."""


@dataclasses.dataclass
class EvalData:
    """Model inputs (a list, one array per input) and integer labels."""

    x: list
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: np.ndarray) -> "EvalData":
        return EvalData([a[index] for a in self.x], self.y[index])

    def split(self, holdout: float, seed: int = 0) -> tuple:
        """``(search, held_out)``: a seeded random split; ``held_out`` is None for ``holdout == 0``."""
        if not 0.0 <= holdout < 1.0:
            raise EvalDataError(f"the held-out fraction must be in [0, 1), got {holdout!r}")
        n = len(self)
        n_hold = int(round(n * holdout))
        if n_hold == 0:
            return self, None
        if n - n_hold < 1:
            raise EvalDataError(f"{n} samples are too few to hold {holdout:g} of them out")
        order = np.random.default_rng(seed).permutation(n)
        return self.take(np.sort(order[n_hold:])), self.take(np.sort(order[:n_hold]))


def _labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from ``y`` (integers, integral floats, or one-hot rows)."""
    if y.dtype.kind not in "biuf":
        raise EvalDataError(f"'y' has dtype {y.dtype}; labels must be integers or one-hot numbers")
    if y.ndim == 2 and y.shape[1] >= 2:
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise EvalDataError("'y' is 2-D but its rows are not one-hot (exactly one 1, the rest 0)")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise EvalDataError(f"'y' has shape {y.shape}; expected (N,) labels or (N, classes) one-hot rows")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise EvalDataError("'y' holds non-integer values; labels must be class numbers")
    if y.size and float(y.min()) < 0:
        raise EvalDataError(f"label {int(y.min())} is out of range (labels start at 0)")
    return y.astype(np.int64)


def _inputs(arrays: dict) -> list:
    keys = set(arrays) - {"y"}
    multi = sorted((k for k in keys if re.fullmatch(r"x\d+", k)), key=lambda k: int(k[1:]))
    if "x" in keys and multi:
        raise EvalDataError("the file has both 'x' and 'x0', 'x1', ...; use 'x' for one input or x0.. for several")
    if "x" in keys:
        return [arrays["x"]]
    if not multi:
        raise EvalDataError(f"no model input: expected 'x' (or 'x0', 'x1', ...), found {sorted(keys) or 'nothing'}")
    if [int(k[1:]) for k in multi] != list(range(len(multi))):
        raise EvalDataError(f"multi-input keys must be x0, x1, ... without gaps, found {multi}")
    return [arrays[k] for k in multi]


def load_eval_data(path) -> EvalData:
    """Read and check a DATA.npz (see module doc)."""
    try:
        if os.path.getsize(path) == 0:
            raise EvalDataError(f"{os.fspath(path)} is empty (0 bytes)")
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise EvalDataError(f"{os.fspath(path)} is a .npy array, not a .npz file with 'x' and 'y'")
            names = list(z.files)
            if not names:
                raise EvalDataError(f"{os.fspath(path)} holds no arrays")
            arrays = {k: z[k] for k in names}
    except EvalDataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EvalDataError(f"cannot read {os.fspath(path)} as a .npz file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if "y" not in arrays:
        raise EvalDataError(f"{os.fspath(path)} has no 'y' (labels); found {sorted(arrays)}")
    xs = _inputs(arrays)
    y = _labels(np.asarray(arrays["y"]))
    if len(y) == 0:
        raise EvalDataError(f"{os.fspath(path)} holds no samples (0 labels)")
    for i, a in enumerate(xs):
        if a.dtype.kind not in "biuf" or a.ndim < 1:
            raise EvalDataError(f"input {i} has dtype {a.dtype} and shape {a.shape}; expected numbers, one row per sample")
        if a.shape[0] != len(y):
            raise EvalDataError(f"input {i} has {a.shape[0]} rows but 'y' has {len(y)} labels")
    return EvalData(xs, y)
