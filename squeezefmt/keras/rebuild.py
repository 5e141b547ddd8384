"""Rebuilding a Keras model (tf.keras 2 or Keras 3) from stored metadata: safe mode, custom objects, ``build_model``.

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


def build_model(meta: Mapping[str, Any], *, safe_mode: bool = True, custom_objects: Mapping[str, Any] | None = None):
    """An uninitialised Keras model from the stored model config (tf.keras 2 or Keras 3, see compat.py)."""
    from .compat import model_from_config  # noqa: PLC0415

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
        return model_from_config(config, objects, safe_mode)
    except (ValueError, TypeError, KeyError) as exc:
        raise KerasFormatError(f"cannot rebuild the Keras model from its config: {exc}") from exc
