"""``raw``: the tensor's little-endian bytes as they are (one stream). Lossless; mmap-friendly."""
from __future__ import annotations

import numpy as np

from ..buffers import aligned_copy
from ..dtypes import as_storage, from_storage, itemsize, numpy_dtype
from .base import Codec, Encoded, TensorSpec, expect_length, expect_streams
from .registry import register

#: Raw streams of at least this many bytes are 64-byte aligned in format 1.1/1.2 containers (a reader
#: may memory-map and view them as arrays); shorter ones (bias and BatchNorm vectors) follow the
#: previous stream directly: viewing them in place saves nothing worth up to 63 bytes of padding.
RAW_ALIGN_MIN = 4096


@register
class Raw(Codec):
    codec_id = "raw"
    version = 1
    lossless = True

    def encode(self, array: np.ndarray) -> Encoded:
        return Encoded(streams=[as_storage(array).tobytes()])

    @classmethod
    def stream_alignment(cls, side, lengths):
        """64-byte aligned (a reader may memory-map and view it), unless shorter than RAW_ALIGN_MIN bytes."""
        return [64 if n >= RAW_ALIGN_MIN else 1 for n in lengths]

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        expect_length(streams[0], spec.size * itemsize(spec.dtype), "raw")
        flat = aligned_copy(np.frombuffer(streams[0], dtype=numpy_dtype(spec.dtype, storage=True)))
        return from_storage(flat.reshape(spec.shape), spec.dtype)
