"""Transform: EPR-trained Keras layers -> ``epr`` streams (archive -> archive with PreEncoded items; numpy only).

An EPR-trained layer stores, per weight ``w`` (``kernel``, ``bias``), a float ``w_latent`` and a
float ``w_log_step`` (the TFC tutorial's names, also used by :mod:`squeezefmt.keras.epr`). What the
model computes is ``round(latent / exp(log_step)) * exp(log_step)`` (then the inverse RDFT for conv
kernels), so the float latents need not be kept: :func:`rewrite_epr` computes the integer latents
exactly as tfc's ``PowerLawEntropyModel.compress(latent / tf.exp(log_step))`` does and puts them in
the archive as :class:`~squeezefmt.codecs.epr.EPRLatents` items (pre-encoded tensors), with the
log-steps rounded to float16 as the tutorial stores them. Nothing is quantized a second time.

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
from typing import Any

import numpy as np

from ...codecs.epr import EPRLatents, quantize_latent
from ...dtypes import dtype_name
from ...errors import CodecError, KerasFormatError
from ..archive import KerasArchive, layer_entries, parse_config

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


def _groups(layer: dict) -> dict[str, dict[str, dict]]:
    """Weights of an .h5 layer grouped by sub-layer prefix: ``{prefix: {role: weight}}``."""
    out: dict[str, dict[str, dict]] = {}
    for w in layer["weights"]:
        prefix, role, _ = _split(w["name"])
        out.setdefault(prefix, {})[role] = w
    return out


def _pairs(group: dict[str, dict]) -> list[str]:
    return [p for p in PARTS if f"{p}_latent" in group and f"{p}_log_step" in group]


def has_epr_weights(archive: KerasArchive) -> bool:
    """Whether any layer stores a ``<part>_latent`` + ``<part>_log_step`` pair."""
    return any(_pairs(g) for layer in archive.layers for g in _groups(layer).values())


@dataclasses.dataclass
class _Rewrite:
    """What :func:`rewrite_epr` collects while it walks the layers."""

    arrays: dict[str, Any]                     # tensor -> value (latents of unknown layers replaced in place)
    configs: dict[str, list[dict]]             # layer name -> its entries in the (parsed, mutable) model config
    replaced: dict[str, tuple[str, EPRLatents]] = dataclasses.field(default_factory=dict)  # latent -> (new, item)
    dropped: set[str] = dataclasses.field(default_factory=set)
    config_changed: bool = False


def rewrite_epr(archive: KerasArchive) -> KerasArchive:
    """Replace the EPR weight pairs of ``archive`` by pre-encoded ``epr`` tensors (see the module doc).

    Archives without EPR weights are returned unchanged.
    """
    if not has_epr_weights(archive):
        return archive
    cfg = parse_config(archive.model_config) if archive.kind == "model" and archive.model_config else None
    state = _Rewrite(arrays=dict(archive.arrays), configs=layer_entries(cfg) if cfg is not None else {})
    layers = [_rewrite_layer(layer, state) for layer in archive.layers]
    arrays = _arrays_in_order(state)
    optimizer = archive.optimizer
    if state.replaced and optimizer:
        for w in optimizer:
            arrays.pop(w["tensor"], None)
        optimizer = []  # it refers to the latent variables, which the plain model does not have
    model_config = json.dumps(cfg) if state.config_changed else archive.model_config
    return dataclasses.replace(archive, arrays=arrays, layers=layers, model_config=model_config, optimizer=optimizer)


def _plain_class(entries: list[dict]) -> str | None:
    """The plain class (Dense / Conv2D) of a sub-layer whose config entries are all EPR layers of one kind."""
    if entries and all(e.get("class_name") in EPR_CLASSES for e in entries):
        kinds = {EPR_CLASSES[e["class_name"]] for e in entries}
        if len(kinds) == 1:
            return kinds.pop()
    return None


def _rewrite_layer(layer: dict, state: _Rewrite) -> dict:
    """One stored layer with its EPR pairs rewritten (known classes: renamed plain weights)."""
    layer = dict(layer)
    renamed: dict[str, str | None] = {}  # old tensor -> new weight name, or None: dropped
    for prefix, group in _groups(layer).items():
        parts = _pairs(group)
        if not parts:
            continue
        sub_name = prefix.rsplit("/", 1)[-1] if prefix else layer["name"]
        entries = state.configs.get(sub_name, [])
        plain = _plain_class(entries)
        for part in parts:
            lat_w, step_w = group[f"{part}_latent"], group[f"{part}_log_step"]
            if plain is not None:
                renamed.update(_plain_part(layer["name"], prefix, part, lat_w, step_w, plain, entries[0], state))
            else:
                _keep_part(lat_w, step_w, state)
        if plain is not None:
            _make_plain(entries, plain)
            state.config_changed = True
            if layer.get("class_name") in EPR_CLASSES and sub_name == layer["name"]:
                layer["class_name"] = plain
    weights = []
    for w in layer["weights"]:
        if w["tensor"] not in renamed:
            weights.append(w)
        elif renamed[w["tensor"]] is not None:
            weights.append({"name": renamed[w["tensor"]], "tensor": state.replaced[w["tensor"]][0]})
    layer["weights"] = weights
    return layer


def _plain_part(layer_name: str, prefix: str, part: str, lat_w: dict, step_w: dict, plain: str, entry: dict,
                state: _Rewrite) -> dict[str, str | None]:
    """A known EPR layer's ``part``: one plain weight (``kernel`` / ``bias``) holding the latents."""
    latent, log_step = state.arrays[lat_w["tensor"]], state.arrays[step_w["tensor"]]
    shape, transform = _plain_shape(plain, part, latent, entry["config"], lat_w["tensor"])
    new_wname = f"{prefix + '/' if prefix else ''}{part}{_split(lat_w['name'])[2]}"
    item = _latents(latent, log_step, transform, shape, lat_w["tensor"])
    state.replaced[lat_w["tensor"]] = (f"{layer_name}/{new_wname}", item)
    state.dropped.add(step_w["tensor"])
    return {lat_w["tensor"]: new_wname, step_w["tensor"]: None}


