"""Writing a .sqz container from already-encoded tensors.

The writer knows nothing of codecs beyond their header description and the alignment each one
declares for its streams (``Codec.stream_alignment``): callers hand it :class:`PendingTensor` records
(name, dtype, shape, codec description and its :class:`Encoded` output). It lays the streams out canonically (format 1.0: each at the next 64-byte boundary;
format 1.1: each at the next multiple of the alignment its codec declares, entropy-coded streams
back to back), writes the header deterministically, and either returns bytes, writes to a binary file
object, or atomically replaces a path (temporary file in the same directory + ``os.replace``).
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
import tempfile
import zlib
from typing import Any, Iterable

from ..codecs import Encoded
from ..errors import SqueezeError
from .tempfiles import SUFFIX as TEMP_SUFFIX, prefix_for, remove_stale
from .compact import compact_metadata, compact_tensor, derived_name_flags
from .header import dumps
from .layout import ALIGN, PREAMBLE_SIZE, SMALL_MAX_STREAM_BYTES, align, build_preamble, crc32, stream_offset


@dataclasses.dataclass
class PendingTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    codec: dict[str, Any]
    encoded: Encoded


def _stream_aligns(t: PendingTensor, compact: bool) -> list[int]:
    """Alignment of each stream of ``t``: what its codec declares (1.1), 64 for all (1.0)."""
    if not compact:
        return [ALIGN] * len(t.encoded.streams)
    from ..codecs.registry import stream_alignment  # noqa: PLC0415

    return stream_alignment(t.codec, t.encoded.side, [len(s) for s in t.encoded.streams])


def _placed(tensors: list[PendingTensor], aligns: list[list[int]], data_start: int, compact: bool):
    """``(offset, bytes)`` of every stream in file order, and the end of the last one."""
    cursor, out = data_start, []
    for t, al in zip(tensors, aligns):
        for s, a in zip(t.encoded.streams, al):
            offset = stream_offset(cursor, len(s), a, compact)
            out.append((offset, s))
            cursor = offset + len(s)
    return out, cursor


def _header_v10(tensors: list[PendingTensor], metadata: dict[str, Any], placed, pad: str):
    records, it = [], iter(placed)
    for t in tensors:
        streams = []
        for _ in t.encoded.streams:
            offset, s = next(it)
            streams.append({"offset": offset, "length": len(s), "crc32": crc32(s)})
        record = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "codec": t.codec, "streams": streams}
        if t.encoded.side:
            record["side"] = t.encoded.side
        if t.encoded.stats:
            record["stats"] = t.encoded.stats
        records.append(record)
    header = {"format": "squeezefmt", "tensors": records, "metadata": metadata}
    if pad:
        header["pad"] = pad
    return header


def _header_v11(tensors: list[PendingTensor], metadata: dict[str, Any], aligns: list[list[int]],
                small: bool = False):
    """The compact header (format 1.1; ``small``: format 1.2, no tensor CRCs, names left to the shorthand)."""
    codecs: list[Any] = []
    index: dict[bytes, int] = {}
    records = []
    metadata = compact_metadata(metadata)
    derived = derived_name_flags([t.name for t in tensors], metadata) if small else [False] * len(tensors)
    for t, al, short in zip(tensors, aligns, derived):
        key = dumps(t.codec)
        if key not in index:
            index[key] = len(codecs)
            codecs.append(t.codec)
        crc = 0
        for s in t.encoded.streams:
            crc = zlib.crc32(s, crc)
        record = {"name": t.name, "dtype": t.dtype, "shape": t.shape, "side": t.encoded.side, "stats": t.encoded.stats}
        records.append(compact_tensor(record, index[key], [len(s) for s in t.encoded.streams], al,
                                      None if small else crc & 0xFFFFFFFF, short))
    return {"format": "squeezefmt", "codecs": codecs, "tensors": records, "metadata": metadata}


def _data_crc(tensors: list[PendingTensor]) -> int:
    crc = 0
    for t in tensors:
        for s in t.encoded.streams:
            crc = zlib.crc32(s, crc)
    return crc & 0xFFFFFFFF


def _pad_text(n: int) -> str:
    """``n`` deterministic, incompressible hex characters (a SHA-256 chain) to grow a 1.0 header."""
    out, block = [], b"squeezefmt-pad"
    while sum(len(o) for o in out) < n:
        block = hashlib.sha256(block).digest()
        out.append(block.hex())
    return "".join(out)[:n]


def _settle_v10(tensors: list[PendingTensor], metadata: dict[str, Any], aligns):
    """Lay out a 1.0 container: a fixed point of (header length -> offsets -> header), header compressed.

    The offsets the header lists depend on where the data starts, which depends on the compressed
    header's length; that length can *shrink* when the offsets grow, so the plain iteration may flip
    between two 64-byte boundaries. Then the header gets a ``"pad"`` string of incompressible
    characters until it fills the larger layout (bounded slack: under one 64-byte block plus the pad's
    own steps). ``data_start`` and the pad only grow, so this terminates.
    """
    data_start, pad_len = align(PREAMBLE_SIZE), 0
    for _ in range(256):
        placed, end = _placed(tensors, aligns, data_start, False)
        json_bytes = dumps(_header_v10(tensors, metadata, placed, _pad_text(pad_len)))
        pre, stored = build_preamble(json_bytes, lambda _start, n=end: n)
        if pre.data_start == data_start:
            return pre, stored, placed
        if pre.data_start > data_start:
            data_start = pre.data_start
        else:  # the header shrank below the layout it describes: grow it into place
            deficit = data_start - ALIGN + 1 - (PREAMBLE_SIZE + pre.header_len)
            pad_len += max(16, 2 * deficit)
    raise SqueezeError("could not settle the container layout")  # pragma: no cover - bounded above


def build_pieces(tensors: Iterable[PendingTensor], metadata: dict[str, Any], *,
                 format_version: tuple[int, int] | None = None) -> list[bytes]:
    """The container as a list of byte pieces (preamble + header, then streams with their padding).

    ``format_version``: None writes the oldest version that expresses the file: 1.0 when every stream
    needs 64-byte alignment; otherwise 1.2 when the streams total at most 64 KiB (one CRC for all of
    them, names from the Keras shorthand) and 1.1 above; ``(1, 0)``, ``(1, 1)`` or ``(1, 2)`` force one.
    """
    tensors = list(tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise SqueezeError(f"tensor name {dup!r} is used twice")
    if format_version not in (None, (1, 0), (1, 1), (1, 2)):
        raise SqueezeError(f"cannot write format version {format_version!r}: choose (1, 0), (1, 1) or (1, 2)")
    aligns = [_stream_aligns(t, True) for t in tensors]
    compact = format_version in ((1, 1), (1, 2)) or (format_version is None and any(
        a == 1 and len(s) for t, al in zip(tensors, aligns) for s, a in zip(t.encoded.streams, al)))
    small = format_version == (1, 2) or (compact and format_version is None and sum(
        len(s) for t in tensors for s in t.encoded.streams) <= SMALL_MAX_STREAM_BYTES)
    if compact:
        json_bytes = dumps(_header_v11(tensors, metadata, aligns, small))

        def file_len_of(start: int) -> int:
            return _placed(tensors, aligns, start, True)[1]
        pre, stored = build_preamble(json_bytes, file_len_of, compact=True,
                                     data_crc=_data_crc(tensors) if small else None)
        placed, _ = _placed(tensors, aligns, pre.data_start, True)
    else:
        aligns = [_stream_aligns(t, False) for t in tensors]
        pre, stored, placed = _settle_v10(tensors, metadata, aligns)
    if pre.json_len >= 2**32 or pre.header_len >= 2**32:
        raise SqueezeError("header larger than 4 GiB")
    head = pre.pack() + stored
    pieces = [head + bytes(pre.data_start - len(head))]
    cursor = pre.data_start
    for offset, s in placed:
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
    remove_stale(path)  # leftovers of killed earlier writes to this target
    fd, tmp = tempfile.mkstemp(prefix=prefix_for(path), suffix=TEMP_SUFFIX, dir=directory)
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


def write_container(tensors: Iterable[PendingTensor], target, metadata: dict[str, Any] | None = None, *,
                    format_version: tuple[int, int] | None = None):
    """Lay out and write a container; returns the bytes when ``target`` is None.

    ``format_version``: see :func:`build_pieces` (default: the oldest version that expresses the file).
    """
    return write_pieces(build_pieces(tensors, metadata or {}, format_version=format_version), target)


__all__ = ["PendingTensor", "build_pieces", "write_pieces", "write_container"]
