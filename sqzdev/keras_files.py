"""Version-neutral Keras file writing for tests: the legacy .h5 layouts under tf.keras 2.14 or Keras 3.

Keras 3 refuses ``model.save_weights("w.h5")`` (it writes weights only to ``*.weights.h5``, in its
own layout) and writes a full model to ``.h5`` only through its legacy writer. The helpers here give
the same Keras 2 layout files under either Keras, so a test's set-up does not depend on the version.
"""
from __future__ import annotations

import os
import warnings

import numpy as np


def keras_major() -> int:
    """The installed Keras's major version (2 for TensorFlow 2.14's tf.keras, 3 for Keras 3)."""
    from squeezefmt.keras.compat import is_keras3  # noqa: PLC0415

    return 3 if is_keras3() else 2


def save_legacy_h5(model, path, *, include_optimizer: bool = True) -> None:
    """``model`` as a legacy full-model .h5 (``model_config`` + ``model_weights``) under either Keras."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
        if keras_major() >= 3:
            from keras.src.legacy.saving import legacy_h5_format  # noqa: PLC0415

            legacy_h5_format.save_model_to_hdf5(model, os.fspath(path), include_optimizer=include_optimizer)
        else:
            model.save(os.fspath(path), save_format="h5", include_optimizer=include_optimizer)


def save_legacy_weights(model, path) -> None:
    """``model``'s weights as a legacy weights-only .h5 (root ``layer_names`` attribute) under either Keras."""
    if keras_major() >= 3:
        import h5py  # noqa: PLC0415
        from keras.src.legacy.saving import legacy_h5_format  # noqa: PLC0415

        with h5py.File(os.fspath(path), "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    else:
        model.save_weights(os.fspath(path), save_format="h5")


def legacy_h5_module():
    """The installed Keras's own legacy .h5 reader/writer module (``hdf5_format`` / ``legacy_h5_format``)."""
    if keras_major() >= 3:
        from keras.src.legacy.saving import legacy_h5_format  # noqa: PLC0415

        return legacy_h5_format
    from keras.src.saving.legacy import hdf5_format  # noqa: PLC0415 - tf.keras 2.14 layout

    return hdf5_format


def legacy_optimizer_arrays(path) -> list:
    """The optimizer state stored in a legacy .h5 model file, read by the installed Keras's own reader."""
    import h5py  # noqa: PLC0415

    with h5py.File(os.fspath(path), "r") as f:
        return [np.asarray(a[()]) for a in legacy_h5_module().load_optimizer_weights_from_hdf5_group(f)]


def tensor_key(f, layer: str, *tail: str) -> str:
    """The container tensor of top-level ``layer`` whose Keras weight name ends in ``tail``.

    tf.keras 2 names weights ``kernel:0`` under their layer (``c1/c1/kernel:0``), Keras 3's legacy
    writer by variable path (``c1/sequential/c1/kernel``): ``tensor_key(f, "c1", "c1", "kernel")``
    finds either. Exactly one tensor must match.
    """
    suffix = "/" + "/".join(tail)
    found = [k for k in f.keys() if k.startswith(layer + "/") and k.removesuffix(":0").endswith(suffix)]
    if len(found) != 1:
        raise KeyError(f"{len(found)} tensors of layer {layer!r} end in {suffix!r}: {found[:4]}")
    return found[0]
