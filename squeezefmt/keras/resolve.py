"""Load side: the stored Keras metadata -> one record per Keras weight, and a way to fetch each.

Most containers store one tensor per Keras weight and need nothing here. Tensor-Train tensors do:
a TT layer's cores are stored as ONE ``tt`` tensor (see :mod:`.transforms.tt`), and a Dense kernel
packed with TT-SVD is a ``tt`` tensor that can load either as a dense kernel or as a ``TTDense``
layer. :func:`resolve_weights` expands them for one of three modes:

* ``"stored"``: the architecture as packed: TT layers get their cores, TT-coded Dense kernels their
  dense matrix (``unpack``, ``load_weights``).
* ``"tt"`` (``load`` default): as stored, and every ``Dense`` whose kernel is a ``tt`` tensor
  becomes a ``TTDense`` running on the cores (runtime memory of the cores, not the matrix).
* ``"dense"`` (``load(densify=True)``): every TT matrix becomes a plain ``Dense`` kernel, TT layers
  included, so the model has only standard layers.

Each layer kind that needs resolving has one handler (:meth:`Resolver.tt_layer`,
:meth:`Resolver.tt_kernel_dense`); every other layer is left as stored.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..codecs.tt import is_tt, read_tt
from ..errors import KerasFormatError
from ..tt_math import TTMatrix
from .archive import layer_entries, parse_config, weight_role
from .transforms.tt import TT_LAYER_CLASSES

MODES = ("stored", "tt", "dense")
_BASE_KEYS = ("name", "trainable", "dtype", "batch_input_shape")


def dense_to_tt_config(cfg: Mapping[str, Any], tt: TTMatrix) -> dict[str, Any]:
    out = {k: cfg[k] for k in _BASE_KEYS if k in cfg}
    out.update({"input_dims": tt.input_dims, "output_dims": tt.output_dims, "tt_rank": tt.ranks,
                "activation": cfg.get("activation"), "use_bias": bool(cfg.get("use_bias", True)),
                "bias_initializer": 0.0})
    return out


def tt_to_dense_config(cfg: Mapping[str, Any], tt_shape: tuple[int, int]) -> dict[str, Any]:
    out = {k: cfg[k] for k in _BASE_KEYS if k in cfg}
    out.update({"units": int(tt_shape[1]), "activation": cfg.get("activation") or "linear",
                "use_bias": bool(cfg.get("use_bias", True))})
    return out


def _set_class(entry: dict, class_name: str, config: dict) -> None:
    entry["class_name"] = class_name
    entry["config"] = config
    entry.pop("module", None)
    entry.pop("registered_name", None)


def _has_tt(layers: list, f) -> bool:
    weights = [w for layer in layers for w in layer.get("weights", []) if isinstance(w, dict)]
    return any("tt_cores" in w for w in weights) or any(is_tt(f, w.get("tensor")) for w in weights)


class Resolver:
    """Derived weight keys of one open container: TT cores and dense TT matrices, decoded on demand."""

    def __init__(self, f):
        self.f = f
        self._cache: dict[str, TTMatrix] = {}
        self._getters: dict[str, Callable[[], np.ndarray]] = {}

    def tt_of(self, tensor: str) -> TTMatrix:
        if tensor not in self._cache:
            self._cache[tensor] = read_tt(self.f, tensor)
        return self._cache[tensor]

    def _new_key(self, base: str) -> str:
        key, i = base, 0
        while key in self._getters or key in self.f:
            i += 1
            key = f"{base}#{i}"
        return key

    def core_records(self, tensor: str, names: Sequence[str], paths: Sequence[str] | None = None) -> list[dict]:
        """One record per core of ``tensor``; ``paths``: the cores' Keras 3 file paths, when packed from one."""
        tt = self.tt_of(tensor)
        if len(names) != len(tt.cores) or (paths is not None and len(paths) != len(tt.cores)):
            raise KerasFormatError(f"tensor {tensor!r} has {len(tt.cores)} TT cores, its layer lists {len(names)}")
        out = []
        for k, wname in enumerate(names):
            key = self._new_key(f"{tensor}#core_{k}")
            self._getters[key] = (lambda t=tensor, k=k: self.tt_of(t).cores[k])
            out.append({"name": wname, "tensor": key} if paths is None else
                       {"name": wname, "tensor": key, "path": paths[k]})
        return out

    def dense_record(self, tensor: str, wname: str) -> dict:
        key = self._new_key(f"{tensor}#dense")
        self._getters[key] = lambda t=tensor: self.tt_of(t).full()
        return {"name": wname, "tensor": key}

    def fetch(self, key: str) -> np.ndarray:
        getter = self._getters.get(key)
        return getter() if getter is not None else self.f.tensor(key)

    # -- one handler per layer kind: return True when the model config changed ----------------------
    def tt_layer(self, layer: dict, entry: dict | None, mode: str) -> bool:
        """A TT layer (t3f ``KerasDense``, ``TTDense``) stored as one grouped ``tt`` tensor."""
        weights = layer.get("weights", [])
        grouped = [w for w in weights if isinstance(w, dict) and "tt_cores" in w]
        if len(grouped) != 1 or weights[0] is not grouped[0] or not isinstance(grouped[0]["tt_cores"], list) \
                or not all(isinstance(n, str) for n in grouped[0]["tt_cores"]) or not is_tt(self.f, grouped[0].get("tensor")):
            raise KerasFormatError(f"layer {layer['name']!r}: malformed TT weight record in the Keras metadata")
        rec = grouped[0]
        if mode == "dense" and entry is not None and entry.get("class_name") in TT_LAYER_CLASSES:
            _set_class(entry, "Dense", tt_to_dense_config(entry["config"], self.tt_of(rec["tensor"]).shape))
            layer["class_name"] = "Dense"
            layer["weights"] = [self.dense_record(rec["tensor"], "kernel:0")] + weights[1:]
            return True
        paths = rec.get("tt_paths")
        if paths is not None and (not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)):
            raise KerasFormatError(f"layer {layer['name']!r}: malformed TT weight record in the Keras metadata")
        layer["weights"] = self.core_records(rec["tensor"], rec["tt_cores"], paths) + weights[1:]
        return False

    def tt_kernel_dense(self, layer: dict, entry: dict) -> bool:
        """A ``Dense`` layer whose kernel was packed with TT-SVD, loaded as a ``TTDense`` (mode ``"tt"``)."""
        weights = layer["weights"]
        kernel = weights[0]
        tt = self.tt_of(kernel["tensor"])
        _set_class(entry, "TTDense", dense_to_tt_config(entry["config"], tt))
        layer["class_name"] = "TTDense"
        prefix = kernel["name"].rpartition("/")[0]
        names = [f"{prefix + '/' if prefix else ''}core_{k}:0" for k in range(len(tt.cores))]
        layer["weights"] = self.core_records(kernel["tensor"], names) + weights[1:]
        return True

    def _is_tt_kernel_dense(self, layer: dict, entry: dict | None) -> bool:
        weights = layer.get("weights", [])
        return entry is not None and entry.get("class_name") == "Dense" and bool(weights) \
            and weight_role(weights[0]["name"]) == "kernel" and is_tt(self.f, weights[0]["tensor"])

    def resolve_layer(self, layer: dict, entry: dict | None, mode: str) -> bool:
        if any(isinstance(w, dict) and "tt_cores" in w for w in layer.get("weights", [])):
            return self.tt_layer(layer, entry, mode)
        if mode == "tt" and self._is_tt_kernel_dense(layer, entry):
            return self.tt_kernel_dense(layer, entry)
        return False


