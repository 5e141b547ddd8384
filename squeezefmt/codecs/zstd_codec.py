"""``zstd``: the tensor's little-endian bytes in one zstd frame. Lossless; the baseline codec."""
from __future__ import annotations

import numpy as np

from ..buffers import empty_aligned
from ..dtypes import as_storage, from_storage, itemsize, numpy_dtype
import squeezefmt.codecs.zstd_util as zstd_util
from .base import Codec, Encoded, TensorSpec, expect_streams
from .registry import register


@register
class Zstd(Codec):
    codec_id = "zstd"
    version = 1
    lossless = True

    def __init__(self, level: int = 19):
        self.level = zstd_util.check_level(level)

    def get_config(self):
        return {"level": self.level}

    def encode(self, array: np.ndarray) -> Encoded:
        return Encoded(streams=[zstd_util.compress(as_storage(array).tobytes(), self.level)])

    def decode(self, streams, side, spec: TensorSpec) -> np.ndarray:
        expect_streams(streams, 1, self.codec_id)
        storage = numpy_dtype(spec.dtype, storage=True)
        reader = zstd_util.FrameReader(streams[0], spec.size * storage.itemsize, "zstd")  # checked before writing
        flat = empty_aligned(spec.size, storage, populate=True)
        reader.readinto(flat)  # straight into the output: no intermediate bytes, no copy
        reader.finish()
        return from_storage(flat.reshape(spec.shape), spec.dtype)
