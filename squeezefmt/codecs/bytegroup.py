"""``bytegroup``: lossless byte-plane grouping + zstd, for float (and integer) tensors.

Trained float weights have a skewed sign/exponent and near-random mantissa bits. Mixing them in
one byte stream hides the skew from zstd; splitting the elements into byte planes (as ZipNN does)
lets each plane be coded on its own. For floats the element is first rotated left by one bit so
that the exponent fills one whole byte (float32/bfloat16: the top byte; float16/float64: the top
bits) and the sign moves to the lowest bit.

Streams: one per byte plane, least significant byte first. ``side["planes"]`` says per plane
whether it is a zstd frame (``"zstd"``) or stored as is (``"raw"``, chosen when zstd would not
shrink it), so the codec never expands the tensor by more than zstd's frame header on a plane.
"""
from __future__ import annotations

import numpy as np

from ..buffers import empty_aligned
from ..dtypes import FLOAT_NAMES, as_storage, dtype_name, from_storage, itemsize
from ..errors import StreamError
import squeezefmt.codecs.zstd_util as zstd_util
from .base import Encoded, TensorSpec, expect_streams
from .registry import register
from .zstd_codec import Zstd

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}

try:  # optional C fast path for the byte shuffle; the numpy code below is the reference
    import squeezefmt.codecs._bytegroupc as _bytegroupc  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the build
    _bytegroupc = None


def split_planes(storage: np.ndarray, rotate: bool) -> list[np.ndarray]:
    """Byte planes (least significant first) of a contiguous storage array, sign rotated for floats."""
    width = storage.dtype.itemsize
    u = storage.reshape(-1).view(_UINT[width])
    if rotate and width > 1:
        bits = np.array(8 * width - 1, dtype=u.dtype)
        u = (u << np.array(1, dtype=u.dtype)) | (u >> bits)
    as_bytes = u.view(np.uint8).reshape(-1, width)
    return [np.ascontiguousarray(as_bytes[:, i]) for i in range(width)]


def join_planes(planes: list, width: int, count: int, rotate: bool) -> np.ndarray:
    """Inverse of :func:`split_planes`: interleave ``width`` planes of ``count`` bytes.

    Uses the C extension when it is built, else :func:`join_planes_reference`.
    """
    if _bytegroupc is None:
        return join_planes_reference(planes, width, count, rotate)
    out = empty_aligned(count, _UINT[width])
    _bytegroupc.join(planes, out, rotate)
    return out


def join_planes_reference(planes: list, width: int, count: int, rotate: bool) -> np.ndarray:
    """The numpy reference for :func:`join_planes`."""
    inter = np.empty((count, width), dtype=np.uint8)
    for i, plane in enumerate(planes):
        inter[:, i] = np.frombuffer(plane, dtype=np.uint8)
    u = inter.reshape(-1).view(_UINT[width])
    if rotate and width > 1:
        bits = np.array(8 * width - 1, dtype=u.dtype)
        u = (u >> np.array(1, dtype=u.dtype)) | (u << bits)
    return u


@register
class ByteGroup(Zstd):
    """Byte planes, each zstd-compressed at ``level`` (or stored raw when that is smaller)."""

    codec_id = "bytegroup"
    version = 1
    lossless = True

    def encode(self, array: np.ndarray) -> Encoded:
        name = dtype_name(array.dtype)
        storage = as_storage(array)
        streams, modes = [], []
        for plane in split_planes(storage, rotate=name in FLOAT_NAMES):
            packed = zstd_util.compress(plane, self.level)
            if len(packed) < plane.nbytes:
                streams.append(packed)
                modes.append("zstd")
            else:
                streams.append(plane.tobytes())
                modes.append("raw")
        return Encoded(streams=streams, side={"planes": modes})

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        width = itemsize(spec.dtype)
        expect_streams(streams, width, self.codec_id)
        modes = side.get("planes")
        if not isinstance(modes, list) or len(modes) != width or any(m not in ("zstd", "raw") for m in modes):
            raise StreamError(f"bytegroup: side 'planes' must list {width} of 'zstd'/'raw', got {modes!r}")
        count = spec.size
        sources = []
        for i, (mode, stream) in enumerate(zip(modes, streams)):
            if mode == "raw":
                if len(stream) != count:
                    raise StreamError(f"bytegroup: raw plane {i} has {len(stream)} bytes, expected {count}")
                sources.append(memoryview(stream).cast("B"))  # joined straight from the (mapped) file
            else:
                sources.append(zstd_util.FrameReader(stream, count, f"bytegroup plane {i}"))
        u = empty_aligned(count, _UINT[width], populate=True)  # every stream checked to fill it
        join_streams(sources, u, rotate=spec.dtype in FLOAT_NAMES)
        return from_storage(u.view(_storage_dtype(spec.dtype)).reshape(spec.shape), spec.dtype)


#: Elements joined per step: zstd planes are decompressed into scratch of this many bytes per plane.
JOIN_BLOCK = 1 << 17


def join_streams(sources: list, out: np.ndarray, rotate: bool) -> None:
    """Join planes into ``out`` block by block: a raw plane is a view of the stream, a zstd plane a
    :class:`~squeezefmt.codecs.zstd_util.FrameReader` decompressed into a small reused buffer."""
    count = out.size
    scratch = [bytearray(min(count, JOIN_BLOCK)) if not isinstance(s, memoryview) else None for s in sources]
    for start in range(0, count, JOIN_BLOCK):
        end = min(count, start + JOIN_BLOCK)
        parts = []
        for src, buf in zip(sources, scratch):
            if buf is None:
                parts.append(src[start:end])
            else:
                part = memoryview(buf)[:end - start]
                src.readinto(part)
                parts.append(part)
        join_planes_into(parts, out[start:end], rotate)
    for src in sources:
        if not isinstance(src, memoryview):
            src.finish()


def join_planes_into(planes: list, out: np.ndarray, rotate: bool) -> None:
    """:func:`join_planes` into the contiguous unsigned array ``out`` (C loop when built)."""
    if _bytegroupc is not None:
        _bytegroupc.join(planes, out, rotate)
    else:
        out[...] = join_planes_reference(planes, out.dtype.itemsize, out.size, rotate)


def _storage_dtype(name: str) -> np.dtype:
    from ..dtypes import numpy_dtype

    return numpy_dtype(name, storage=True)
