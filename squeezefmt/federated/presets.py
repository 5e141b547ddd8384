"""Federated presets: how a broadcast is coded (full or delta, lossless or lossy, keyframe period).

=================  ======  ==========================================================================
preset             delta   tensors
=================  ======  ==========================================================================
``lossless``       no      every round the whole model, byte-grouped zstd (exact)
``lossless-delta`` yes     XOR of the float bits against the last round, byte-grouped zstd (exact)
``lossy``          no      every round the whole model, 8-bit uniform quantization (``quant`` codec)
``lossy-delta``    yes     first round 8-bit; then the difference to what receivers hold, 4-bit
                           ``quant``, with error feedback (the quantization error of round t is part
                           of round t+1's delta)
``lossy-delta-3``  yes     as ``lossy-delta`` with a 4-bit first round and 3-bit deltas (about 1.5x
                           fewer bytes; 2-bit deltas no longer train, see tools/fl_demo.py)
``lossy-delta-ac`` yes     ``cabac`` codec (RDO quantization, arithmetic coded): first round at a step
                           of 0.25 RMS per tensor, deltas at 2 RMS of the delta, with error feedback
                           (about 2x fewer bytes than ``lossy-delta``; tools/bench_fl_coder.py)
=================  ======  ==========================================================================

Quantized indices are coded with ``coder`` (default ``"auto"``: canonical Huffman or the
context-adaptive arithmetic coder, whichever is smaller per tensor; ``"huffman"`` is the coding of
squeezefmt before the arithmetic coder existed; see spec/codecs.md "Index coder").

Float tensors with fewer than ``min_lossy_elements`` elements (biases, normalisation parameters)
and non-float tensors stay lossless in every preset. Lossy presets use the ``quant`` codec
(:mod:`squeezefmt.codecs.quantize`). ``full_codec`` / ``delta_codec`` accept any ``(name, array) -> Codec |
None`` to plug in another codec (e.g. EPR) instead.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..codecs import Codec
from ..codecs.cabac_quant import CabacQuant
from ..codecs.quantize import Quantize
from ..dtypes import dtype_name
from ..errors import SqueezeError
from .payload import ADD_DTYPES, CodecChooser


def quantize_codec(bits: int, per_channel: bool = False, coder: str = "auto") -> Codec:
    """The ``quant`` codec (uniform scalar quantization; indices coded by ``coder``)."""
    return Quantize(bits=bits, per_channel=per_channel, coder=coder)


def cabac_chooser(rel_step: float, min_elements: int = 256, lam: float = 0.1) -> CodecChooser:
    """Per tensor: the ``cabac`` codec at ``rel_step`` times the tensor's RMS for float tensors of at
    least ``min_elements`` elements, else None (lossless)."""
    def choose(name: str, array: np.ndarray) -> Codec | None:
        if dtype_name(array.dtype) in ADD_DTYPES and array.size >= min_elements:
            return CabacQuant(rel_step=rel_step, lam=lam)
        return None
    return choose


@dataclasses.dataclass(frozen=True)
class FederatedPreset:
    """How a :class:`~squeezefmt.federated.BroadcastEncoder` codes each round.

    ``delta``: code round t against what receivers hold after round t-1. ``full_every``: with
    ``delta``, a full payload every K rounds (0: only the first round and on request).
    ``bits`` / ``delta_bits``: quantization bits of float tensors in full / delta payloads (None:
    lossless). ``full_codec`` / ``delta_codec`` override the codec choice per tensor.
    """

    name: str
    delta: bool = False
    full_every: int = 0
    bits: int | None = None
    delta_bits: int | None = None
    per_channel: bool = False
    min_lossy_elements: int = 256
    full_codec: CodecChooser | None = None
    delta_codec: CodecChooser | None = None
    planner_preset: str = "lossless"
    coder: str = "auto"

    def __post_init__(self):
        if not isinstance(self.full_every, int) or self.full_every < 0:
            raise SqueezeError(f"full_every must be a non-negative integer, got {self.full_every!r}")
        for b in (self.bits, self.delta_bits):
            if b is not None and not (isinstance(b, int) and 1 <= b <= 16):
                raise SqueezeError(f"quantization bits must be an integer in 1..16, got {b!r}")
        if self.coder not in ("huffman", "cabac", "auto"):
            raise SqueezeError(f"coder must be 'huffman', 'cabac' or 'auto', got {self.coder!r}")

    @property
    def op(self) -> str:
        """The delta operation: ``add`` when deltas are lossy (quantized), else bit-exact ``xor``."""
        return "add" if (self.delta_bits is not None or self.delta_codec is not None) else "xor"

    @property
    def lossy(self) -> bool:
        return any(x is not None for x in (self.bits, self.delta_bits, self.full_codec, self.delta_codec))

    def _lossy_chooser(self, bits: int | None, custom: CodecChooser | None) -> CodecChooser | None:
        if custom is not None:
            return custom
        if bits is None:
            return None

        def choose(name: str, array: np.ndarray) -> Codec | None:
            if dtype_name(array.dtype) in ADD_DTYPES and array.size >= self.min_lossy_elements:
                return quantize_codec(bits, self.per_channel, self.coder)
            return None
        return choose

    def full_chooser(self) -> CodecChooser | None:
        return self._lossy_chooser(self.bits, self.full_codec)

    def delta_chooser(self) -> CodecChooser | None:
        return self._lossy_chooser(self.delta_bits, self.delta_codec)

    def replace(self, **changes) -> "FederatedPreset":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, FederatedPreset] = {
    "lossless": FederatedPreset("lossless"),
    "lossless-delta": FederatedPreset("lossless-delta", delta=True),
    "lossy": FederatedPreset("lossy", bits=8),
    "lossy-delta": FederatedPreset("lossy-delta", delta=True, bits=8, delta_bits=4),
    "lossy-delta-3": FederatedPreset("lossy-delta-3", delta=True, bits=4, delta_bits=3),
    "lossy-delta-ac": FederatedPreset("lossy-delta-ac", delta=True, full_codec=cabac_chooser(0.25),
                                      delta_codec=cabac_chooser(2.0)),
}


def get_preset(preset: "str | FederatedPreset", **overrides) -> FederatedPreset:
    """A preset by name (or the object itself), with fields replaced by ``overrides``."""
    if isinstance(preset, FederatedPreset):
        p = preset
    else:
        try:
            p = PRESETS[preset]
        except KeyError:
            raise SqueezeError(f"unknown federated preset {preset!r}; choose one of {', '.join(PRESETS)}") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return p.replace(**overrides) if overrides else p


__all__ = ["FederatedPreset", "PRESETS", "get_preset", "quantize_codec", "cabac_chooser"]
