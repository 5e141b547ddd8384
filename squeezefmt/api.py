"""The public numpy-level API: ``save`` a dict of arrays, ``open`` a container, ``load`` it all back.

None of this imports TensorFlow; a federated server or a device decoder needs only numpy and
zstandard.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ._version import __version__
from .codecs import Codec
from .container import DEFAULT_LIMITS, Limits, SqzFile, write_container
from .errors import SqueezeError
from .metadata import layer_groups
from .encode import Item, plan_and_encode
from .presets import TensorContext


def save(
    arrays: Mapping[str, Item],
    target=None,
    *,
    preset: str = "lossless",
    codecs: Mapping[str, Codec] | None = None,
    metadata: Mapping[str, Any] | None = None,
    contexts: Mapping[str, TensorContext] | None = None,
    progress=None,
    _extra_metadata: Mapping[str, Any] | None = None,
):
    """Encode ``arrays`` (name -> numpy array or :class:`~squeezefmt.codecs.PreEncoded`) into a .sqz container.

    ``target`` is a path (written atomically), a binary file object, or None to get the bytes back.
    ``preset`` picks the codec per tensor (see :mod:`squeezefmt.presets`); ``codecs`` maps
    tensor names to explicit codecs. ``metadata`` is free JSON-able user metadata, returned by
    ``SqzFile.metadata()["user"]``. Everything is encoded before anything is written, so a failure
    leaves no partial file behind.
    """
    if not isinstance(arrays, Mapping):
        raise SqueezeError("save() takes a mapping of tensor name -> numpy array")
    pending = plan_and_encode(arrays, preset_name=preset, codecs=codecs, contexts=contexts, progress=progress)
    meta: dict[str, Any] = {"writer": f"squeezefmt {__version__}", "preset": preset}
    if _extra_metadata:
        meta.update(_extra_metadata)
    if metadata is not None:
        meta["user"] = dict(metadata)
    return write_container(pending, target, meta)


def open(source, *, limits: Limits = DEFAULT_LIMITS) -> SqzFile:  # noqa: A001 - mirrors builtins.open
    """Open a container from a path (memory-mapped), bytes, or a binary file object.

    Its layers (``f.layer_names()``, ``f.layer(name)``) follow the Keras metadata of containers packed
    from Keras models, else the tensor-name prefixes.
    """
    return SqzFile(source, limits=limits, grouping=layer_groups)


def load(source, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """Decode every tensor of a container into a dict (name -> numpy array), in file order."""
    with SqzFile(source, limits=limits) as f:
        return f.tensors()
