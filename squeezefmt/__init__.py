"""squeezefmt: a versioned binary container and codec library for neural-network weights.

Numpy-level API (no TensorFlow needed)::

    import squeezefmt
    squeezefmt.save({"w": w, "b": b}, "weights.sqz")          # or target=None -> bytes
    with squeezefmt.open("weights.sqz") as f:                  # path (mmap), bytes or file object
        f.keys(); f.metadata(); f.tensor("w")

Keras models: ``squeezefmt.keras.save`` / ``squeezefmt.keras.load`` (needs the ``keras`` extra) and
the ``squeezefmt`` command-line tool.
"""
from ._version import __version__

import squeezefmt.codecs as codecs  # noqa: E402 - the module itself, as squeezefmt.codecs
import squeezefmt.errors as errors  # noqa: E402
from .api import load, open, save  # noqa: E402,A004
from .container import FORMAT_MAJOR, FORMAT_MINOR, Limits, SqzFile, TensorInfo  # noqa: E402
from .errors import SqueezeError  # noqa: E402

__all__ = [
    "__version__", "codecs", "errors", "load", "open", "save", "FORMAT_MAJOR", "FORMAT_MINOR", "Limits",
    "SqzFile", "TensorInfo", "SqueezeError",
]
