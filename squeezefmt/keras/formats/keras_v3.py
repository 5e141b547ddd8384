"""Keras 3 files read with zipfile and h5py alone (no Keras import, nothing executed).

Two Keras 3 layouts hold weights:

* a ``.keras`` archive: a zip with ``metadata.json`` (Keras version), ``config.json`` (the model
  config, Keras 3 serialization) and ``model.weights.h5``;
* a ``.weights.h5`` file (``model.save_weights``): that same weights file on its own.

In the weights file every object that owns variables has a group ``<path>/vars`` holding datasets
``"0"``, ``"1"``, ... in the order the object created them (trainable before non-trainable), and, since
Keras 3.x, an attribute ``name`` with the layer name. Paths do not use layer names: the layers of a
model live under ``layers/<snake_case class name>[_<k>]`` (``dense``, ``dense_1``, ... counted per class
in model order), sublayers under the attribute that holds them (``cell``, ``forward_layer``, a nested
model's ``layers/...``), the optimizer under ``optimizer``.

:func:`read_keras_zip` and :func:`read_weights_h5` return the same :class:`KerasArchive` as the
Keras 2 reader: the top-level layers in model order, each with its weights in the order Keras lists
them (``layer.trainable_weights + layer.non_trainable_weights``: own variables, then sublayers',
trainable first) under Keras-style names (``"encoder/enc_bn/gamma"``), so a Keras 3 model packs into
the same layout as the legacy ``.h5`` Keras 3 writes for it. The Keras 3 paths are kept in the
metadata (``weights[i]["path"]``, ``keras_v3["groups"]``) so ``unpack`` can write the ``.keras`` back.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any

import numpy as np

from ...errors import KerasFormatError
from ..archive import KerasArchive
from .h5 import _require_h5py, _sha256_file, _text

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME = "config.json", "metadata.json", "model.weights.h5"
#: Largest ``config.json``/``metadata.json`` read from an archive.
MAX_JSON_BYTES = 64 << 20
#: A weights member expanding more than this ratio, and to more than the floor, is refused (as Keras does).
MAX_EXPANSION, MAX_EXPANSION_FLOOR = 100, 1 << 32

#: Variable names of the layers whose variables are known, in creation order (Keras 3).
_ROLES = {
    **{c: ["kernel", "bias"] for c in (
        "Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
        "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D")},
    "SeparableConv1D": ["depthwise_kernel", "pointwise_kernel", "bias"],
    "SeparableConv2D": ["depthwise_kernel", "pointwise_kernel", "bias"],
    "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
    "LayerNormalization": ["gamma", "beta"],
    "Embedding": ["embeddings"],
    "LSTMCell": ["kernel", "recurrent_kernel", "bias"],
    "GRUCell": ["kernel", "recurrent_kernel", "bias"],
    "SimpleRNNCell": ["kernel", "recurrent_kernel", "bias"],
    "PReLU": ["alpha"],
}
#: squeezefmt's Tensor-Train layer (keras/tt_layer.py), as Keras 3 configs name it.
_TT_CLASSES = frozenset({"TTDense", "squeezefmt>TTDense"})
#: Config flags that drop a variable when false.
_OPTIONAL = {"use_bias": "bias", "scale": "gamma", "center": "beta"}
#: Layers whose own variables are all or partly non-trainable: count of trailing non-trainable ones.
_NON_TRAINABLE_TAIL = {"BatchNormalization": 2}
_ALL_NON_TRAINABLE = frozenset({"Normalization"})
#: Sublayer attributes in the order the layer tracks them (Keras lists their variables in this order;
#: the file stores them sorted by attribute name).
_CHILD_ORDER = {
    "Bidirectional": ["forward_layer", "backward_layer"],
    "MultiHeadAttention": ["_query_dense", "_key_dense", "_value_dense", "_output_dense"],
}
#: The cell class of the built-in recurrent layers.
_CELLS = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "SimpleRNNCell"}


def sniff(path) -> str:
    """``"keras_zip"``, ``"h5"`` or ``"unknown"``, from the first bytes of the file at ``path``."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(ZIP_MAGIC):
        return "keras_zip"
    if head == HDF5_MAGIC:
        return "h5"
    return "unknown"


def describe(path) -> str | None:
    """A one-line description of a Keras file at ``path`` (for commands that expect a container), or None."""
    kind = sniff(path)
    if kind == "keras_zip":
        return "this is a Keras 3 .keras archive, not a .sqz container; pack it with: squeezefmt pack MODEL.keras OUT.sqz"
    if kind == "h5":
        return ("this is an HDF5 file (a Keras .h5 model or weights), not a .sqz container; "
                "pack it with: squeezefmt pack FILE.h5 OUT.sqz")
    return None


