"""Keras models from .sqz containers (``load``, ``load_weights``) and into them (``save``).

Imports TensorFlow lazily, on first use (through :mod:`.rebuild`).
"""
from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

from ..api import open as open_sqz
from ..errors import KerasFormatError
from .archive import keras_metadata
from .compat import numpy_dtype as _numpy_dtype
from .formats.h5 import read_h5
from .pack import pack_archive
from .rebuild import build_model, check_safe, import_tf, squeezefmt_custom_objects  # noqa: F401 - public names
from .resolve import resolve_weights


def _weighted(layers) -> list:
    return [layer for layer in layers if layer.weights]


def matched_layers(model, meta: Mapping[str, Any]) -> list:
    """``(stored layer, model layer, its weights)`` for every stored layer that has weights.

    Layers are matched by position among the layers that have weights (Keras's legacy .h5 rule),
    or, for a Keras 3 ``.weights.h5`` source, by their Keras 3 path (``layers/dense_1``, Keras's rule
    for that format). The weights are listed trainable first, as the container stores them.
    """
    from .compat import is_keras3, keras3_paths, layer_weights  # noqa: PLC0415

    stored = [layer for layer in meta["layers"] if layer["weights"]]
    if (meta.get("keras_v3") or {}).get("match") == "path":
        by_path = keras3_paths(model)
        missing = [s["path"] for s in stored if s.get("path") not in by_path]
        if missing:
            raise KerasFormatError(f"the model has no layer at {missing[0]!r} (Keras 3 weights are matched by path)")
        targets = [by_path[s["path"]] for s in stored]
    else:
        targets = _weighted(model.layers)
    if len(stored) != len(targets):
        raise KerasFormatError(
            f"the container has weights for {len(stored)} layers, the model has {len(targets)} layers with weights"
        )
    out = []
    for layer_meta, layer in zip(stored, targets):
        weights = layer_weights(layer)
        indices = [w.get("index") for w in layer_meta["weights"]]
        if is_keras3() and None not in indices and sorted(indices) == list(range(len(layer.weights))):
            # Keras 3 variable order is known exactly (a .weights.h5 alone does not say which are trainable)
            weights = [layer.weights[i] for i in indices]
        out.append((layer_meta, layer, weights))
    return out


def assign_weights(model, meta: Mapping[str, Any], fetch) -> None:
    """Set ``model``'s weights layer by layer, in the order Keras's own .h5 loader uses.

    ``fetch(tensor_name)`` returns the decoded array. Layers are matched by position among the layers
    that have weights, as ``load_weights`` does; weights within a layer follow trainable then
    non-trainable order. CuDNN-layout LSTM/GRU weights are converted as Keras converts them
    (keras/rnn_convert.py).
    """
    from .rnn_convert import convert_layer_weights  # noqa: PLC0415

    for layer_meta, layer, symbolic in matched_layers(model, meta):
        if len(symbolic) != len(layer_meta["weights"]):
            raise KerasFormatError(
                f"layer {layer.name!r} expects {len(symbolic)} weights, the container has {len(layer_meta['weights'])}"
            )
        values = convert_layer_weights(layer, [fetch(w["tensor"]) for w in layer_meta["weights"]])
        for var, w, value in zip(symbolic, layer_meta["weights"], values):
            if tuple(var.shape) != tuple(value.shape):
                raise KerasFormatError(
                    f"weight {w['tensor']!r} has shape {value.shape}, layer {layer.name!r} expects {tuple(var.shape)}"
                )
        for var, value in zip(symbolic, values):
            var.assign(np.asarray(value, dtype=_numpy_dtype(var.dtype)))


def load(path, *, lazy: bool = False, safe_mode: bool = True, custom_objects: Mapping[str, Any] | None = None,
         densify: bool = False, cache_bytes: int = 0):
    """Rebuild the Keras model stored in a .sqz container (path, bytes or binary file object).

    ``safe_mode`` (default) refuses Lambda layers, whose config carries Python bytecode. The model is
    returned uncompiled; compile it to train or evaluate.

    Tensor-Train kernels (``tt`` tensors): t3f ``KerasDense`` layers load as ``TTDense`` (no t3f needed)
    and Dense kernels packed with ``--tt-rank``/``--tt-tol`` load as ``TTDense`` layers running on the
    cores; ``densify=True`` loads every TT kernel as a plain ``Dense`` instead (see keras/resolve.py).

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
    with open_sqz(path) as f:
        meta, fetch = resolve_weights(keras_metadata(f), f, "dense" if densify else "tt")
        model = build_model(meta, safe_mode=safe_mode, custom_objects=custom_objects)
        assign_weights(model, meta, fetch)
    return model


def load_weights(model, path) -> None:
    """Set the weights of an existing model from a container (packed from a model or weights .h5)."""
    with open_sqz(path) as f:
        meta, fetch = resolve_weights(keras_metadata(f), f, "stored")  # TT tensors -> cores or dense kernels
        assign_weights(model, meta, fetch)


def to_archive(model, *, include_optimizer: bool = False):
    """The :class:`~squeezefmt.keras.archive.KerasArchive` of an in-memory model (via an in-memory .h5)."""
    import h5py  # noqa: PLC0415

    from .compat import save_h5  # noqa: PLC0415

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        save_h5(model, h5, include_optimizer)
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
