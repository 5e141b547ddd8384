"""Codec registry: codec id -> class, plus nesting helpers.

``register`` is a class decorator. ``get_codec({"id", "version", "config"})`` rebuilds a codec from
its header description and raises :class:`~squeezefmt.errors.UnknownCodecError` naming the id when
this build does not know it (or knows only an older version of its stream layout).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import HeaderError, StreamError, UnknownCodecError
from .base import Codec, Encoded, TensorSpec

_REGISTRY: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    """Class decorator adding ``cls`` to the registry under ``cls.codec_id``."""
    existing = _REGISTRY.get(cls.codec_id)
    if existing is not None and existing is not cls:
        raise ValueError(f"codec id {cls.codec_id!r} is already registered by {existing.__name__}")
    _REGISTRY[cls.codec_id] = cls
    return cls


def codec_ids() -> list[str]:
    """The ids of every registered codec, sorted."""
    return sorted(_REGISTRY)


def codec_class(codec_id: str) -> type[Codec]:
    try:
        return _REGISTRY[codec_id]
    except KeyError:
        raise UnknownCodecError(
            f"unknown codec {codec_id!r}: this squeezefmt build knows {', '.join(codec_ids())}"
        ) from None


def get_codec(description: Any) -> Codec:
    """Rebuild a codec from its header description ``{"id": str, "version": int, "config": {...}}``."""
    if not isinstance(description, dict):
        raise HeaderError(f"codec description must be an object, got {type(description).__name__}")
    codec_id, version, config = description.get("id"), description.get("version"), description.get("config", {})
    if not isinstance(codec_id, str):
        raise HeaderError(f"codec id must be a string, got {codec_id!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HeaderError(f"codec {codec_id!r}: version must be a positive integer, got {version!r}")
    if not isinstance(config, dict):
        raise HeaderError(f"codec {codec_id!r}: config must be an object")
    cls = codec_class(codec_id)
    if version > cls.version:
        raise UnknownCodecError(
            f"codec {codec_id!r} version {version} is newer than this build supports (up to {cls.version})"
        )
    return cls.from_config(config)


# -- nesting: a codec that sends part of its data through another codec --------------------------

def encode_nested(codec: Codec, array: np.ndarray) -> tuple[dict[str, Any], list[bytes], dict[str, Any]]:
    """Encode ``array`` with an inner codec.

    Returns ``(description, streams, stats)``; the description (codec, its side information and its
    stream count) goes into the outer codec's side information, the streams are appended to the
    outer codec's streams.
    """
    enc: Encoded = codec.encode(array)
    desc = {"codec": codec.describe(), "side": enc.side, "streams": len(enc.streams)}
    return desc, enc.streams, enc.stats


def decode_nested(desc: Any, streams: Sequence[memoryview], spec: TensorSpec) -> np.ndarray:
    """Decode an inner codec's data; ``streams`` must be exactly its streams."""
    if not isinstance(desc, dict) or not isinstance(desc.get("side", {}), dict):
        raise StreamError("nested codec description is malformed")
    if desc.get("streams") != len(streams):
        raise StreamError(f"nested codec declares {desc.get('streams')!r} streams, {len(streams)} are present")
    codec = get_codec(desc.get("codec"))
    out = codec.decode(streams, desc.get("side", {}), spec)
    check_decoded(out, spec, codec.codec_id)
    return out


def stream_alignment(description: dict[str, Any], side: dict[str, Any], lengths: Sequence[int]) -> list[int]:
    """Alignment of each stream of a tensor encoded as ``description`` (see ``Codec.stream_alignment``)."""
    return codec_class(description["id"]).stream_alignment(side or {}, lengths)


def nested_alignment(desc: dict[str, Any], lengths: Sequence[int]) -> list[int]:
    """Alignment of the streams of a nested codec description ``{"codec", "side", "streams"}``."""
    return stream_alignment(desc["codec"], desc.get("side") or {}, lengths)


def nested_stream_count(desc: Any, available: int) -> int:
    """The stream count an untrusted nested description claims, checked against what is available."""
    n = desc.get("streams") if isinstance(desc, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= available:
        raise StreamError(f"nested codec stream count {n!r} is invalid (0..{available} available)")
    return n


def check_decoded(out: np.ndarray, spec: TensorSpec, codec_id: str) -> None:
    """Guard against a codec returning something other than what the header declares."""
    from ..dtypes import numpy_dtype

    if tuple(out.shape) != tuple(spec.shape):
        raise StreamError(f"codec {codec_id!r} decoded shape {out.shape}, the header declares {spec.shape}")
    if out.dtype != numpy_dtype(spec.dtype) and out.dtype != numpy_dtype(spec.dtype, storage=True):
        raise StreamError(f"codec {codec_id!r} decoded dtype {out.dtype}, the header declares {spec.dtype}")
    if spec.dtype == "bool" and out.size and int(out.view(np.uint8).max()) > 1:
        raise StreamError(f"codec {codec_id!r}: a bool element is neither 0 nor 1 (spec/format.md section 4)")
