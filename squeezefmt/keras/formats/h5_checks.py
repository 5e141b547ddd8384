"""Checks on untrusted Keras .h5 input before squeezefmt trusts it (issue 13).

h5py hands back whatever the file declares: a group where a weight dataset belongs, string or
compound element types, a dataset whose declared shape is terabytes (HDF5 allocates lazily, so
such a file is tiny), attributes of the wrong type or with bytes that are not UTF-8. The .h5
reader calls :func:`read_weight` and :func:`attr_text` instead of indexing h5py directly, and runs
inside :func:`h5_errors`, so each of these becomes one clear :class:`KerasFormatError` line.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from ...container.limits import DEFAULT_LIMITS
from ...errors import KerasFormatError, SqueezeError

#: A weight may declare at most this many times the bytes the file stores for it (Keras writes weights
#: uncompressed; a dataset that was never written has storage 0 and reads back as fill values).
MAX_H5_EXPANSION = 1024
#: Datasets this small are read whatever their storage (HDF5 may keep them in the object header).
_FILL_SLACK = 1 << 16
#: numpy kinds a weight may have: bool, signed, unsigned, float.
_WEIGHT_KINDS = "biuf"


def read_weight(group, name: str, where: str, budget: list[int] | None = None) -> np.ndarray:
    """Dataset ``group[name]`` as a numpy array, after checking its kind, dtype and declared size.

    ``budget``: a one-element list holding the bytes still allowed for the whole file (decremented).
    """
    import h5py  # noqa: PLC0415 - only reached when h5py is installed

    try:
        obj = group.get(name, getlink=False)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise KerasFormatError(f"weight {where!r}: cannot be read from the .h5 ({exc})") from None
    if not isinstance(obj, h5py.Dataset):
        raise KerasFormatError(f"weight {where!r} is {'a group' if isinstance(obj, h5py.Group) else 'not a dataset'}"
                               " in the .h5, not a dataset")
    dtype = obj.dtype
    if dtype.kind not in _WEIGHT_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise KerasFormatError(f"weight {where!r} has element type {dtype}, not a number or bool")
    if obj.shape is None:
        raise KerasFormatError(f"weight {where!r} has no data (an empty HDF5 dataspace)")
    nbytes = math.prod(obj.shape) * dtype.itemsize
    if nbytes > DEFAULT_LIMITS.max_tensor_bytes:
        raise KerasFormatError(f"weight {where!r} declares shape {obj.shape} ({nbytes} bytes); "
                               f"the limit is {DEFAULT_LIMITS.max_tensor_bytes} bytes")
    stored = _storage_size(obj)
    if nbytes > _FILL_SLACK and stored * MAX_H5_EXPANSION < nbytes:
        raise KerasFormatError(f"weight {where!r} declares {nbytes} bytes but the .h5 stores only {stored} "
                               f"(more than {MAX_H5_EXPANSION}x: never-written or fill-value data)")
    if budget is not None:
        budget[0] -= nbytes
        if budget[0] < 0:
            raise KerasFormatError(f"the .h5's weights declare more than {DEFAULT_LIMITS.max_decoded_bytes} bytes "
                                   f"(at weight {where!r})")
    try:
        return np.asarray(obj[()])
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise KerasFormatError(f"weight {where!r}: the .h5 data cannot be read ({exc})") from None
    except MemoryError:
        raise KerasFormatError(f"weight {where!r}: not enough memory for its {nbytes} bytes") from None


def _storage_size(dataset) -> int:
    try:
        return int(dataset.id.get_storage_size())
    except (AttributeError, OSError, RuntimeError, ValueError):
        return 0


def new_budget() -> list[int]:
    return [DEFAULT_LIMITS.max_decoded_bytes]


def attr_text(value, what: str) -> str:
    """An attribute value (bytes, str or 0-d array of either) as text; KerasFormatError otherwise."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise KerasFormatError(f".h5 attribute {what} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise KerasFormatError(f".h5 attribute {what} must be text, got {type(value).__name__} {str(value)[:40]}")


@contextlib.contextmanager
def h5_errors(what: str):
    """Turn what h5py and HDF5 raise on a damaged file into a one-line KerasFormatError."""
    try:
        yield
    except SqueezeError:
        raise
    except (OSError, RuntimeError, RecursionError, KeyError, TypeError, ValueError) as exc:
        raise KerasFormatError(f"{what}: malformed .h5 file ({type(exc).__name__}: {exc})") from None
