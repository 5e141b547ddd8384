"""Compatibility names for code written against squeezefmt 0.1: use :mod:`squeezefmt.presets` and
:mod:`squeezefmt.encode` instead (this module only re-exports them)."""
from .encode import encode_tensor, plan_and_encode
from .presets import (
    PRESET_FAMILIES, PRESET_HELP, PRESETS, SMALL_TENSOR_BYTES, Choice, Preset, TensorContext, compression_policy,
    custom_preset, structured_candidates,
)
from .presets import get as preset
from .presets import register as register_preset

__all__ = [
    "encode_tensor", "plan_and_encode", "PRESET_FAMILIES", "PRESET_HELP", "PRESETS", "SMALL_TENSOR_BYTES",
    "Choice", "Preset", "TensorContext", "compression_policy", "custom_preset", "structured_candidates", "preset",
    "register_preset",
]