def sniff_keras3_weights(head: bytes, path: str) -> bool:
    """The :func:`~squeezefmt.keras.formats.register_reader` test for a Keras 3 ``.weights.h5``."""
    if not head.startswith(HDF5_MAGIC):
        return False
    h5py = _require_h5py()
    try:
        with h5py.File(path, "r") as f:
            return is_keras3_weights(f)
    except OSError:
        return False


def is_keras3_weights(f) -> bool:
    """True when an open h5py file has the Keras 3 ``layers/.../vars`` layout (no ``layer_names``)."""
    return ("layer_names" not in f.attrs and "layer_names0" not in f.attrs and "model_weights" not in f
            and ("layers" in f or "vars" in f) and "_layer_checkpoint_dependencies" not in f)


def to_snake_case(name: str) -> str:
    """Keras 3's ``naming.to_snake_case``: how a class name becomes a path component."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_paths(class_names: list[str]) -> list[str]:
    """The ``layers/...`` group of each layer of a model, given the layers' class names in order."""
    used: dict[str, int] = {}
    out = []
    for cls in class_names:
        snake = to_snake_case(cls)
        if snake in used:
            used[snake] += 1
            snake = f"{snake}_{used[snake]}"
        else:
            used[snake] = 0
        out.append(f"layers/{snake}")
    return out


def _natural(name: str):
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    return (m.group(1), int(m.group(2) or -1))


def _vars_name(group) -> str | None:
    if "vars" in group and "name" in group["vars"].attrs:
        return _text(group["vars"].attrs["name"])
    return None


def _class_from_group(key: str, group) -> str | None:
    """A class name guessed from a path component or the vars ``name`` (no config at hand)."""
    snake = _natural(key)[0] if key != "cell" else re.sub(r"_\d+$", "", _vars_name(group) or "")
    for cls in list(_ROLES) + list(_CELLS) + ["Bidirectional", "Functional", "Sequential"]:
        if to_snake_case(cls) == snake:
            return cls
    return None


def _roles(cls: str | None, cfg: dict | None, n: int) -> list[str | None]:
    inner = (cfg or {}).get("config", {}) if isinstance(cfg, dict) else {}
    if cls in _TT_CLASSES:  # squeezefmt's TTDense: one core per input dimension, then the bias
        dims = inner.get("input_dims")
        names = [f"core_{k}" for k in range(len(dims) if isinstance(dims, list) else 0)] + ["bias"]
    else:
        names = list(_ROLES.get(cls or "", []))
    for flag, role in _OPTIONAL.items():
        if inner.get(flag) is False and role in names:
            names.remove(role)
    return names if len(names) == n else [None] * n


def _read_dataset(ds) -> np.ndarray:
    a = np.asarray(ds[()])
    if "dtype" in ds.attrs and _text(ds.attrs["dtype"]) == "bfloat16" and a.dtype.itemsize == 2:
        from ...dtypes import numpy_dtype  # noqa: PLC0415

        a = a.view(numpy_dtype("bfloat16"))
    return a