def resolve_weights(meta: Mapping[str, Any], f, mode: str = "stored") -> tuple[dict[str, Any], Callable[[str], np.ndarray]]:
    """Expand the TT records of the Keras metadata into one record per Keras weight (see the module doc).

    Returns ``(meta, fetch)``: a copy of ``meta`` in which every weight record names a key that
    ``fetch(key)`` decodes (TT cores, dense matrices or plain tensors), and in which the model config
    is rewritten for ``mode``. Containers without TT tensors come back unchanged with ``fetch = f.tensor``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not _has_tt(meta.get("layers") or [], f):
        return dict(meta), f.tensor
    meta = copy.deepcopy(dict(meta))
    config = None
    if mode != "stored" and meta.get("kind") == "model" and meta.get("model_config"):
        config = parse_config(meta["model_config"], "stored model_config")
    entries = layer_entries(config) if config is not None else {}
    resolver = Resolver(f)
    changed = False
    for layer in meta["layers"]:
        found = entries.get(layer["name"], [])
        changed |= resolver.resolve_layer(layer, found[0] if len(found) == 1 else None, mode)
    if changed:
        meta["model_config"] = json.dumps(config)
    return meta, resolver.fetch


def weight_arrays(meta: Mapping[str, Any], fetch) -> dict[str, np.ndarray]:
    """Every weight (and optimizer) array the expanded ``meta`` names, keyed by its ``tensor``."""
    names = [w["tensor"] for layer in meta["layers"] for w in layer["weights"]]
    names += [w["tensor"] for w in meta.get("optimizer") or []]
    return {n: fetch(n) for n in names}
