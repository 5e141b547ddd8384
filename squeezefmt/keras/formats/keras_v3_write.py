"""Writing Keras 3 files back from a container packed from one (h5py/zipfile only).

The inverse of formats/keras_v3.py: the weights file gets every ``.../vars`` group the source had
(with its ``name`` attribute, in the source's order) and every weight at its source path; a
``.keras`` archive gets the stored ``config.json`` and ``metadata.json`` beside it. Keras's own
``load_model``/``load_weights`` read the result.
"""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Mapping

import numpy as np

from ...errors import KerasFormatError
from .h5 import _require_h5py
from .keras_v3 import CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME


def _source(meta: Mapping[str, Any]) -> dict[str, Any]:
    v3 = meta.get("keras_v3")
    if not isinstance(v3, dict) or not isinstance(v3.get("groups"), list):
        raise KerasFormatError("this container was not packed from a Keras 3 file; unpack it to a .h5")
    return v3


def write_weights(target, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """A Keras 3 weights file (``.weights.h5`` layout) at ``target`` (path or binary file object)."""
    h5py = _require_h5py()
    groups = _source(meta)["groups"]
    weights = [w for layer in meta["layers"] for w in layer["weights"]] + list(meta.get("optimizer") or [])
    with h5py.File(target, "w") as f:
        for path, name in groups:
            group = f.require_group(path)
            if name:
                group.attrs["name"] = name
        for w in weights:
            if not isinstance(w.get("path"), str):
                raise KerasFormatError(f"weight {w.get('tensor')!r} has no Keras 3 path in the container's metadata")
        for w in sorted(weights, key=lambda w: w["path"]):
            f.create_dataset(w["path"], data=arrays[w["tensor"]])


def write_keras_zip(target, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """A ``.keras`` archive (config.json, metadata.json, model.weights.h5) at ``target``."""
    v3 = _source(meta)
    if v3.get("format") != "keras" or not meta.get("model_config"):
        raise KerasFormatError("this container was packed from Keras 3 weights only; unpack it to a .weights.h5")
    metadata = v3.get("metadata") or json.dumps({"keras_version": meta.get("keras_version")})
    buf = io.BytesIO()
    write_weights(buf, meta, arrays)
    with zipfile.ZipFile(target, "w") as z:
        z.writestr(METADATA_NAME, metadata)
        z.writestr(CONFIG_NAME, meta["model_config"])
        z.writestr(WEIGHTS_NAME, buf.getvalue())
