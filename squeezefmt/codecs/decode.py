"""The one place a stored tensor is decoded: codec lookup, decode, error wrapping, result check.

The container reader, the ``tt`` core reader and the federated payload encoder (which decodes
what receivers will see) all call :func:`decode_tensor`; a codec failing on corrupt data always
surfaces as a one-line :class:`~squeezefmt.errors.SqueezeError` naming the tensor.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import FormatError, SqueezeError
from .base import Codec, TensorSpec
from .registry import check_decoded, get_codec


@contextlib.contextmanager
def decode_errors(name: str, codec_id: str) -> Iterator[None]:
    """Prefix squeezefmt errors with the tensor name; turn any other decoding failure into a FormatError."""
    try:
        yield
    except SqueezeError as exc:
        raise type(exc)(f"tensor {name!r}: {exc}") from None
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:  # defensive: never leak
        raise FormatError(f"tensor {name!r}: codec {codec_id!r} failed on corrupt data: {exc}") from exc


def decode_tensor(name: str, codec: Codec | Mapping[str, Any], spec: TensorSpec, side: Any,
                  streams: Sequence[memoryview]) -> np.ndarray:
    """Decode one tensor from its verified streams (``codec``: a codec or its header description)."""
    if not isinstance(codec, Codec):
        codec = get_codec(codec)
    with decode_errors(name, codec.codec_id):
        out = codec.decode(streams, side, spec)
    check_decoded(out, spec, codec.codec_id)
    return out
