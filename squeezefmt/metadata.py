"""Container metadata keys that the library itself interprets (spec/format.md, "Metadata").

Today one: the ``"keras"`` object that :mod:`squeezefmt.keras` writes, whose ``layers`` list gives
the container's layer grouping (:func:`layer_groups`, the callback ``squeezefmt.open`` hands the
container; see :mod:`squeezefmt.container.layers`). Numpy only; nothing here imports Keras.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import HeaderError


def layer_groups(metadata: Mapping[str, Any]) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """The container's layer grouping for Keras metadata (the callback ``squeezefmt.open`` passes).

    One group per stored layer that owns weights, in model order, tensors in Keras's weight order
    (what ``keras_layer.set_weights`` takes). Checks the untrusted metadata's shape; the container
    checks that the tensors exist and belong to one layer each.
    """
    keras = metadata.get("keras") if isinstance(metadata, Mapping) else None
    if not isinstance(keras, Mapping) or "layers" not in keras:
        return []
    layers = keras.get("layers")
    if not isinstance(layers, list):
        raise HeaderError("metadata 'keras.layers' must be a list")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping) or not isinstance(layer.get("name"), str):
            raise HeaderError(f"metadata 'keras.layers[{i}]' must be an object with a string 'name'")
        name, weights, cls = layer["name"], layer.get("weights", []), layer.get("class_name")
        if not isinstance(weights, list) or (cls is not None and not isinstance(cls, str)):
            raise HeaderError(f"metadata for Keras layer {name!r} is malformed")
        pairs = []
        for w in weights:
            tensor = w.get("tensor") if isinstance(w, Mapping) else None
            wname = w.get("name", tensor) if isinstance(w, Mapping) else None
            if not isinstance(tensor, str) or not isinstance(wname, str):
                raise HeaderError(f"metadata for Keras layer {name!r}: every weight needs a string 'tensor' and 'name'")
            pairs.append((tensor, wname))
        if pairs:
            out.append((name, cls, pairs))
    return out