def _keep_part(lat_w: dict, step_w: dict, state: _Rewrite) -> None:
    """Another layer's EPR pair: the latent as an ``epr`` tensor, the log-step as its float16 value."""
    latent, log_step = state.arrays[lat_w["tensor"]], state.arrays[step_w["tensor"]]
    try:
        item = _latents(latent, log_step, "none", np.shape(latent), lat_w["tensor"])
    except KerasFormatError:
        return  # not shaped like EPR weights: store them as ordinary tensors
    state.arrays[lat_w["tensor"]] = item
    state.arrays[step_w["tensor"]] = item.log_steps.astype(log_step.dtype)


def _make_plain(entries: list[dict], plain: str) -> None:
    """Turn the config entries of an EPR layer into a plain ``plain`` layer's."""
    for e in entries:
        e["class_name"] = plain
        for key in EPR_CONFIG_KEYS:
            e["config"].pop(key, None)
        e.pop("module", None)
        e.pop("registered_name", None)


def _arrays_in_order(state: _Rewrite) -> dict[str, Any]:
    """The archive's tensors in file order, replacements in place of their latents, log-steps dropped."""
    out: dict[str, Any] = {}
    for name, value in state.arrays.items():
        if name in state.dropped:
            continue
        if name in state.replaced:
            new_tensor, item = state.replaced[name]
            if new_tensor in state.arrays or new_tensor in out:
                raise KerasFormatError(f"EPR weight {name!r} would become {new_tensor!r}, which already exists")
            out[new_tensor] = item
            continue
        out[name] = value
    return out


def _latents(latent: np.ndarray, log_step: np.ndarray, transform: str, shape, what: str) -> EPRLatents:
    latent, log_step = np.asarray(latent), np.asarray(log_step)
    if latent.dtype.kind != "f" or log_step.dtype.kind != "f":
        raise KerasFormatError(f"EPR weight {what!r}: latent and log-step must be float arrays")
    k = log_step.ndim
    if k > latent.ndim or tuple(latent.shape[latent.ndim - k:]) != tuple(log_step.shape):
        raise KerasFormatError(f"EPR weight {what!r}: log-step shape {log_step.shape} does not broadcast over "
                               f"the latent shape {latent.shape} as a suffix")
    try:
        q, log16 = quantize_latent(latent, log_step)
        return EPRLatents(q, log16, transform, shape=shape, dtype=dtype_name(latent.dtype))
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