class _Walker:
    """Collects a layer's variables (Keras order) from its group, with names, roles and trainability."""

    def __init__(self, arrays: dict[str, np.ndarray], groups: list[list[str]]):
        self.arrays = arrays
        self.groups = groups

    def own(self, group, path, cls, cfg, trainable, chain) -> list[dict[str, Any]]:
        if "vars" not in group:
            return []
        vars_group = group["vars"]
        self.groups.append([f"{path}/vars" if path else "vars", _vars_name(group) or ""])
        keys = sorted(vars_group, key=lambda k: int(k) if k.isdigit() else 1 << 62)
        if any(not k.isdigit() for k in keys) or keys != [str(i) for i in range(len(keys))]:
            raise KerasFormatError(f"{path or '/'}/vars holds {keys[:5]}, expected datasets '0', '1', ...")
        roles = _roles(cls, cfg, len(keys))
        frozen_tail = len(keys) if cls in _ALL_NON_TRAINABLE else _NON_TRAINABLE_TAIL.get(cls or "", 0)
        out = []
        for i, key in enumerate(keys):
            role = roles[i]
            out.append({
                "name": "/".join(chain + [role or f"var{i}"]), "role": role, "path": f"{path}/vars/{key}".lstrip("/"),
                "trainable": trainable and i < len(keys) - frozen_tail, "array": _read_dataset(vars_group[key]),
            })
        return out

    def layer(self, group, path, cls, cfg, trainable, chain) -> list[dict[str, Any]]:
        """All variables of the layer at ``group``, in Keras's variable order (own, then sublayers)."""
        if isinstance(cfg, dict) and cfg.get("config", {}).get("trainable") is False:
            trainable = False
        out = self.own(group, path, cls, cfg, trainable, chain)
        if "layers" in group:  # a nested model
            inner = cfg.get("config", {}).get("layers") if isinstance(cfg, dict) else None
            entries = self.entries(group["layers"], inner, f"{path}/layers", cls == "Sequential")
            for key, sub, sub_cls, sub_cfg in entries:
                out += self.layer(sub, f"{path}/layers/{key}", sub_cls, sub_cfg, trainable,
                                  [(sub_cfg or {}).get("config", {}).get("name") or _vars_name(sub) or key])
        order = _CHILD_ORDER.get(cls or "", [])
        attrs = [k for k in group if k not in ("vars", "layers")]
        attrs.sort(key=lambda k: (order.index(k) if k in order else len(order), k.startswith("_"), k))
        for key in attrs:
            sub = group[key]
            sub_cfg = _child_config(cfg, key)
            sub_cls = (sub_cfg or {}).get("class_name") or (_CELLS.get(cls or "") if key == "cell" else None) \
                or _class_from_group(key, sub)
            out += self.layer(sub, f"{path}/{key}", sub_cls, sub_cfg or (cfg if key == "cell" else None),
                              trainable, chain + [_vars_name(sub) or key])
        return out

    def entries(self, layers_group, configs, where, sequential: bool):
        """``(key, group, class, config)`` per layer of a model: in config order, or by group name."""
        if configs is None:
            keys = sorted(layers_group, key=_natural)
            return [(k, layers_group[k], _class_from_group(k, layers_group[k]), None) for k in keys]
        configs = [c for c in configs if isinstance(c, dict)]
        if sequential:  # Sequential does not list its InputLayer among its layers (Functional does)
            configs = [c for c in configs if c.get("class_name") != "InputLayer"]
        paths = layer_paths([str(c.get("class_name")) for c in configs])
        out = []
        for cfg, p in zip(configs, paths):
            key = p.split("/", 1)[1]
            name = cfg.get("config", {}).get("name") or cfg.get("name")
            if key not in layers_group:
                raise KerasFormatError(f"layer {name!r} ({cfg.get('class_name')}) has no group {where}/{key}")
            stored = _vars_name(layers_group[key])
            if stored is not None and name is not None and stored != name:
                raise KerasFormatError(f"{where}/{key} holds layer {stored!r}, the config puts {name!r} there")
            out.append((key, layers_group[key], cfg.get("class_name"), cfg))
        extra = sorted(set(layers_group) - {p.split('/', 1)[1] for p in paths})
        if extra:
            raise KerasFormatError(f"{where} has groups the model config does not name: {extra[:5]}")
        return out


def _child_config(cfg, key: str) -> dict | None:
    inner = cfg.get("config", {}) if isinstance(cfg, dict) else {}
    if key == "forward_layer":
        key = "layer"
    value = inner.get(key)
    return value if isinstance(value, dict) and "class_name" in value else None


