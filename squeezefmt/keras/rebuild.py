"""Rebuilding a ``tf.keras.Model`` from stored metadata: safe mode, custom objects, ``build_model``.

This module imports TensorFlow (lazily, on first use), as do :mod:`.model` and :mod:`.lazy`, which
rebuild through it.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import KerasFormatError, UnsafeModelError
from .archive import parse_config, walk_config

#: Layer classes whose config carries code that deserialisation would run.
UNSAFE_CLASSES = frozenset({"Lambda"})


def import_tf():
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError:
        raise KerasFormatError("rebuilding Keras models needs TensorFlow: pip install 'squeezefmt[keras]'") from None
    return tf


def squeezefmt_custom_objects() -> dict[str, Any]:
    """Keras classes squeezefmt provides (EPR and TT layers), registered under their class names."""
    from .layers import custom_objects  # noqa: PLC0415

    return custom_objects()


def check_safe(model_config: Any) -> None:
    """Refuse configs whose deserialisation would execute code from the file."""
    for item in walk_config(model_config):
        cls = item.get("class_name")
        if cls in UNSAFE_CLASSES:
            name = item.get("config", {}).get("name") if isinstance(item.get("config"), dict) else None
            raise UnsafeModelError(
                f"the model contains a {cls} layer ({name!r}) whose config holds Python bytecode; "
                "refusing to load it with safe_mode=True. Load with safe_mode=False only if you trust the file."
            )


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
    tf = import_tf()
    text = meta.get("model_config")
    if meta.get("kind") != "model" or not text:
        raise KerasFormatError(
            "this container holds weights only (packed from a save_weights .h5); build the model in code "
            "and call squeezefmt.keras.load_weights(model, path)"
        )
    config = parse_config(text, "stored model_config")
    if safe_mode:
        check_safe(config)
    objects = {**squeezefmt_custom_objects(), **dict(custom_objects or {})}
    try:
        with _keras_safe_mode(safe_mode):
            return tf.keras.models.model_from_json(text, custom_objects=objects)
    except (ValueError, TypeError, KeyError) as exc:
        raise KerasFormatError(f"cannot rebuild the Keras model from its config: {exc}") from exc
