"""Reading a .sqz container: validated header, random access to one tensor, full verification."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator

import numpy as np

from ..codecs import TensorSpec, get_codec
from ..codecs.decode import decode_tensor
from ..errors import ChecksumError, FormatError, LimitError, SqueezeError, TruncatedError
from .header import TensorEntry, parse_header
from .jsonbound import header_json
from ..checksum import crc32
from .layout import PREAMBLE_SIZE, parse_preamble, resolve_json_len
from .limits import DEFAULT_LIMITS, Limits
from .layers import Grouping, LayerAccessMixin, LayerInfo  # noqa: F401 - layer-level access (f.layer(name))
from .source import open_source


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor (no stream is read to produce it)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    codec: str
    codec_config: dict[str, Any]
    nbytes: int            # decoded size in bytes
    stored_bytes: int      # bytes of its streams in the file
    side_bytes: int        # bytes of its JSON side information in the header
    streams: int
    stats: dict[str, Any]

    @property
    def ratio(self) -> float:
        stored = self.stored_bytes + self.side_bytes
        return self.nbytes / stored if stored else float("inf")


class SqzFile(LayerAccessMixin):
    """An open .sqz container. Use as a context manager::

        with squeezefmt.open("model.sqz") as f:
            for name in f.keys():
                array = f.tensor(name)

    Opening reads and validates the preamble and header only; ``tensor(name)`` reads, checksums and
    decodes that tensor's streams only.
    """

    def __init__(self, source, *, limits: Limits = DEFAULT_LIMITS, grouping: Grouping | None = None):
        self._source = open_source(source)
        self._limits = limits
        self._grouping = grouping  # how tensors form layers (see container/layers.py)
        try:
            self._load_header()
        except BaseException:
            self._source.close()
            raise

    def _load_header(self) -> None:
        src = self._source
        pre = parse_preamble(bytes(src.read(0, min(PREAMBLE_SIZE, src.size))))
        if max(pre.header_len, pre.json_len) > self._limits.max_header_bytes:
            raise LimitError(f"header is {max(pre.header_len, pre.json_len)} bytes; "
                             f"the limit is {self._limits.max_header_bytes}")
        if src.size < pre.file_len:
            raise TruncatedError(f"file is truncated: {src.size} bytes, the preamble says {pre.file_len}")
        if src.size > pre.file_len:
            raise FormatError(f"{src.size - pre.file_len} unexpected bytes after the end of the container")
        if PREAMBLE_SIZE + pre.header_len > pre.file_len:
            raise TruncatedError(f"header of {pre.header_len} bytes does not fit in a {pre.file_len}-byte file")
        stored = bytes(src.read(PREAMBLE_SIZE, pre.header_len))
        if crc32(stored) != pre.header_crc:
            raise ChecksumError("header checksum mismatch: the header is corrupt")
        pre = resolve_json_len(pre, stored)  # format 1.2: the stored header states the JSON length
        if pre.json_len > self._limits.max_header_bytes:
            raise LimitError(f"header JSON is {pre.json_len} bytes; the limit is {self._limits.max_header_bytes}")
        raw = header_json(stored, pre, self._limits)
        self._preamble = pre
        self._header_json = raw
        entries, self._metadata = parse_header(raw, pre, self._limits)
        self._entries = {e.name: e for e in entries}

    # -- mapping-like access -----------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Tensor names, in file order."""
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    @property
    def format_version(self) -> tuple[int, int]:
        return (self._preamble.major, self._preamble.minor)

    @property
    def file_size(self) -> int:
        return self._preamble.file_len

    @property
    def header_size(self) -> int:
        """Bytes the header takes in the file (compressed size when it is compressed)."""
        return self._preamble.header_len

    @property
    def preamble(self):
        """The parsed preamble (format version, flags, header and file lengths)."""
        return self._preamble

    def header_json(self) -> bytes:
        """The header's JSON text as stored (compact representation for format 1.1)."""
        return bytes(self._header_json)

    def metadata(self) -> dict[str, Any]:
        """The container's metadata object (model config, packing options, user metadata); a copy."""
        return copy.deepcopy(self._metadata)

    def entry(self, name: str) -> TensorEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in this container") from None

    def info(self, name: str) -> TensorInfo:
        e = self.entry(name)
        from .header import dumps

        side_bytes = len(dumps(e.side)) if e.side else 0
        return TensorInfo(
            name=e.name, dtype=e.dtype, shape=e.shape, codec=str(e.codec.get("id")),
            codec_config=dict(e.codec.get("config", {})), nbytes=e.nbytes, stored_bytes=e.stored_bytes,
            side_bytes=side_bytes, streams=len(e.streams), stats=dict(e.stats),
        )

    def nbytes(self, name: str) -> int:
        """Decoded size of tensor ``name`` in bytes (from the header; nothing is decoded).

        ``name`` may also be a layer name (see :meth:`layer_names`): the decoded size of its tensors.
        """
        if name not in self._entries and name in self._layer_table():
            return self.layer_nbytes(name)
        return self.entry(name).nbytes

    # -- decoding ----------------------------------------------------------------------------------
    def streams(self, name: str) -> list[memoryview]:
        """The checksum-verified raw streams of tensor ``name``."""
        e = self.entry(name)
        if self._source is None:
            raise SqueezeError(f"cannot read tensor {name!r}: the container is closed")
        if self._preamble.small:
            self._check_data_crc()
        out, crc = [], 0
        for i, s in enumerate(e.streams):
            view = self._source.read(s.offset, s.length)
            if self._preamble.small:  # format 1.2: checked above, one CRC over all streams
                pass
            elif e.crc32 is not None:  # format 1.1: one CRC over the tensor's streams
                crc = crc32(view, crc)
            elif crc32(view) != s.crc32:
                raise ChecksumError(f"tensor {name!r}: stream {i} checksum mismatch (the file is corrupt)")
            out.append(view)
        if e.crc32 is not None and crc & 0xFFFFFFFF != e.crc32:
            raise ChecksumError(f"tensor {name!r}: checksum mismatch (the file is corrupt)")
        return out

    def _check_data_crc(self) -> None:
        """Format 1.2: the CRC-32 of all streams (at most 64 KiB in a writer's file), checked once."""
        if self.__dict__.get("_sqz_data_ok"):
            return
        crc = 0
        for e in self._entries.values():
            for s in e.streams:
                crc = crc32(self._source.read(s.offset, s.length), crc)
        if crc & 0xFFFFFFFF != self._preamble.data_crc:
            raise ChecksumError("stream data checksum mismatch (the file is corrupt)")
        self.__dict__["_sqz_data_ok"] = True

    def tensor(self, name: str) -> np.ndarray:
        """Decode tensor ``name`` into a new numpy array (checksums verified)."""
        e = self.entry(name)
        codec = get_codec(e.codec)
        return decode_tensor(name, codec, TensorSpec(e.dtype, e.shape), e.side, self.streams(name))

    def tensors(self) -> dict[str, np.ndarray]:
        """Decode every tensor (in file order)."""
        return {name: self.tensor(name) for name in self._entries}

    def verify(self, *, progress=None) -> list[str]:
        """Check every checksum, the zero padding between streams, and decode every tensor.

        Returns the list of tensor names checked; raises the first error found.
        """
        src, pre = self._source, self._preamble
        pad = src.read(PREAMBLE_SIZE + pre.header_len, pre.data_start - PREAMBLE_SIZE - pre.header_len)
        if len(pad) and any(pad):
            raise FormatError("non-zero padding after the header")
        cursor = pre.data_start
        for e in self._entries.values():
            for s in e.streams:
                if s.offset > cursor and any(src.read(cursor, s.offset - cursor)):
                    raise FormatError(f"tensor {e.name!r}: non-zero padding before a stream")
                cursor = s.offset + s.length
        checked = []
        for name in self._entries:
            self.tensor(name)
            checked.append(name)
            if progress is not None:
                progress(name)
        return checked

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        src, self._source = getattr(self, "_source", None), None
        if src is not None:
            try:
                src.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping is freed with it

    def __enter__(self) -> "SqzFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqzFile v{self.format_version[0]}.{self.format_version[1]} {len(self)} tensors, {self.file_size} bytes>"


