"""Layer-level access to an open container: tensors grouped into layers, decoded one layer at a time.

A *layer* is a named, ordered group of tensors. How tensors are grouped:

* **Containers packed from Keras** (metadata ``"keras"``, see :mod:`squeezefmt.keras.pack`): one layer
  per entry of ``metadata()["keras"]["layers"]`` that owns at least one weight, in model order; its
  tensors are listed in Keras's weight order (trainable, then non-trainable), so
  ``list(f.layer(name).values())`` is exactly what ``keras_layer.set_weights`` takes. A nested model
  is one layer (Keras stores it that way). Tensors the Keras metadata does not mention (optimizer
  state) follow, grouped as for plain containers.
* **Plain containers**: tensors are grouped by the part of their name before the first ``"/"``
  (``"conv/kernel"`` and ``"conv/bias"`` form layer ``"conv"``); a name without ``"/"`` is a layer of
  its own. Layers come in the order of their first tensor in the file.

Every method here is numpy-only. Decoding a layer reads, checksums and decodes that layer's streams
only; for a memory-mapped path nothing else of the file is read or copied, so the memory a decode
needs is bounded by the tensors it returns (plus one tensor's worth of codec scratch space).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

import numpy as np

from ..errors import HeaderError
from .header import TensorEntry


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """What the header says about one layer (nothing is decoded to produce it)."""

    name: str
    class_name: str | None      # Keras class name, None for plain containers
    tensors: tuple[str, ...]    # tensor names, in the layer's weight order
    weight_names: tuple[str, ...]  # Keras weight names ("dense/kernel:0"), or the tensor names
    nbytes: int                 # decoded size of all its tensors
    stored_bytes: int           # bytes of their streams in the file


def prefix_group(name: str) -> str:
    """The layer a tensor of a plain container belongs to: its name up to the first ``"/"``."""
    return name.split("/", 1)[0]


def group_layers(entries: Mapping[str, TensorEntry], metadata: Mapping[str, Any]) -> dict[str, LayerInfo]:
    """Group the tensors of a container into layers (see the module docstring). Validates untrusted metadata."""
    groups: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    keras = metadata.get("keras") if isinstance(metadata, Mapping) else None
    if isinstance(keras, Mapping) and "layers" in keras:
        layers = keras.get("layers")
        if not isinstance(layers, list):
            raise HeaderError("metadata 'keras.layers' must be a list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping) or not isinstance(layer.get("name"), str):
                raise HeaderError(f"metadata 'keras.layers[{i}]' must be an object with a string 'name'")
            name, weights = layer["name"], layer.get("weights", [])
            cls = layer.get("class_name")
            if not isinstance(weights, list) or (cls is not None and not isinstance(cls, str)):
                raise HeaderError(f"metadata for Keras layer {name!r} is malformed")
            if not weights:
                continue
            if name in groups:
                raise HeaderError(f"Keras layer {name!r} appears twice in the metadata")
            tensors, wnames = [], []
            for w in weights:
                tensor = w.get("tensor") if isinstance(w, Mapping) else None
                wname = w.get("name", tensor) if isinstance(w, Mapping) else None
                if not isinstance(tensor, str) or not isinstance(wname, str):
                    raise HeaderError(f"metadata for Keras layer {name!r}: every weight needs a string 'tensor' and 'name'")
                if tensor not in entries:
                    raise HeaderError(f"Keras layer {name!r} names tensor {tensor!r}, which the container does not hold")
                if tensor in claimed:
                    raise HeaderError(f"tensor {tensor!r} belongs to two layers in the Keras metadata")
                claimed.add(tensor)
                tensors.append(tensor)
                wnames.append(wname)
            groups[name] = {"class_name": cls, "tensors": tensors, "weight_names": wnames}
    keras_names = set(groups)
    for tensor in entries:
        if tensor in claimed:
            continue
        group = prefix_group(tensor)
        if group in keras_names:  # a leftover tensor whose prefix is a Keras layer: keep it apart
            group = tensor
        g = groups.setdefault(group, {"class_name": None, "tensors": [], "weight_names": []})
        g["tensors"].append(tensor)
        g["weight_names"].append(tensor)
    return {
        name: LayerInfo(
            name=name, class_name=g["class_name"], tensors=tuple(g["tensors"]),
            weight_names=tuple(g["weight_names"]),
            nbytes=sum(entries[t].nbytes for t in g["tensors"]),
            stored_bytes=sum(entries[t].stored_bytes for t in g["tensors"]),
        )
        for name, g in groups.items()
    }


class LayerAccessMixin:
    """Layer-level methods of :class:`~squeezefmt.container.SqzFile` (numpy only)::

        with squeezefmt.open("model.sqz") as f:
            for name in f.layer_names():          # model order
                print(name, f.nbytes(name))       # decoded bytes of the whole layer
            weights = f.layer("dense_3")          # {tensor name: array}, Keras weight order
            for name, weights in f.iter_layers(): # one layer decoded at a time
                ...
    """

    # provided by SqzFile
    _entries: dict[str, TensorEntry]
    _metadata: dict[str, Any]

    def _layer_table(self) -> dict[str, LayerInfo]:
        table = self.__dict__.get("_sqz_layer_table")
        if table is None:
            table = group_layers(self._entries, self._metadata)
            self.__dict__["_sqz_layer_table"] = table
        return table

    def layer_names(self) -> list[str]:
        """Names of the layers that own tensors, in model order (see :mod:`squeezefmt.container.layers`)."""
        return list(self._layer_table())

    def layer_info(self, name: str) -> LayerInfo:
        """Header information about layer ``name`` (its tensors, sizes, Keras class)."""
        try:
            return self._layer_table()[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r} in this container") from None

    def layer(self, name: str) -> dict[str, np.ndarray]:
        """Decode every tensor of layer ``name``: ``{tensor name: array}`` in the layer's weight order.

        Only this layer's streams are read and checksummed.
        """
        return {t: self.tensor(t) for t in self.layer_info(name).tensors}  # type: ignore[attr-defined]

    def iter_layers(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        """Yield ``(layer name, weights)`` in model order, decoding one layer per step.

        Nothing is kept between steps: a caller that drops each dict holds one layer at a time.
        """
        for name in self.layer_names():
            yield name, self.layer(name)

    def layer_nbytes(self, name: str) -> int:
        """Decoded size in bytes of all tensors of layer ``name``."""
        return self.layer_info(name).nbytes

    def release(self, name: str) -> None:
        """Advise the OS that the file pages of tensor or layer ``name`` are not needed for now.

        For a memory-mapped path this drops those pages from the process's resident set (they stay
        in the page cache and are mapped again on the next read); for bytes and file objects it does
        nothing. Decoded arrays are unaffected.
        """
        tensors = [name] if name in self._entries else list(self.layer_info(name).tensors)
        release = getattr(self._source, "release", None)  # type: ignore[attr-defined]
        if release is None:
            return
        for t in tensors:
            for s in self._entries[t].streams:
                release(s.offset, s.length)
