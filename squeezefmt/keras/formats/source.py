"""Which Keras file is this? Sniff a path and read it with the matching reader (h5py/zipfile only).

* a zip: a Keras 3 ``.keras`` archive (formats/keras_v3.py);
* an HDF5 file with ``layers/.../vars`` groups: a Keras 3 ``.weights.h5`` (formats/keras_v3.py);
* any other HDF5 file: a legacy Keras ``.h5``, full model or weights only, written by Keras 2 or by
  Keras 3 (keras/h5.py).
"""
from __future__ import annotations

import os

from ...errors import KerasFormatError
from ..h5 import KerasArchive, _require_h5py, read_h5
from .keras_v3 import is_keras3_weights, read_keras_zip, read_weights_h5, sniff


def describe(path) -> str | None:
    """A one-line description of a Keras file at ``path``, or None when it is not one."""
    kind = sniff(path)
    if kind == "keras_zip":
        return "this is a Keras 3 .keras archive, not a .sqz container; pack it with: squeezefmt pack MODEL.keras OUT.sqz"
    if kind == "h5":
        return "this is an HDF5 file (a Keras .h5 model or weights), not a .sqz container; pack it with: squeezefmt pack FILE.h5 OUT.sqz"
    return None


def read_source(path, *, include_optimizer: bool = False) -> KerasArchive:
    """The :class:`KerasArchive` of a Keras file at ``path`` (or an open ``h5py.File``), whatever its format."""
    if not isinstance(path, (str, os.PathLike)):
        return read_weights_h5(path, include_optimizer=include_optimizer) if is_keras3_weights(path) \
            else read_h5(path, include_optimizer=include_optimizer)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    kind = sniff(path)
    if kind == "keras_zip":
        return read_keras_zip(path, include_optimizer=include_optimizer)
    if kind != "h5":
        raise KerasFormatError(
            f"{os.fspath(path)!r} is neither a Keras .h5 (HDF5) file nor a Keras 3 .keras (zip) archive")
    h5py = _require_h5py()
    try:
        with h5py.File(path, "r") as f:
            keras3 = is_keras3_weights(f)
    except OSError as exc:
        raise KerasFormatError(f"{os.fspath(path)!r} is not a readable HDF5 file: {exc}") from None
    if keras3:
        return read_weights_h5(path, include_optimizer=include_optimizer)
    return read_h5(path, include_optimizer=include_optimizer)
