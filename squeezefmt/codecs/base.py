"""The codec interface every stream kind implements, and the helpers for nesting codecs.

A codec turns one tensor into zero or more byte streams plus a small JSON object of side
information (``side``), and back. Its constructor parameters are its ``config`` (numcodecs style:
``get_config`` / ``from_config``); the container stores ``{"id", "version", "config"}`` beside the
side information, so a decoder rebuilds the exact codec from the header alone.

Decoders receive untrusted input: ``decode`` MUST validate ``side`` and the stream lengths against
the declared shape before allocating anything larger than that shape, and MUST raise
:class:`~squeezefmt.errors.StreamError` (or another :class:`~squeezefmt.errors.SqueezeError`)
for anything malformed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import StreamError


@dataclasses.dataclass
class TensorSpec:
    """What the container declares about a tensor: element type name and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass
class Encoded:
    """A codec's output: its streams, the side information to decode them, and statistics.

    ``stats`` is informational (stored in the header, never needed to decode): lossy codecs report
    ``max_abs_err`` and ``rel_rms_err`` there.
    """

    streams: list[bytes]
    side: dict[str, Any] = dataclasses.field(default_factory=dict)
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


class Codec:
    """Base class: subclasses set ``codec_id``, ``version``, ``lossless`` and implement the rest."""

    codec_id: ClassVar[str]
    #: Highest stream-layout version this class writes and reads.
    version: ClassVar[int] = 1
    #: Whether decode(encode(x)) == x bit for bit.
    lossless: ClassVar[bool] = True

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Codec":
        try:
            return cls(**config)
        except TypeError as exc:
            raise StreamError(f"codec {cls.codec_id!r}: invalid config {config!r}: {exc}") from None

    def encode(self, array: np.ndarray) -> Encoded:
        raise NotImplementedError

    def decode(self, streams: Sequence[memoryview], side: dict[str, Any], spec: TensorSpec) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The ``{"id", "version", "config"}`` object the header stores for this codec."""
        return {"id": self.codec_id, "version": self.version, "config": self.get_config()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), repr(sorted(self.get_config().items()))))


class PreEncoded:
    """A tensor that a transform has already turned into (or knows how to turn into) streams.

    Examples: the integer latents of an EPR-trained layer (:class:`~squeezefmt.codecs.epr.EPRLatents`),
    the cores of a Tensor-Train layer (:class:`~squeezefmt.codecs.tt.TTCores`). The encoder
    (:func:`squeezefmt.encode.plan_and_encode`) stores ``encode(choose)``'s streams as they are, with
    ``dtype`` and ``shape`` as the tensor's declared type and shape; ``choose(part)`` is the preset's
    codec choice for a part (e.g. one TT core), for items that code parts with a nested codec.
    """

    dtype: str
    shape: tuple[int, ...]

    def encode(self, choose) -> tuple["Codec", Encoded]:
        """``(codec, encoded)``: the codec the header describes and its output."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        """The tensor a decoder produces (to code it with another codec instead)."""
        raise NotImplementedError

    def encode_with(self, codec: "Codec") -> Encoded:
        """Encode this tensor with an explicitly chosen codec (default: its dense value)."""
        return codec.encode(self.dense())


def lossy_stats(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Max absolute error and relative RMS error of a lossy reconstruction."""
    a = np.asarray(original, dtype=np.float64).ravel()
    b = np.asarray(decoded, dtype=np.float64).ravel()
    if a.size == 0:
        return {"max_abs_err": 0.0, "rel_rms_err": 0.0}
    diff = a - b
    norm = float(np.sqrt(np.mean(a * a)))
    rms = float(np.sqrt(np.mean(diff * diff)))
    return {
        "max_abs_err": float(np.max(np.abs(diff))),
        "rel_rms_err": rms / norm if norm > 0 else (0.0 if rms == 0 else float("inf")),
    }


# -- side-information validation helpers (side comes from an untrusted header) -------------------

def side_int(side: dict[str, Any], key: str, lo: int, hi: int) -> int:
    """``side[key]`` as an int in ``[lo, hi]``, else StreamError."""
    value = side.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise StreamError(f"side information {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def side_str(side: dict[str, Any], key: str, allowed: Sequence[str]) -> str:
    value = side.get(key)
    if value not in allowed:
        raise StreamError(f"side information {key!r} must be one of {list(allowed)}, got {value!r}")
    return value


def expect_streams(streams: Sequence[memoryview], count: int, codec_id: str) -> None:
    if len(streams) != count:
        raise StreamError(f"codec {codec_id!r} expects {count} stream(s), the header lists {len(streams)}")


def expect_length(stream: memoryview, length: int, what: str) -> None:
    if len(stream) != length:
        raise StreamError(f"{what}: stream has {len(stream)} bytes, the declared shape needs {length}")
