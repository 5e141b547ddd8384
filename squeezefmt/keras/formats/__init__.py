"""Reading Keras files into a :class:`~squeezefmt.keras.archive.KerasArchive` (no TensorFlow).

:func:`read_archive` sniffs the file kind from its first bytes and hands it to the reader
registered for that kind: HDF5 (:mod:`.h5`: legacy full-model and weights-only .h5, written by Keras
2 or Keras 3), Keras 3 ``.keras`` zips and Keras 3 ``.weights.h5`` files (:mod:`.keras_v3`).

Extension point: a reader module (e.g. ``keras_v3.py`` for Keras 3 ``.keras`` zips, or a Keras 3
``.weights.h5`` layout inside HDF5) calls :func:`register_reader` with a ``sniff(head, path)``
predicate and a ``read(source, include_optimizer=...)`` function, and is imported at the bottom of
this module. Readers registered later are tried first, so a more specific HDF5 layout can claim
its files before the generic one.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

from ...errors import KerasFormatError
from ..archive import KerasArchive

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass(frozen=True)
class Reader:
    kind: str                                   # e.g. "h5"
    sniff: Callable[[bytes, str], bool]         # (first 512 bytes, path) -> whether this reader takes it
    read: Callable[..., KerasArchive]           # read(source, *, include_optimizer) -> archive


_READERS: list[Reader] = []


def register_reader(kind: str, sniff: Callable[[bytes, str], bool], read: Callable[..., KerasArchive]) -> None:
    """Add a file reader (see the module doc); later registrations are tried first."""
    _READERS.insert(0, Reader(kind, sniff, read))


def read_archive(source, *, include_optimizer: bool = False) -> KerasArchive:
    """Read a Keras model or weights file (a path, or an open ``h5py.File``) into an archive."""
    if not isinstance(source, (str, os.PathLike)):  # an open h5py.File (in-memory saves)
        from .h5 import read_h5  # noqa: PLC0415

        return read_h5(source, include_optimizer=include_optimizer)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    for reader in _READERS:
        if reader.sniff(head, path):
            return reader.read(path, include_optimizer=include_optimizer)
    if head.startswith(ZIP_MAGIC):
        raise KerasFormatError(f"{path!r} is a zip file but not a Keras 3 .keras archive")
    return _read_h5(path, include_optimizer=include_optimizer)  # h5py's own check (user blocks, clear error)


def _is_hdf5(head: bytes, path: str) -> bool:
    return head.startswith(HDF5_MAGIC)


def _read_h5(path, *, include_optimizer: bool = False) -> KerasArchive:
    from .h5 import read_h5  # noqa: PLC0415 - needs h5py, imported when a file is read

    return read_h5(path, include_optimizer=include_optimizer)


register_reader("h5", _is_hdf5, _read_h5)


def _is_zip(head: bytes, path: str) -> bool:
    return head.startswith(ZIP_MAGIC)


def _read_keras_zip(path, *, include_optimizer: bool = False) -> KerasArchive:
    from .keras_v3 import read_keras_zip  # noqa: PLC0415

    return read_keras_zip(path, include_optimizer=include_optimizer)


def _is_keras3_weights(head: bytes, path: str) -> bool:
    from .keras_v3 import sniff_keras3_weights  # noqa: PLC0415

    return sniff_keras3_weights(head, path)


def _read_keras3_weights(path, *, include_optimizer: bool = False) -> KerasArchive:
    from .keras_v3 import read_weights_h5  # noqa: PLC0415

    return read_weights_h5(path, include_optimizer=include_optimizer)


register_reader("keras_zip", _is_zip, _read_keras_zip)                    # Keras 3 .keras
register_reader("keras3_weights", _is_keras3_weights, _read_keras3_weights)  # Keras 3 .weights.h5 (tried first)
