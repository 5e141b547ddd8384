"""What squeezefmt keeps of a Keras model, independent of the file it came from (numpy only).

* :class:`KerasArchive`: the weights in file order, the layer -> weight order, the model config
  (JSON text, verbatim) and the optimizer state when kept. Readers in :mod:`.formats` produce it,
  transforms in :mod:`.transforms` rewrite it, :mod:`.pack` stores it.
* The metadata schema: the container stores :meth:`KerasArchive.metadata` under ``"keras"``;
  :func:`keras_metadata` reads and checks it. Schema version 1 (squeezefmt 0.1) has no
  ``"version"`` field, which keeps those containers byte-identical; a later, incompatible schema
  writes ``"version": N`` and older readers refuse it with a clear error.
* The container's layer grouping for this metadata (``f.layer(name)``) is
  :func:`squeezefmt.metadata.layer_groups` (numpy only, used by ``squeezefmt.open``).
* :func:`weight_role` and :func:`layer_entries`, the one walk over a model config's layer tree.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator

from ..errors import KerasFormatError
from ..presets import TensorContext

#: The metadata schema this version writes and reads (a missing "version" field means 1).
METADATA_VERSION = 1


@dataclasses.dataclass
class KerasArchive:
    """The contents of a Keras model or weights file, as squeezefmt stores them."""

    kind: str                                  # "model" or "weights"
    arrays: dict[str, Any]                     # tensor name -> numpy array (or PreEncoded), in file order
    layers: list[dict[str, Any]]               # [{"name", "class_name", "weights": [{"name", "tensor"}]}]
    model_config: str | None = None            # JSON text, verbatim
    training_config: str | None = None         # JSON text, verbatim
    keras_version: str | None = None
    backend: str | None = None
    optimizer: list[dict[str, str]] | None = None  # [{"name", "tensor"}] when optimizer state is kept
    source_sha256: str | None = None
    keras_v3: dict[str, Any] | None = None     # Keras 3 sources: format, h5 groups (formats/keras_v3.py)

    def metadata(self) -> dict[str, Any]:
        """The ``"keras"`` metadata object (schema :data:`METADATA_VERSION`)."""
        meta = {
            "kind": self.kind, "layers": self.layers, "model_config": self.model_config,
            "training_config": self.training_config, "keras_version": self.keras_version,
            "backend": self.backend,
        }
        if self.optimizer is not None:
            meta["optimizer"] = self.optimizer
        if self.keras_v3 is not None:
            meta["keras_v3"] = self.keras_v3
        return meta

    def layer_classes(self) -> dict[str, str]:
        return {layer["name"]: layer.get("class_name") for layer in self.layers}

    def contexts(self) -> dict[str, TensorContext]:
        """Per tensor what the presets may know: the layer class and the weight role."""
        out = {}
        for layer in self.layers:
            for w in layer["weights"]:
                role = w["role"] if "role" in w else weight_role(w["name"])  # Keras 3 files: None when unknown
                out[w["tensor"]] = TensorContext(layer_class=layer.get("class_name"), role=role)
        for w in self.optimizer or []:
            out[w["tensor"]] = TensorContext(layer_class=None, role="optimizer")
        return out


def keras_metadata(f) -> dict[str, Any]:
    """The ``"keras"`` metadata of an open container, or a clear error when it has none or a newer schema."""
    meta = f.metadata().get("keras")
    if not isinstance(meta, dict) or not isinstance(meta.get("layers"), list):
        raise KerasFormatError("this container holds no Keras model (no 'keras' metadata); use squeezefmt.open()")
    version = meta.get("version", 1)
    if version != METADATA_VERSION:
        raise KerasFormatError(f"the container's Keras metadata has schema version {version!r}; this squeezefmt "
                               f"reads version {METADATA_VERSION} (upgrade squeezefmt)")
    return meta


def weight_role(weight_name: str) -> str:
    """``"dense/kernel:0"`` -> ``"kernel"``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def parse_config(text: str, what: str = "model_config") -> Any:
    """A model config's JSON text, parsed (a clear error when it is not JSON)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KerasFormatError(f"{what} is not valid JSON: {exc}") from None


def walk_config(config: Any) -> Iterator[dict]:
    """Every object of a parsed model config, depth first (nested models, wrappers, cells included)."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def layer_entries(config: Any) -> dict[str, list[dict]]:
    """Layer name -> the config entries (``{"class_name", "config", ...}``) with that name, in walk order."""
    found: dict[str, list[dict]] = {}
    for item in walk_config(config):
        inner = item.get("config")
        if "class_name" in item and isinstance(inner, dict) and isinstance(inner.get("name"), str):
            found.setdefault(inner["name"], []).append(item)
    return found
