"""Keras 3 model configs -> the Keras 2 (tf.keras 2.14) form, as JSON data (no Keras import).

Keras 3 writes configs that tf.keras 2.14 cannot read: ``module``/``registered_name`` beside each
``class_name``, dtype policies as objects, InputLayer ``batch_shape``/``optional``, Functional
``inbound_nodes`` as ``{"args": [...], "kwargs": {...}}`` with ``__keras_tensor__`` references, and a
few new options (``quantization_config``, an RNN's ``seed``, BatchNormalization's ``synchronized``...).
:func:`to_keras2` rewrites them; a new option set away from its default has no Keras 2 meaning and
is refused with a clear error rather than dropped. The other direction, :func:`to_keras3`, is small:
Keras 3 reads Keras 2 configs with its legacy loader (keras/compat.py) but refuses options it dropped,
such as an RNN's ``time_major``, even at their default (``keras.saving.load_model`` of such a Keras 2
.h5 fails).
"""
from __future__ import annotations

from typing import Any

from ..errors import KerasFormatError

_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy"})
_PLAIN_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16", "int32", "int64", "uint8", "bool"})
_RNN = frozenset({"LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "ConvLSTM1D", "ConvLSTM2D",
                  "ConvLSTM3D"})
#: Keras 3 options absent from Keras 2, with the value that means "as Keras 2 does".
_KERAS3_ONLY = {"quantization_config": None, "lora_rank": None, "lora_alpha": None, "synchronized": False,
                "rms_scaling": False, "input_axes": None, "output_axes": None, "optional": False}


_MODELS = frozenset({"Functional", "Sequential", "Model"})


def to_keras2(config: Any) -> Any:
    """A Keras 3 model config (a ``config.json`` or a Keras 3 ``model_config``) in tf.keras 2.14's form."""
    return _convert(config)


#: Keras 2 options Keras 3 no longer has, with the value that means "as Keras 3 does".
_KERAS2_ONLY = {"time_major": False}
#: Options Keras 2's depthwise/separable convolutions inherit from Conv and never use; Keras 3 refuses them.
_UNUSED = frozenset({"kernel_initializer", "kernel_regularizer", "kernel_constraint"})
_DEPTHWISE = frozenset({"SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D"})


def to_keras3(config: Any) -> Any:
    """A Keras 2 model config with the options Keras 3 dropped removed (refused when not at their default)."""
    if isinstance(config, list):
        return [to_keras3(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {k: to_keras3(v) for k, v in config.items()}
    inner = out.get("config")
    if isinstance(inner, dict) and "output_layers" in inner:
        _renumber_sequentials(inner)
    if "class_name" in out and isinstance(inner, dict):
        if out["class_name"] in _DEPTHWISE:
            for key in _UNUSED:
                inner.pop(key, None)
            if inner.get("groups", 1) == 1:
                inner.pop("groups", None)
        for key, default in _KERAS2_ONLY.items():
            if key in inner:
                value = inner.pop(key)
                if value != default:
                    raise KerasFormatError(
                        f"{out['class_name']} {inner.get('name', '')!r} sets the Keras 2 option {key}={value!r}, "
                        "which Keras 3 does not have; load this model under tf.keras 2")
    return out


def _renumber_sequentials(graph: dict[str, Any]) -> None:
    """Keras 2 counts a nested Sequential's InputLayer node as its node 0; Keras 3 does not (it does for
    Functional): references to such a Sequential move down by one."""
    nested = {layer.get("name") for layer in graph.get("layers", [])
              if layer.get("class_name") == "Sequential" and (layer.get("config", {}).get("layers") or [{}])[0]
              .get("class_name") == "InputLayer"}

    def shift(ref):
        if isinstance(ref, list) and len(ref) >= 3 and ref[0] in nested and isinstance(ref[1], int) and ref[1] > 0:
            return [ref[0], ref[1] - 1, *ref[2:]]
        return ref

    for layer in graph.get("layers", []):
        nodes = layer.get("inbound_nodes")
        if isinstance(nodes, list):
            layer["inbound_nodes"] = [[shift(r) for r in n] if isinstance(n, list) else n for n in nodes]
    for key in ("input_layers", "output_layers"):
        refs = graph.get(key)
        if isinstance(refs, list):
            graph[key] = shift(refs) if refs and isinstance(refs[0], str) else [shift(r) for r in refs]


def _renumber(graph: dict[str, Any]) -> None:
    """Keras 2 counts a nested model's own construction as its node 0; Keras 3 does not: shift by one."""
    models = {layer.get("name") for layer in graph.get("layers", []) if layer.get("class_name") in _MODELS}

    def shift(ref):
        return [ref[0], ref[1] + 1, *ref[2:]] if ref and ref[0] in models else ref

    for layer in graph.get("layers", []):
        layer["inbound_nodes"] = [[shift(ref) for ref in node] for node in layer.get("inbound_nodes", [])]
    for key in ("input_layers", "output_layers"):
        refs = graph.get(key)
        if isinstance(refs, list) and refs and isinstance(refs[0], str):  # one tensor, written flat
            refs = [refs]
        if isinstance(refs, list):
            graph[key] = [shift(ref) for ref in refs]


def _convert(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_convert(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if not ("class_name" in obj and isinstance(obj.get("config"), dict)):
        return {k: _convert(v) for k, v in obj.items()}
    cls = obj["class_name"]
    if cls in _POLICIES:
        name = obj["config"].get("name", "float32")
        return name if name in _PLAIN_DTYPES else {"class_name": "Policy", "config": {"name": name}}
    out: dict[str, Any] = {"class_name": cls, "config": _layer_config(cls, _convert(obj["config"]))}
    if cls == "Functional" or "input_layers" in out["config"]:
        _renumber(out["config"])
    if "name" in obj:
        out["name"] = obj["name"]
    if "inbound_nodes" in obj:
        out["inbound_nodes"] = [_node(n, obj.get("name")) for n in obj["inbound_nodes"]]
    return out


def _layer_config(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    if cls == "InputLayer" and "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    if cls in _RNN and cfg.get("seed", None) is None:
        cfg.pop("seed", None)
    for key, default in _KERAS3_ONLY.items():
        if key in cfg:
            value = cfg.pop(key)
            if value != default:
                raise KerasFormatError(
                    f"{cls} {cfg.get('name', '')!r} sets the Keras 3 option {key}={value!r}, which tf.keras 2 "
                    "does not have; load this model under Keras 3")
    return cfg


def _tensor_ref(t: Any, layer: str | None) -> list:
    if not (isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"):
        raise KerasFormatError(f"layer {layer!r} is called on {str(t)[:80]}, which tf.keras 2 configs cannot express")
    name, node, index = t["config"]["keras_history"]
    return [name, node, index]


def _node(node: Any, layer: str | None) -> list:
    """``{"args": [x], "kwargs": {...}}`` -> Keras 2's ``[[name, node, tensor, kwargs], ...]``."""
    if isinstance(node, list):  # already Keras 2 form
        return node
    args, kwargs = node.get("args", []), dict(node.get("kwargs", {}))
    if len(args) != 1:
        raise KerasFormatError(f"layer {layer!r} takes {len(args)} positional inputs; tf.keras 2 configs take one")
    if any(isinstance(v, (dict, list)) for v in kwargs.values()):
        raise KerasFormatError(f"layer {layer!r} is called with tensor keyword arguments; load it under Keras 3")
    kwargs = {k: v for k, v in kwargs.items() if not (k == "mask" and v is None)}
    inputs = args[0] if isinstance(args[0], list) else [args[0]]
    return [_tensor_ref(t, layer) + [kwargs] for t in inputs]
