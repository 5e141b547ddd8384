"""Which Keras is installed, and the few calls that differ between tf.keras 2.14 and Keras 3.

squeezefmt rebuilds models with whatever Keras the environment has: tf.keras (Keras 2, the
TensorFlow 2.14 world) or Keras 3 (any backend; TensorFlow 2.16+ ships it as ``tf.keras``). Keras 3
configs are translated for Keras 2 where they differ (keras/config_compat.py); Keras 3 reads Keras 2
configs through its own legacy loader, the one ``keras.models.load_model("m.h5")`` uses.
"""
from __future__ import annotations

import contextlib
import functools
import json

import warnings
from typing import Any, Mapping

from ..errors import KerasFormatError


def numpy_dtype(dtype):
    """A Keras variable's dtype as numpy's (a ``tf.DType`` under tf.keras 2, a string under Keras 3)."""
    import numpy as np  # noqa: PLC0415

    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


@functools.lru_cache(maxsize=None)
def _keras3():
    """The ``keras`` package when it is Keras 3, else None."""
    try:
        import keras  # noqa: PLC0415
    except ImportError:
        return None
    version = getattr(keras, "__version__", None) or getattr(keras, "version", lambda: "2")()
    return keras if int(str(version).split(".")[0]) >= 3 else None


def keras_module():
    """The Keras to build models with: Keras 3 when installed, else TensorFlow's tf.keras (Keras 2)."""
    if _keras3() is not None:
        return _keras3()
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError:
        raise KerasFormatError("rebuilding Keras models needs Keras: pip install 'squeezefmt[keras]'") from None
    return tf.keras


def is_keras3() -> bool:
    return _keras3() is not None


def safe_mode_scope(enabled: bool):
    """Keras's own guard against Lambda bytecode (Keras 2.13+ and 3), set to match ``safe_mode``."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope  # noqa: PLC0415
    except ImportError:
        return contextlib.nullcontext()
    return SafeModeScope(enabled)


#: Class names only Keras 3 writes into configs.
_KERAS3_CLASSES = frozenset({"__keras_tensor__", "DTypePolicy", "FloatDTypePolicy", "QuantizedDTypePolicy"})


def is_keras3_config(config: Any) -> bool:
    """True for a config written by Keras 3 (Keras 2.13+ also writes ``module`` keys, so those do not tell)."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            cls = item.get("class_name")
            if cls in _KERAS3_CLASSES:
                return True
            if cls == "InputLayer" and isinstance(item.get("config"), dict) and "batch_shape" in item["config"]:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def model_from_config(config: dict, custom_objects: Mapping[str, Any], safe_mode: bool):
    """A model from its config, with the loader Keras itself uses for that config's format."""
    keras = keras_module()
    with safe_mode_scope(safe_mode):
        if not is_keras3():
            if is_keras3_config(config):
                from .config_compat import to_keras2  # noqa: PLC0415

                config = to_keras2(config)
            return keras.models.model_from_json(json.dumps(config), custom_objects=dict(custom_objects))
        if "module" in config:  # a .keras config.json
            return keras.saving.deserialize_keras_object(config, custom_objects=dict(custom_objects),
                                                         safe_mode=safe_mode)
        if not is_keras3_config(config):  # a Keras 2 config: drop the options Keras 3 no longer has
            from .config_compat import to_keras3  # noqa: PLC0415

            config = to_keras3(config)
        try:  # legacy .h5 configs (Keras 2, or Keras 3's legacy writer): Keras 3's legacy loader
            from keras.src.legacy.saving.saving_utils import model_from_config as legacy  # noqa: PLC0415
        except ImportError:
            return keras.models.model_from_json(json.dumps(config), custom_objects=dict(custom_objects))
        return legacy(config, custom_objects=dict(custom_objects))


def save_h5(model, h5, include_optimizer: bool) -> None:
    """Write ``model`` as a legacy .h5 into an open ``h5py.File`` (Keras 2 and Keras 3)."""
    keras = keras_module()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`")
        if not is_keras3():
            keras.models.save_model(model, h5, save_format="h5", include_optimizer=include_optimizer)
            return
        from keras.src.legacy.saving import legacy_h5_format  # noqa: PLC0415

        legacy_h5_format.save_model_to_hdf5(model, h5, include_optimizer=include_optimizer)


def layer_weights(layer) -> list:
    """``layer``'s weights in the order Keras's legacy .h5 format lists them."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def keras3_paths(model) -> dict[str, Any]:
    """Keras 3 weights-file path (``layers/dense_1``) -> top-level layer of ``model``."""
    from .formats.keras_v3 import layer_paths  # noqa: PLC0415

    layers = [layer for layer in model.layers]
    return dict(zip(layer_paths([type(layer).__name__ for layer in layers]), layers))



