"""Rebuilding Keras models from .sqz containers, and saving Keras models into them.

This module imports TensorFlow (lazily, on first use); nothing else in squeezefmt does.
"""
from __future__ import annotations

import io
import json
import warnings
from typing import Any, Mapping

import numpy as np

from ..api import open as open_sqz
from ..errors import KerasFormatError, UnsafeModelError
from .h5 import read_h5
from .pack import keras_metadata, pack_archive

#: Layer classes whose config carries code that deserialisation would run.
UNSAFE_CLASSES = frozenset({"Lambda"})


def _tf():
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError:
        raise KerasFormatError("rebuilding Keras models needs TensorFlow: pip install 'squeezefmt[keras]'") from None
    return tf


def squeezefmt_custom_objects() -> dict[str, Any]:
    """Keras classes squeezefmt provides (EPR and TT layers), registered under their class names."""
    from . import layers  # noqa: PLC0415

    return layers.custom_objects()


def check_safe(model_config: Any) -> None:
    """Refuse configs whose deserialisation would execute code from the file."""
    stack = [model_config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            cls = item.get("class_name")
            if cls in UNSAFE_CLASSES:
                name = item.get("config", {}).get("name") if isinstance(item.get("config"), dict) else None
                raise UnsafeModelError(
                    f"the model contains a {cls} layer ({name!r}) whose config holds Python bytecode; "
                    "refusing to load it with safe_mode=True. Load with safe_mode=False only if you trust the file."
                )
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _keras_safe_mode(enabled: bool):
    """Keras 2.14's own guard against Lambda bytecode, set to match ``safe_mode``."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope  # noqa: PLC0415
    except ImportError:  # other Keras 2 layouts: no scope to set
        import contextlib

        return contextlib.nullcontext()
    return SafeModeScope(enabled)


def build_model(meta: Mapping[str, Any], *, safe_mode: bool = True, custom_objects: Mapping[str, Any] | None = None):
    """An uninitialised ``tf.keras.Model`` from the stored model config."""
    tf = _tf()
    text = meta.get("model_config")
    if meta.get("kind") != "model" or not text:
        raise KerasFormatError(
            "this container holds weights only (packed from a save_weights .h5); build the model in code "
            "and call squeezefmt.keras.load_weights(model, path)"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KerasFormatError(f"stored model_config is not valid JSON: {exc}") from None
    if safe_mode:
        check_safe(config)
    objects = {**squeezefmt_custom_objects(), **dict(custom_objects or {})}
    try:
        with _keras_safe_mode(safe_mode):
            return tf.keras.models.model_from_json(text, custom_objects=objects)
    except (ValueError, TypeError, KeyError) as exc:
        raise KerasFormatError(f"cannot rebuild the Keras model from its config: {exc}") from exc


def _weighted(layers) -> list:
    return [layer for layer in layers if layer.weights]


def assign_weights(model, meta: Mapping[str, Any], fetch) -> None:
    """Set ``model``'s weights layer by layer, in the order Keras's own .h5 loader uses.

    ``fetch(tensor_name)`` returns the decoded array. Layers are matched by position among the layers
    that have weights, as ``load_weights`` does; weights within a layer follow trainable then
    non-trainable order.
    """
    tf = _tf()
    stored = [layer for layer in meta["layers"] if layer["weights"]]
    targets = _weighted(model.layers)
    if len(stored) != len(targets):
        raise KerasFormatError(
            f"the container has weights for {len(stored)} layers, the model has {len(targets)} layers with weights"
        )
    for layer_meta, layer in zip(stored, targets):
        symbolic = layer.trainable_weights + layer.non_trainable_weights
        if len(symbolic) != len(layer_meta["weights"]):
            raise KerasFormatError(
                f"layer {layer.name!r} expects {len(symbolic)} weights, the container has {len(layer_meta['weights'])}"
            )
        pairs = []
        for var, w in zip(symbolic, layer_meta["weights"]):
            value = fetch(w["tensor"])
            if tuple(var.shape) != tuple(value.shape):
                raise KerasFormatError(
                    f"weight {w['tensor']!r} has shape {value.shape}, layer {layer.name!r} expects {tuple(var.shape)}"
                )
            pairs.append((var, value))
        tf.keras.backend.batch_set_value(pairs)


def load(path, *, lazy: bool = False, safe_mode: bool = True, custom_objects: Mapping[str, Any] | None = None,
         densify: bool = False, cache_bytes: int = 0):
    """Rebuild the Keras model stored in a .sqz container (path, bytes or binary file object).

    ``safe_mode`` (default) refuses Lambda layers, whose config carries Python bytecode. The model is
    returned uncompiled; compile it to train or evaluate.

    Tensor-Train kernels (``tt`` tensors): t3f ``KerasDense`` layers load as ``TTDense`` (no t3f needed)
    and Dense kernels packed with ``--tt-rank``/``--tt-tol`` load as ``TTDense`` layers running on the
    cores; ``densify=True`` loads every TT kernel as a plain ``Dense`` instead (see keras/tt_pack.py).

    ``lazy=True``: the model's layers hold no weights; each weighted layer decodes its tensors from
    the (memory-mapped) container just before it runs and drops them after, so inference needs
    about the compressed file plus the largest layer (see keras/lazy.py). ``cache_bytes`` keeps up
    to that many decoded bytes between calls (LRU by layer). The lazy model is for inference only.
    """
    if lazy:
        from .lazy import load_lazy  # noqa: PLC0415

        return load_lazy(path, safe_mode=safe_mode, custom_objects=custom_objects, densify=densify,
                         cache_bytes=cache_bytes)
    if cache_bytes:
        raise ValueError("cache_bytes applies to lazy=True only")
    from .tt_pack import resolve_weights  # noqa: PLC0415

    with open_sqz(path) as f:
        meta, fetch = resolve_weights(keras_metadata(f), f, "dense" if densify else "tt")
        model = build_model(meta, safe_mode=safe_mode, custom_objects=custom_objects)
        assign_weights(model, meta, fetch)
    return model


def load_weights(model, path) -> None:
    """Set the weights of an existing model from a container (packed from a model or weights .h5)."""
    from .tt_pack import resolve_weights  # noqa: PLC0415

    with open_sqz(path) as f:
        meta, fetch = resolve_weights(keras_metadata(f), f, "stored")  # TT tensors -> cores or dense kernels
        assign_weights(model, meta, fetch)


def to_archive(model, *, include_optimizer: bool = False):
    """The :class:`~squeezefmt.keras.h5.KerasArchive` of an in-memory model (via an in-memory .h5)."""
    tf = _tf()
    import h5py  # noqa: PLC0415

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
        tf.keras.models.save_model(model, h5, save_format="h5", include_optimizer=include_optimizer)
    buf.seek(0)
    with h5py.File(buf, "r") as h5:
        return read_h5(h5, include_optimizer=include_optimizer)


def save(model, target=None, *, preset: str = "lossless", include_optimizer: bool = False,
         codecs=None, metadata=None, progress=None):
    """Store a ``tf.keras.Model`` in a .sqz container; returns bytes when ``target`` is None."""
    archive = to_archive(model, include_optimizer=include_optimizer)
    options = {"preset": preset, "include_optimizer": include_optimizer}
    return pack_archive(archive, target, preset=preset, codecs=codecs, metadata=metadata,
                        options=options, progress=progress)


def predictions_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality of two prediction arrays (used by the demo and tests)."""
    return a.shape == b.shape and bool(np.array_equal(a, b))
