"""Stream codecs: one module per stream kind, registered by codec id.

Importing this package registers every built-in codec. Use :func:`get_codec` to rebuild a codec
from a header description and :func:`codec_ids` to list them.
"""
from .base import Codec, Encoded, PreEncoded, TensorSpec, lossy_stats
from .registry import codec_class, codec_ids, decode_nested, encode_nested, get_codec, register

# Built-in codecs (importing their modules registers them).
from .raw import Raw  # noqa: E402,F401
from .zstd_codec import Zstd  # noqa: E402,F401
from .bytegroup import ByteGroup  # noqa: E402,F401
from .epr import EPR  # noqa: E402,F401
from .tt import TT  # noqa: E402,F401
from .quantize import Quantize  # noqa: E402,F401
from .cluster import Cluster  # noqa: E402,F401
from .sparse import Sparse  # noqa: E402,F401
from .cabac_quant import CabacQuant  # noqa: E402,F401

__all__ = [
    "Codec", "Encoded", "PreEncoded", "TensorSpec", "lossy_stats", "codec_class", "codec_ids", "decode_nested",
    "encode_nested", "get_codec", "register",
]
