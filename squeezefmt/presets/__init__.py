"""Presets: named policies choosing a codec per tensor, looked up by name when a tensor is planned.

``get(name)`` returns the policy ``(tensor name, array, TensorContext) -> Codec``; ``register``
adds one. Every family module registers its presets on import, and importing this package imports
them all: ``lossless`` (``lossless``, ``fast``, ``raw``), ``deep`` (``deep-compression``, the
``custom:...`` presets), ``epr`` (``epr``, ``epr-rms<x>``, ``epr-bits<b>``), ``compact`` (``compact``, ``compact-x<scale>``). Callers look names up
when they need them (:func:`names`, :func:`help_texts`), so presets registered later are seen too.
"""
from .registry import (
    PRESET_FAMILIES, PRESET_HELP, PRESETS, Preset, TensorContext, get, help_texts, names, register, register_family,
)
from .lossless import SMALL_TENSOR_BYTES  # noqa: E402 - registers lossless, fast, raw
from .structured import Choice, structured_candidates  # noqa: E402
from .deep import compression_policy, custom_preset  # noqa: E402 - registers deep-compression
from .epr import preset_name as epr_preset_name  # noqa: E402 - registers epr and its families
from .compact import compact_codec  # noqa: E402 - registers compact and compact-x<scale>

__all__ = [
    "PRESET_FAMILIES", "PRESET_HELP", "PRESETS", "Preset", "TensorContext", "get", "help_texts", "names",
    "register", "register_family", "SMALL_TENSOR_BYTES", "Choice", "structured_candidates",
    "compression_policy", "custom_preset", "epr_preset_name", "compact_codec",
]
