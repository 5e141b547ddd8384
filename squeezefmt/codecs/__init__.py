"""Stream codecs: one module per stream kind, registered by codec id.

Importing this package registers every built-in codec. Use :func:`get_codec` to rebuild a codec
from a header description and :func:`codec_ids` to list them.
"""
from .base import Codec, Encoded, TensorSpec, lossy_stats
from .registry import codec_class, codec_ids, decode_nested, encode_nested, get_codec, register

# Built-in codecs (importing registers them).
from . import raw, zstd_codec, bytegroup  # noqa: E402,F401
from . import epr  # noqa: E402,F401
from . import tt  # noqa: E402,F401
from . import quantize, cluster, sparse  # noqa: E402,F401
from . import cabac_quant  # noqa: E402,F401

__all__ = [
    "Codec", "Encoded", "TensorSpec", "lossy_stats", "codec_class", "codec_ids", "decode_nested",
    "encode_nested", "get_codec", "register",
]