def _canonical(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keras's ``trainable_weights + non_trainable_weights`` order from its variable order."""
    return [v for v in variables if v["trainable"]] + [v for v in variables if not v["trainable"]]


def read_weights_group(f, model_config: dict | None, *, include_optimizer: bool = False):
    """Layers, arrays and optimizer entries of an open Keras 3 weights file (see the module doc)."""
    arrays: dict[str, np.ndarray] = {}
    groups: list[list[str]] = []
    walker = _Walker(arrays, groups)
    if "vars" in f and len(f["vars"]):
        raise KerasFormatError("the model itself owns variables (root 'vars'); squeezefmt packs layer variables only")
    if "vars" in f:
        groups.append(["vars", _vars_name(f) or ""])
    inner = model_config.get("config", {}).get("layers") if model_config else None
    layers = []
    sequential = bool(model_config) and model_config.get("class_name") == "Sequential"
    entries = walker.entries(f["layers"], inner, "layers", sequential) if "layers" in f else []
    for key, group, cls, cfg in entries:
        name = (cfg or {}).get("config", {}).get("name") or _vars_name(group) or key
        weights = []
        variables = walker.layer(group, f"layers/{key}", cls, cfg, True, [name])
        for i, v in enumerate(variables):
            v["index"] = i  # position in Keras 3's layer.weights (own variables, then sublayers')
        for v in _canonical(variables):
            tensor = f"{name}/{v['name']}"
            if tensor in arrays:
                raise KerasFormatError(f"weight {tensor!r} appears twice")
            arrays[tensor] = v["array"]
            weights.append({"name": v["name"], "tensor": tensor, "role": v["role"], "path": v["path"],
                            "index": v["index"]})
        layers.append({"name": name, "class_name": cls, "path": f"layers/{key}", "weights": weights})
    optimizer = None
    if include_optimizer and "optimizer" in f:
        optimizer = []
        for v in walker.own(f["optimizer"], "optimizer", None, None, False, ["optimizer"]):
            tensor = v["path"]
            arrays[tensor] = v["array"]
            optimizer.append({"name": v["path"], "tensor": tensor, "path": v["path"]})
    return layers, arrays, optimizer, groups


def _read_json_member(z: zipfile.ZipFile, name: str, required: bool) -> str | None:
    try:
        info = z.getinfo(name)
    except KeyError:
        if required:
            raise KerasFormatError(f"this .keras archive has no {name}") from None
        return None
    if info.file_size > MAX_JSON_BYTES:
        raise KerasFormatError(f"{name} in the .keras archive is {info.file_size} bytes (limit {MAX_JSON_BYTES})")
    text = z.read(name).decode("utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise KerasFormatError(f"{name} in the .keras archive is not valid JSON: {exc}") from None
    return text


def read_keras_zip(path, *, include_optimizer: bool = False) -> KerasArchive:
    """Read a Keras 3 ``.keras`` archive (config.json, metadata.json, model.weights.h5)."""
    h5py = _require_h5py()
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise KerasFormatError(f"{os.fspath(path)!r} is not a .keras (zip) archive: {exc}") from None
    with z:
        config_text = _read_json_member(z, CONFIG_NAME, True)
        metadata_text = _read_json_member(z, METADATA_NAME, False)
        names = set(z.namelist())
        if WEIGHTS_NAME not in names:
            sharded = " (sharded weights, model.weights.json, are not supported)" if "model.weights.json" in names else ""
            raise KerasFormatError(f"this .keras archive has no {WEIGHTS_NAME}{sharded}")
        info = z.getinfo(WEIGHTS_NAME)
        if info.file_size > MAX_EXPANSION * max(info.compress_size, 1) and info.file_size > MAX_EXPANSION_FLOOR:
            raise KerasFormatError(f"{WEIGHTS_NAME} in the .keras archive expands {info.compress_size} bytes to "
                                   f"{info.file_size}: refusing a zip bomb")
        try:
            weights = io.BytesIO(z.read(WEIGHTS_NAME))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise KerasFormatError(f"cannot read {WEIGHTS_NAME} from the .keras archive: {exc}") from None
    config = json.loads(config_text)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise KerasFormatError("config.json of the .keras archive is not a Keras model config")
    if not include_optimizer and "compile_config" in config:  # goes with the optimizer state, as for .h5
        config = {k: v for k, v in config.items() if k != "compile_config"}
        config_text = json.dumps(config)
    try:
        f = h5py.File(weights, "r")
    except OSError as exc:
        raise KerasFormatError(f"{WEIGHTS_NAME} in the .keras archive is not an HDF5 file: {exc}") from None
    with f:
        layers, arrays, optimizer, groups = read_weights_group(f, config, include_optimizer=include_optimizer)
    meta = json.loads(metadata_text) if metadata_text else {}
    return KerasArchive(
        kind="model", arrays=arrays, layers=layers, model_config=config_text,
        keras_version=str(meta.get("keras_version")) if meta.get("keras_version") else None,
        optimizer=optimizer, source_sha256=_sha256_file(path),
        keras_v3={"format": "keras", "metadata": metadata_text, "groups": groups},
    )


def read_weights_h5(source, *, include_optimizer: bool = False) -> KerasArchive:
    """Read a Keras 3 ``.weights.h5`` file (path or open ``h5py.File``); layers are matched by path on load."""
    h5py = _require_h5py()
    f = h5py.File(source, "r") if isinstance(source, (str, os.PathLike)) else source
    try:
        if not is_keras3_weights(f):
            raise KerasFormatError("not a Keras 3 weights file: no 'layers' or 'vars' group")
        layers, arrays, optimizer, groups = read_weights_group(f, None, include_optimizer=include_optimizer)
    finally:
        if f is not source:
            f.close()
    digest = _sha256_file(source) if isinstance(source, (str, os.PathLike)) else None
    return KerasArchive(kind="weights", arrays=arrays, layers=layers, optimizer=optimizer, source_sha256=digest,
                        keras_v3={"format": "weights.h5", "groups": groups, "match": "path"})
