"""Random-access byte sources a container can be read from: bytes, memory-mapped paths, file objects.

Each source exposes ``size`` and ``read(offset, length) -> memoryview`` and reads only what is
asked for, so opening a container and decoding one tensor touches the header and that tensor's
streams only.
"""
from __future__ import annotations

import io
import mmap
import os
from typing import BinaryIO

from ..errors import SqueezeError, TruncatedError


class ByteSource:
    """Bytes-like data already in memory (bytes, bytearray, memoryview, numpy buffer)."""

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)

    def read(self, offset: int, length: int) -> memoryview:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedError(f"data ends at byte {self.size}; needed bytes {offset}..{offset + length}")
        return self._view[offset: offset + length]

    def close(self) -> None:
        self._view.release()


class MmapSource(ByteSource):
    """A file on disk, memory-mapped read-only (pages are read only when a stream is decoded)."""

    def __init__(self, path):
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            size = os.fstat(self._file.fileno()).st_size
            self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except (OSError, ValueError):
            self._file.close()
            raise
        super().__init__(self._mmap if self._mmap is not None else b"")

    def release(self, offset: int, length: int) -> None:
        """Drop the pages of ``[offset, offset + length)`` from the resident set (advisory; read-only map,
        so the data is simply mapped again from the page cache on the next read)."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if self._mmap is None or advice is None or length <= 0:
            return
        start = offset - offset % mmap.PAGESIZE
        end = min(offset + length, self.size)
        try:
            self._mmap.madvise(advice, start, end - start)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        super().close()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A view of the map is still alive (e.g. held by a traceback); the mapping is
                # released when the last view goes away.
                pass
        self._file.close()


class FileObjectSource:
    """A seekable binary file object; each read seeks and reads just that range."""

    def __init__(self, fileobj: BinaryIO):
        self._f = fileobj
        start = fileobj.tell()
        self._base = start
        fileobj.seek(0, io.SEEK_END)
        self.size = fileobj.tell() - start

    def read(self, offset: int, length: int) -> memoryview:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise TruncatedError(f"data ends at byte {self.size}; needed bytes {offset}..{offset + length}")
        self._f.seek(self._base + offset)
        data = self._f.read(length)
        if len(data) != length:
            raise TruncatedError(f"short read at byte {offset}: got {len(data)} of {length} bytes")
        return memoryview(data)

    def close(self) -> None:  # the caller owns the file object
        pass


def open_source(obj):
    """Pick the source for ``obj``: a path (mmap), a bytes-like object, or a binary file object."""
    if isinstance(obj, (str, os.PathLike)):
        return MmapSource(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return ByteSource(obj)
    if hasattr(obj, "read") and hasattr(obj, "seek"):
        if isinstance(obj, io.TextIOBase):
            raise SqueezeError("a .sqz container must be read from a binary file object (open it with 'rb')")
        return FileObjectSource(obj)
    try:
        return ByteSource(obj)
    except TypeError:
        raise SqueezeError(f"cannot read a container from {type(obj).__name__}: pass a path, bytes or a binary file") from None
