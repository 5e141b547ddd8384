"""Writing a .sqz container from already-encoded tensors.

The writer knows nothing of codecs beyond their header description: callers hand it
:class:`PendingTensor` records (name, dtype, shape, codec description and its :class:`Encoded`
output). It lays the streams out canonically (each at the next 64-byte boundary, in header
order), writes the header deterministically, and either returns bytes, writes to a binary file
object, or atomically replaces a path (temporary file in the same directory + ``os.replace``).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import stat
import tempfile
from typing import Any, Iterable

from ..codecs import Encoded
from ..errors import SqueezeError
from . import tempfiles
from .header import dumps
from .layout import PREAMBLE_SIZE, align, build_preamble, crc32


@dataclasses.dataclass
class PendingTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    codec: dict[str, Any]
    encoded: Encoded


def _header_object(tensors: list[PendingTensor], metadata: dict[str, Any], data_start: int):
    records, cursor, end = [], data_start, data_start
    for t in tensors:
        streams = []
        for s in t.encoded.streams:
            offset = align(cursor)
            streams.append({"offset": offset, "length": len(s), "crc32": crc32(s)})
            cursor = end = offset + len(s)
        record = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "codec": t.codec, "streams": streams}
        if t.encoded.side:
            record["side"] = t.encoded.side
        if t.encoded.stats:
            record["stats"] = t.encoded.stats
        records.append(record)
    return {"format": "squeezefmt", "tensors": records, "metadata": metadata}, end


def build_pieces(tensors: Iterable[PendingTensor], metadata: dict[str, Any]) -> list[bytes]:
    """The container as a list of byte pieces (preamble+header+padding, then streams with padding)."""
    tensors = list(tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SqueezeError(f"tensor name {dup!r} is used twice")
    # Offsets depend on the stored header's length and vice versa: iterate until the layout is
    # stable. An uncompressed header only grows as offsets grow, so that iteration settles; a
    # compressed one can shrink when offsets grow and so flip between two 64-byte boundaries.
    # When that happens the header is stored uncompressed (compression is a SHOULD in the spec),
    # which keeps the result deterministic.
    data_start = align(PREAMBLE_SIZE)
    compress_header = True
    for _ in range(64):
        header, file_len = _header_object(tensors, metadata, data_start)
        pre, stored = build_preamble(dumps(header), lambda _start, n=file_len: n, compress_header)
        if pre.data_start == data_start:
            break
        if pre.data_start < data_start:
            compress_header = False
        data_start = max(pre.data_start, data_start)
    else:  # pragma: no cover - cannot happen: the uncompressed layout is monotone
        raise SqueezeError("could not settle the container layout")
    if pre.json_len >= 2**32 or pre.header_len >= 2**32:
        raise SqueezeError("header larger than 4 GiB")
    head = pre.pack() + stored
    pieces = [head + bytes(data_start - len(head))]
    cursor = data_start
    for t in tensors:
        for s in t.encoded.streams:
            offset = align(cursor)
            if offset > cursor:
                pieces.append(bytes(offset - cursor))
            pieces.append(bytes(s))
            cursor = offset + len(s)
    return pieces


def write_pieces(pieces: list[bytes], target) -> bytes | None:
    """Send the pieces to ``target``: None -> return bytes; path -> atomic write; file object -> write."""
    if target is None:
        return b"".join(pieces)
    if isinstance(target, (str, os.PathLike)):
        _atomic_write(pieces, os.fspath(target))
        return None
    if hasattr(target, "write"):
        for p in pieces:
            target.write(p)
        return None
    raise SqueezeError(f"cannot write a container to {type(target).__name__}: pass a path, a binary file or None")


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:  # Linux: read it without changing it
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The permissions the target should get: those of the file it replaces, else what open() would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _atomic_write(pieces: list[bytes], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "the output folder does not exist", path)
    tempfiles.remove_stale(path)  # leftovers of killed earlier writes to this target
    fd, tmp = tempfile.mkstemp(prefix=tempfiles.prefix_for(path), suffix=tempfiles.SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in pieces:
                f.write(p)
            f.flush()
            os.fchmod(f.fileno(), _final_mode(path))  # mkstemp creates 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_container(tensors: Iterable[PendingTensor], target, metadata: dict[str, Any] | None = None):
    """Lay out and write a container; returns the bytes when ``target`` is None."""
    return write_pieces(build_pieces(tensors, metadata or {}), target)


__all__ = ["PendingTensor", "build_pieces", "write_pieces", "write_container"]
