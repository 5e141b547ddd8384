"""The preset registry: named codec policies, looked up when a tensor is planned (never snapshotted).

A *preset* is a policy ``(name, array, context) -> Codec``. ``context`` carries what the caller knows
about the tensor (the Keras layer class and weight role) so that lossy presets can treat kernels and
biases differently. Family modules (``lossless``, ``structured``, ``deep``, ``epr``) register their
presets with :func:`register`; parametric families (``"epr-rms0.02"``) register a resolver with
:func:`register_family` and their members are registered on first use.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from ..codecs import Codec
from ..errors import SqueezeError


@dataclasses.dataclass(frozen=True)
class TensorContext:
    """What the planner may know about a tensor beyond its values."""

    layer_class: str | None = None   # e.g. "Dense", "Conv2D"
    role: str | None = None          # e.g. "kernel", "bias", "gamma", "moving_mean"
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Preset = Callable[[str, np.ndarray, TensorContext], Codec]
PRESETS: dict[str, Preset] = {}
PRESET_HELP: dict[str, str] = {}
#: Parametric preset families: name prefix -> function that registers the preset for the rest of the
#: name (e.g. ``"epr-rms"`` + ``"0.02"``) and returns its canonical name.
PRESET_FAMILIES: dict[str, Callable[[str], str]] = {}


def register(name: str, help_text: str):
    """Decorator registering a preset function under ``name``."""
    def deco(fn: Preset) -> Preset:
        PRESETS[name] = fn
        PRESET_HELP[name] = help_text
        return fn
    return deco


def register_family(prefix: str, resolve: Callable[[str], str]) -> None:
    """Presets named ``prefix + value``: ``resolve(value)`` registers one and returns its canonical name."""
    PRESET_FAMILIES[prefix] = resolve


def names() -> list[str]:
    """The names of the presets registered now (sorted)."""
    return sorted(PRESETS)


def help_texts() -> dict[str, str]:
    """Preset name -> one-line description, for the presets registered now."""
    return dict(sorted(PRESET_HELP.items()))


def get(name: str) -> Preset:
    """The preset function registered as ``name``; members of a family (``"epr-rms0.02"``) register on first use."""
    if name not in PRESETS:
        for prefix, resolve in PRESET_FAMILIES.items():
            if isinstance(name, str) and name.startswith(prefix):
                canonical = resolve(name[len(prefix):])
                if canonical == name:
                    break
                raise SqueezeError(f"unknown preset {name!r}; did you mean {canonical!r}?")
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        families = ", ".join(f"{p}<value>" for p in PRESET_FAMILIES)
        raise SqueezeError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
                           + (f" or {families}" if families else "")) from None
