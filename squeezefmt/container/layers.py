"""Layer-level access to an open container: tensors grouped into layers, decoded one layer at a time.

A *layer* is a named, ordered group of tensors. The container does not know what wrote it: the
grouping is a callback it is given (``SqzFile(..., grouping=fn)``; ``squeezefmt.open`` passes the
one for squeezefmt's Keras metadata, :func:`squeezefmt.keras.archive.layer_groups`).

* ``grouping(metadata)`` returns ``[(layer name, class name or None, [(tensor, weight name), ...])]``
  in model order (or nothing); those layers come first, their tensors in the order given. The
  container checks that every tensor exists and belongs to one layer, and that names are unique.
* Every other tensor is grouped by the part of its name before the first ``"/"`` (``"conv/kernel"``
  and ``"conv/bias"`` form layer ``"conv"``; a name without ``"/"`` is a layer of its own; a
  leftover tensor whose prefix names a layer of the callback stays apart). These layers come in the
  order of their first tensor in the file.

Every method here is numpy-only. Decoding a layer reads, checksums and decodes that layer's streams
only; for a memory-mapped path nothing else of the file is read or copied, so the memory a decode
needs is bounded by the tensors it returns (plus one tensor's worth of codec scratch space).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import HeaderError
from .header import TensorEntry

#: One layer as a grouping callback describes it: (name, class name, [(tensor, weight name)]).
LayerGroup = tuple[str, "str | None", Sequence[tuple[str, str]]]
#: ``grouping(metadata) -> layers`` (see the module doc).
Grouping = Callable[[Mapping[str, Any]], "Sequence[LayerGroup] | None"]


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """What the header says about one layer (nothing is decoded to produce it)."""

    name: str
    class_name: str | None      # e.g. the Keras class name; None for prefix-grouped layers
    tensors: tuple[str, ...]    # tensor names, in the layer's weight order
    weight_names: tuple[str, ...]  # weight names ("dense/kernel:0"), or the tensor names
    nbytes: int                 # decoded size of all its tensors
    stored_bytes: int           # bytes of their streams in the file


def prefix_group(name: str) -> str:
    """The layer a tensor of a plain container belongs to: its name up to the first ``"/"``."""
    return name.split("/", 1)[0]


def group_layers(entries: Mapping[str, TensorEntry], metadata: Mapping[str, Any],
                 grouping: Grouping | None = None) -> dict[str, LayerInfo]:
    """Group the tensors of a container into layers (see the module docstring). Validates untrusted metadata."""
    groups: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    for name, cls, weights in (grouping(metadata) if grouping is not None else None) or ():
        if name in groups:
            raise HeaderError(f"layer {name!r} appears twice in the metadata")
        for tensor, _ in weights:
            if tensor not in entries:
                raise HeaderError(f"layer {name!r} names tensor {tensor!r}, which the container does not hold")
            if tensor in claimed:
                raise HeaderError(f"tensor {tensor!r} belongs to two layers in the metadata")
            claimed.add(tensor)
        groups[name] = {"class_name": cls, "tensors": [t for t, _ in weights], "weight_names": [w for _, w in weights]}
    named = set(groups)
    for tensor in entries:
        if tensor in claimed:
            continue
        group = prefix_group(tensor)
        if group in named:  # a leftover tensor whose prefix is a described layer: keep it apart
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
    _grouping: Grouping | None

    def _layer_table(self) -> dict[str, LayerInfo]:
        table = self.__dict__.get("_sqz_layer_table")
        if table is None:
            table = group_layers(self._entries, self._metadata, self._grouping)
            self.__dict__["_sqz_layer_table"] = table
        return table

    def layer_names(self) -> list[str]:
        """Names of the layers that own tensors, in model order (see :mod:`squeezefmt.container.layers`)."""
        return list(self._layer_table())

    def layer_info(self, name: str) -> LayerInfo:
        """Header information about layer ``name`` (its tensors, sizes, class name)."""
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
