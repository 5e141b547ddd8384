"""``--canonical-zeros``: turn every ``-0.0`` of the float tensors into ``+0.0`` before encoding.

Pruning (tfmot's ``strip_pruning`` among others) leaves ``-0.0`` in about half of the zeros of a
pruned kernel. A lossless container keeps every bit, so it stores those signs (the ``sparse`` codec's
negative-zero list: about 0.9 bits per zero), although no layer output depends on them: ``x * -0.0``
and ``x * +0.0`` only differ in the sign of a zero, and a zero's sign disappears in any sum with a
non-zero term. Clearing them is therefore safe for predictions, but it is a change of bits, so it
is an explicit option (recorded in the container metadata as ``canonical_zeros``), which the lossy
presets switch on by default (``squeezefmt.presets.register(..., canonical_zeros=True)``,
``squeezefmt.presets.canonical_zeros(name)``) and ``lossless`` never does.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .dtypes import FLOAT_NAMES, as_storage, dtype_name, from_storage


def canonicalize(array: np.ndarray) -> tuple[np.ndarray, int]:
    """``(array with -0.0 -> +0.0, how many were changed)``; non-float arrays are returned as they are."""
    if not isinstance(array, np.ndarray) or dtype_name(array.dtype) not in FLOAT_NAMES:
        return array, 0
    store = as_storage(array)
    bits = store.view(np.dtype(f"<u{store.dtype.itemsize}"))
    mask = bits == np.array(1 << (8 * store.dtype.itemsize - 1), dtype=bits.dtype)  # exactly -0.0
    count = int(np.count_nonzero(mask))
    if not count:
        return array, 0
    fixed = bits.copy()
    fixed[mask] = 0
    return from_storage(fixed.view(store.dtype), dtype_name(array.dtype)), count


def canonicalize_all(arrays: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """Every array canonicalised; returns the new mapping and the metadata record
    ``{"zeros": changed zeros, "tensors": tensors with a change}``."""
    out, zeros, tensors = {}, 0, 0
    for name, value in arrays.items():
        out[name], n = canonicalize(value)
        zeros += n
        tensors += n > 0
    return out, {"zeros": zeros, "tensors": tensors}
