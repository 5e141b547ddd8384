"""Packing EPR-trained Keras layers as ``epr`` streams (h5py/numpy only; no TensorFlow).

An EPR-trained layer stores, per weight ``w`` (``kernel``, ``bias``), a float ``w_latent`` and a
float ``w_log_step`` (the TFC tutorial's names, also used by :mod:`squeezefmt.keras.epr`). What the
model computes is ``round(latent / exp(log_step)) * exp(log_step)`` (then the inverse RDFT for conv
kernels), so the float latents need not be kept: :func:`rewrite_epr` computes the integer latents
exactly as tfc's ``PowerLawEntropyModel.compress(latent / tf.exp(log_step))`` does and hands the
planner an :class:`~squeezefmt.codecs.epr.EPRLatents` codec for them. Log-steps are stored as
float16, the tutorial's storage type, when the trained values are float16-representable exactly;
otherwise they are kept exact (float32, ``epr`` stream layout version 2) and a warning names the
tensors (``float16_steps=True``, CLI ``--epr-float16-steps``, rounds them as the tutorial's
``compress_latent`` does; :func:`squeezefmt.keras.epr.round_log_steps` does it on the model before
saving). Nothing is quantized a second time.

Two cases:

- **Known classes** (``EPRDense`` / ``EPRConv2D`` from :mod:`squeezefmt.keras.epr`, in a full-model
  .h5): the layer becomes a plain ``Dense`` / ``Conv2D`` in the stored model config (the EPR-only
  config keys are dropped), and its weights become ``kernel`` / ``bias`` tensors holding the decoded
  values (conv kernels ``(H, W, I, O)``: the ``epr`` stream carries the RDFT latent). The packed
  model, ``squeezefmt.keras.load`` and ``squeezefmt unpack``'s .h5 need no custom objects.
  Optimizer state, which refers to the latent variables, is dropped for such models.
- **Other layers with the tutorial's weight names** (the tutorial's own ``CompressibleDense`` /
  ``CompressibleConv2D``, weights-only files): the weights keep their names and shapes. The latent
  tensor is stored as an ``epr`` stream (decoding to ``q * exp(log_step)``, which the layer
  quantizes back to exactly ``q``), the log-step tensor holds its float16-rounded value; load
  them into the same layer classes (``load_weights``, or ``load`` with ``custom_objects``).
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any

import numpy as np

from ..codecs import Codec
from ..codecs.epr import EPRLatents, quantize_latent
from ..dtypes import dtype_name
from ..errors import CodecError, KerasFormatError
from .h5 import KerasArchive

#: Stored class name -> plain Keras class for the layers of squeezefmt.keras.epr.
EPR_CLASSES = {
    "EPRDense": "Dense", "EPRConv2D": "Conv2D",
    "squeezefmt>EPRDense": "Dense", "squeezefmt>EPRConv2D": "Conv2D",
}
#: Config keys the EPR layers add to Dense / Conv2D.
EPR_CONFIG_KEYS = ("regularizer", "log_step_init", "per_frequency_steps")
PARTS = ("kernel", "bias")


def _split(weight_name: str) -> tuple[str, str, str]:
    """``"fc/kernel_latent:0"`` -> ``("fc", "kernel_latent", ":0")``."""
    prefix, _, last = weight_name.rpartition("/")
    role, colon, suffix = last.partition(":")
    return prefix, role, colon + suffix


def _layer_configs(model_config: str | None) -> tuple[Any, dict[str, list[dict]]]:
    """The parsed model config and, per layer name, the layer entries (``{"class_name", "config"}``)."""
    if not model_config:
        return None, {}
    try:
        cfg = json.loads(model_config)
    except json.JSONDecodeError as exc:
        raise KerasFormatError(f"model_config is not valid JSON: {exc}") from None
    found: dict[str, list[dict]] = {}
    stack = [cfg]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            inner = item.get("config")
            if "class_name" in item and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                found.setdefault(inner["name"], []).append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return cfg, found


def has_epr_weights(archive: KerasArchive) -> bool:
    """Whether any layer stores a ``<part>_latent`` + ``<part>_log_step`` pair."""
    for layer in archive.layers:
        groups = _groups(layer)
        if any(_pairs(g) for g in groups.values()):
            return True
    return False


def _groups(layer: dict) -> dict[str, dict[str, dict]]:
    """Weights of an .h5 layer grouped by sub-layer prefix: ``{prefix: {role: weight}}``."""
    out: dict[str, dict[str, dict]] = {}
    for w in layer["weights"]:
        prefix, role, _ = _split(w["name"])
        out.setdefault(prefix, {})[role] = w
    return out


def _pairs(group: dict[str, dict]) -> list[str]:
    return [p for p in PARTS if f"{p}_latent" in group and f"{p}_log_step" in group]


def rewrite_epr(archive: KerasArchive, float16_steps: bool = False) -> tuple[KerasArchive, dict[str, Codec]]:
    """Replace the EPR weight pairs of ``archive`` (see the module doc); returns the new archive
    and the codecs the planner must use for the replaced tensors. Archives without EPR weights
    are returned unchanged with no codecs. ``float16_steps``: round every log-step to float16 (the
    tutorial's storage) instead of keeping the ones float16 cannot represent exactly."""
    if not has_epr_weights(archive):
        return archive, {}
    archive, codecs = _rewrite(archive, not float16_steps)
    wide = sorted(name for name, c in codecs.items() if getattr(c, "wide_steps", False))
    if wide:
        warnings.warn(f"EPR log-steps of {len(wide)} tensor(s) are not float16-representable and are stored "
                      f"exactly as float32 ({', '.join(wide[:4])}{', ...' if len(wide) > 4 else ''}); "
                      "round them to float16 as the tutorial does with --epr-float16-steps "
                      "(or squeezefmt.keras.epr.round_log_steps before saving)", EPRStepsWarning, stacklevel=3)
    return archive, codecs


class EPRStepsWarning(UserWarning):
    """EPR log-steps were kept as float32 because float16 cannot represent them exactly."""


def _rewrite(archive: KerasArchive, exact: bool) -> tuple[KerasArchive, dict[str, Codec]]:
    cfg, configs = _layer_configs(archive.model_config) if archive.kind == "model" else (None, {})
    arrays = dict(archive.arrays)
    codecs: dict[str, Codec] = {}
    replaced: dict[str, list[tuple[str, np.ndarray]]] = {}  # old tensor -> [(new tensor, array)]
    dropped: set[str] = set()
    new_layers = []
    config_changed = False
    for layer in archive.layers:
        layer = dict(layer)
        new_weights = []
        groups = _groups(layer)
        plan: dict[str, tuple[str, str | None]] = {}  # tensor -> (action, extra)
        for prefix, group in groups.items():
            parts = _pairs(group)
            if not parts:
                continue
            sub_name = prefix.rsplit("/", 1)[-1] if prefix else layer["name"]
            entries = configs.get(sub_name, [])
            plain = None
            if entries and all(e.get("class_name") in EPR_CLASSES for e in entries):
                kinds = {EPR_CLASSES[e["class_name"]] for e in entries}
                if len(kinds) == 1:
                    plain = kinds.pop()
            for part in parts:
                lat_w, step_w = group[f"{part}_latent"], group[f"{part}_log_step"]
                latent, log_step = arrays[lat_w["tensor"]], arrays[step_w["tensor"]]
                if plain is not None:
                    shape, transform = _plain_shape(plain, part, latent, entries[0]["config"], lat_w["tensor"])
                    new_wname = f"{prefix + '/' if prefix else ''}{part}{_split(lat_w['name'])[2]}"
                    new_tensor = f"{layer['name']}/{new_wname}"
                    codec = _latents_codec(latent, log_step, transform, lat_w["tensor"], exact)
                    value = codec.decoded(shape, dtype_name(latent.dtype))
                    plan[lat_w["tensor"]] = ("replace", new_wname)
                    replaced[lat_w["tensor"]] = [(new_tensor, value)]
                    codecs[new_tensor] = codec
                    dropped.add(step_w["tensor"])
                    plan[step_w["tensor"]] = ("drop", None)
                else:
                    try:
                        codec = _latents_codec(latent, log_step, "none", lat_w["tensor"], exact)
                    except KerasFormatError:
                        continue  # not shaped like EPR weights: store them as ordinary tensors
                    arrays[lat_w["tensor"]] = codec.decoded(latent.shape, dtype_name(latent.dtype))
                    arrays[step_w["tensor"]] = codec.log_steps.astype(log_step.dtype)
                    codecs[lat_w["tensor"]] = codec
            if plain is not None:
                for e in entries:
                    e["class_name"] = plain
                    for key in EPR_CONFIG_KEYS:
                        e["config"].pop(key, None)
                    e.pop("module", None)
                    e.pop("registered_name", None)
                config_changed = True
                if layer.get("class_name") in EPR_CLASSES and sub_name == layer["name"]:
                    layer["class_name"] = plain
        for w in layer["weights"]:
            action = plan.get(w["tensor"])
            if action is None:
                new_weights.append(w)
            elif action[0] == "replace":
                new_tensor, _ = replaced[w["tensor"]][0]
                new_weights.append({"name": action[1], "tensor": new_tensor})
        layer["weights"] = new_weights
        new_layers.append(layer)
    # rebuild the arrays in file order with the replacements in place
    out_arrays: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name in dropped:
            continue
        if name in replaced:
            for new_tensor, new_value in replaced[name]:
                if new_tensor in arrays or new_tensor in out_arrays:
                    raise KerasFormatError(f"EPR weight {name!r} would become {new_tensor!r}, which already exists")
                out_arrays[new_tensor] = new_value
            continue
        out_arrays[name] = value
    optimizer = archive.optimizer
    if replaced and optimizer:
        for w in optimizer:
            out_arrays.pop(w["tensor"], None)
        optimizer = []  # it refers to the latent variables, which the plain model does not have
    model_config = json.dumps(cfg) if config_changed else archive.model_config
    return dataclasses.replace(archive, arrays=out_arrays, layers=new_layers, model_config=model_config,
                               optimizer=optimizer), codecs


def _latents_codec(latent: np.ndarray, log_step: np.ndarray, transform: str, what: str,
                   exact: bool = True) -> EPRLatents:
    latent, log_step = np.asarray(latent), np.asarray(log_step)
    if latent.dtype.kind != "f" or log_step.dtype.kind != "f":
        raise KerasFormatError(f"EPR weight {what!r}: latent and log-step must be float arrays")
    k = log_step.ndim
    if k > latent.ndim or tuple(latent.shape[latent.ndim - k:]) != tuple(log_step.shape):
        raise KerasFormatError(f"EPR weight {what!r}: log-step shape {log_step.shape} does not broadcast over "
                               f"the latent shape {latent.shape} as a suffix")
    try:
        q, steps = quantize_latent(latent, log_step, exact=exact)
        return EPRLatents(q, steps, transform)
    except CodecError as exc:
        raise KerasFormatError(f"EPR weight {what!r}: {exc}") from None


def _plain_shape(plain: str, part: str, latent: np.ndarray, config: dict, what: str):
    """Shape of the plain layer's weight and the transform relating the latent to it."""
    if part == "bias" or plain == "Dense":
        return tuple(latent.shape), "none"
    ks = config.get("kernel_size")
    if isinstance(ks, int):
        ks = [ks, ks]
    if not (isinstance(ks, list) and len(ks) == 2 and all(isinstance(k, int) for k in ks)):
        raise KerasFormatError(f"EPR conv layer of {what!r} has no usable kernel_size in its config")
    kh, kw = ks
    if latent.ndim != 5 or latent.shape[2] != kh or latent.shape[3] != kw // 2 + 1 or latent.shape[4] != 2:
        raise KerasFormatError(f"EPR conv latent {what!r} has shape {latent.shape}, expected "
                               f"(I, O, {kh}, {kw // 2 + 1}, 2) for kernel_size {ks}")
    return (kh, kw, int(latent.shape[0]), int(latent.shape[1])), "rdft"
