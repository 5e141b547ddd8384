"""The element types a .sqz container can declare, and their numpy equivalents.

Names are the container's vocabulary (spec/format.md, "Element types"); every tensor is stored
little-endian. ``bfloat16`` has no numpy dtype of its own: it is decoded as ``ml_dtypes.bfloat16``
when that package is installed (it comes with TensorFlow) and otherwise as its raw ``uint16`` bits,
which the caller can reinterpret.
"""
from __future__ import annotations

import numpy as np

from .errors import HeaderError, SqueezeError

_NUMPY_DTYPES = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "uint32": np.dtype("<u4"),
    "uint16": np.dtype("<u2"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}

#: Every dtype name the container format allows.
DTYPE_NAMES = tuple(sorted(list(_NUMPY_DTYPES) + ["bfloat16"]))

#: Floating-point element types (the lossy codecs accept only these).
FLOAT_NAMES = ("float64", "float32", "float16", "bfloat16")


def _bfloat16():
    try:
        import ml_dtypes  # noqa: PLC0415 - optional, ships with TensorFlow
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def itemsize(name: str) -> int:
    """Bytes per element of the container dtype ``name``."""
    return 2 if name == "bfloat16" else numpy_dtype(name, storage=True).itemsize


def numpy_dtype(name: str, *, storage: bool = False) -> np.dtype:
    """The numpy dtype for container dtype ``name``.

    With ``storage=True`` bfloat16 maps to its storage type ``uint16``; otherwise to
    ``ml_dtypes.bfloat16`` when available (and ``uint16`` when not).
    """
    if name == "bfloat16":
        bf = None if storage else _bfloat16()
        return bf if bf is not None else np.dtype("<u2")
    try:
        return _NUMPY_DTYPES[name]
    except KeyError:
        raise HeaderError(f"unknown element type {name!r}; known: {', '.join(DTYPE_NAMES)}") from None


def dtype_name(dtype) -> str:
    """The container dtype name of a numpy dtype (raises SqueezeError for unsupported ones)."""
    dt = np.dtype(dtype)
    if dt.name == "bfloat16":
        return "bfloat16"
    for name, ndt in _NUMPY_DTYPES.items():
        if dt.kind == ndt.kind and dt.itemsize == ndt.itemsize:
            return name
    raise SqueezeError(f"squeezefmt cannot store arrays of dtype {dt} (supported: {', '.join(DTYPE_NAMES)})")


def as_storage(array: np.ndarray) -> np.ndarray:
    """A C-contiguous little-endian view/copy of ``array`` in its container storage dtype."""
    name = dtype_name(array.dtype)
    target = numpy_dtype(name, storage=True)
    if name == "bfloat16":
        return np.ascontiguousarray(array).view(np.uint16)
    return np.ascontiguousarray(array, dtype=target)


def from_storage(array: np.ndarray, name: str) -> np.ndarray:
    """Reinterpret a storage-dtype array as the user-facing dtype of container type ``name``."""
    if name == "bfloat16":
        return array.view(numpy_dtype("bfloat16"))
    return array
