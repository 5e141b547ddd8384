"""Reading and writing Keras 2 .h5 files with h5py alone (no TensorFlow, nothing executed).

Two layouts exist: a full model file (``model.save("m.h5")``: root attributes ``model_config``,
``training_config``, weights under ``model_weights/``, optimizer state under
``optimizer_weights/``) and a weights-only file (``model.save_weights("w.h5")``: the layer groups
at the root). In both, a ``layer_names`` attribute lists the layers in order, each layer group has a
``weight_names`` attribute listing its weights in order, and a weight named ``"dense/kernel:0"``
of layer ``"dense"`` lives at ``<layer>/<weight name>``. Keras splits an attribute larger than HDF5's
64 KiB attribute limit into ``name0``, ``name1``, ...; both directions handle that.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ...errors import KerasFormatError
from ..archive import KerasArchive, layer_entries, parse_config

# HDF5 object headers cannot hold attributes larger than 64 KiB.
_HDF5_ATTR_LIMIT = 64512


def _require_h5py():
    try:
        import h5py  # noqa: PLC0415
    except ImportError:
        raise KerasFormatError("reading Keras .h5 files needs h5py: pip install 'squeezefmt[cli]'") from None
    return h5py


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


def read_attr_strings(group, name: str) -> list[str]:
    """A list-of-strings attribute, joining Keras's ``name0``, ``name1``... chunks."""
    if name in group.attrs:
        values = group.attrs[name]
        return [_text(v) for v in np.asarray(values).reshape(-1) if not isinstance(v, float)]
    out, i = [], 0
    while f"{name}{i}" in group.attrs:
        out.extend(_text(v) for v in np.asarray(group.attrs[f"{name}{i}"]).reshape(-1))
        i += 1
    return out


def write_attr_strings(group, name: str, values: list[str]) -> None:
    """Write a list-of-strings attribute the way Keras does (chunked when over the HDF5 limit)."""
    if not values:
        group.attrs[name] = np.asarray([])
        return
    data = np.asarray([v.encode("utf-8") for v in values])
    chunks = 1
    while data.nbytes / chunks > _HDF5_ATTR_LIMIT:
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{i}"] = part


def _config_classes(model_config: str | None) -> dict[str, str]:
    """Layer name -> class name, from a model config (top level and nested models)."""
    if not model_config:
        return {}
    entries = layer_entries(parse_config(model_config))
    return {name: found[0]["class_name"] for name, found in entries.items()}


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_h5(source, *, include_optimizer: bool = False) -> KerasArchive:
    """Read a Keras 2 .h5 file (path or open ``h5py.File``) without TensorFlow."""
    h5py = _require_h5py()
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(source)
        try:
            f = h5py.File(source, "r")
        except OSError as exc:
            raise KerasFormatError(f"{os.fspath(source)!r} is not an HDF5 file: {exc}") from None
        digest = _sha256_file(source)
    else:
        f, digest = source, None
    try:
        return _read_open(f, include_optimizer, digest)
    finally:
        if f is not source:
            f.close()


def _read_open(f, include_optimizer: bool, digest: str | None) -> KerasArchive:
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        kind, weights_root = "weights", f
    elif "model_weights" in f:
        kind, weights_root = "model", f["model_weights"]
    elif "_layer_checkpoint_dependencies" in f or "vars" in f:
        raise KerasFormatError(
            "this is a Keras 3-style weights file (what Keras 2.14 writes for names ending in '.weights.h5'), "
            "not the Keras 2 .h5 layout: save the full model with model.save('m.h5'), or the weights under a "
            "name not ending in '.weights.h5'"
        )
    else:
        raise KerasFormatError("not a Keras .h5 file: no 'model_weights' group and no 'layer_names' attribute")
    model_config = _text(f.attrs["model_config"]) if "model_config" in f.attrs else None
    # the training config (loss, metrics, optimizer settings) goes with the optimizer state: only on request
    training_config = (_text(f.attrs["training_config"])
                       if include_optimizer and "training_config" in f.attrs else None)
    classes = _config_classes(model_config)
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for layer_name in read_attr_strings(weights_root, "layer_names"):
        if layer_name not in weights_root:
            raise KerasFormatError(f"layer {layer_name!r} is listed in layer_names but has no group")
        group = weights_root[layer_name]
        weights = []
        for wname in read_attr_strings(group, "weight_names"):
            if wname not in group:
                raise KerasFormatError(f"weight {wname!r} of layer {layer_name!r} is missing")
            tensor = f"{layer_name}/{wname}"
            if tensor in arrays:
                raise KerasFormatError(f"weight {tensor!r} appears twice")
            arrays[tensor] = np.asarray(group[wname][()])
            weights.append({"name": wname, "tensor": tensor})
        layers.append({"name": layer_name, "class_name": classes.get(layer_name), "weights": weights})
    optimizer = None
    if include_optimizer and "optimizer_weights" in f:
        optimizer = []
        group = f["optimizer_weights"]
        for wname in read_attr_strings(group, "weight_names"):
            tensor = f"optimizer/{wname}"
            if tensor in arrays or wname not in group:
                raise KerasFormatError(f"optimizer weight {wname!r} is missing or clashes with a layer weight")
            arrays[tensor] = np.asarray(group[wname][()])
            optimizer.append({"name": wname, "tensor": tensor})
    return KerasArchive(
        kind=kind, arrays=arrays, layers=layers, model_config=model_config,
        training_config=training_config,
        keras_version=_text(f.attrs.get("keras_version", weights_root.attrs.get("keras_version", ""))) or None,
        backend=_text(f.attrs.get("backend", weights_root.attrs.get("backend", ""))) or None,
        optimizer=optimizer, source_sha256=digest,
    )


def write_h5(target, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write a Keras 2 .h5 file from stored metadata and decoded tensors (inverse of :func:`read_h5`)."""
    h5py = _require_h5py()
    with h5py.File(target, "w") as f:
        for key in ("backend", "keras_version"):
            if meta.get(key):
                f.attrs[key] = meta[key]
        if meta.get("kind") == "model":
            if meta.get("model_config") is None:
                raise KerasFormatError("stored model has no model_config")
            f.attrs["model_config"] = meta["model_config"]
            if meta.get("training_config"):
                f.attrs["training_config"] = meta["training_config"]
            root = f.create_group("model_weights")
            for key in ("backend", "keras_version"):
                if meta.get(key):
                    root.attrs[key] = meta[key]
        else:
            root = f
        write_attr_strings(root, "layer_names", [layer["name"] for layer in meta["layers"]])
        for layer in meta["layers"]:
            group = root.create_group(layer["name"])
            write_attr_strings(group, "weight_names", [w["name"] for w in layer["weights"]])
            for w in layer["weights"]:
                group.create_dataset(w["name"], data=arrays[w["tensor"]])
        if meta.get("optimizer"):
            group = f.create_group("optimizer_weights")
            write_attr_strings(group, "weight_names", [w["name"] for w in meta["optimizer"]])
            for w in meta["optimizer"]:
                group.create_dataset(w["name"], data=arrays[w["tensor"]])
