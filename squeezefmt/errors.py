"""The squeezefmt exception hierarchy.

Every error squeezefmt raises on bad input is a :class:`SqueezeError`, which subclasses
:class:`ValueError` (as msgpack and python-zstandard do), so callers that already catch
``ValueError`` keep working. Subclasses name the kind of problem precisely so that tests and
users can tell a truncated file from a checksum failure from an unsupported feature.
"""


class SqueezeError(ValueError):
    """Base class of all squeezefmt errors."""


class FormatError(SqueezeError):
    """The bytes are not a well-formed .sqz container (bad magic, bad layout, bad header)."""


class TruncatedError(FormatError):
    """The data ends before the container (or a stream inside it) says it should."""


class VersionError(FormatError):
    """The container's major format version is not one this reader understands."""


class HeaderError(FormatError):
    """The JSON header is unreadable, violates the schema, or lies (shapes, offsets, lengths)."""


class ChecksumError(FormatError):
    """A stored checksum does not match the bytes it covers."""


class LimitError(FormatError):
    """The input asks for more than the reader's safety limits allow (header size, dims, elements)."""


class DecodeMemoryError(LimitError, MemoryError):
    """The machine could not provide the memory a tensor within the limits needs (the allocation of
    its output failed). Both a :class:`LimitError` (so code that rejects bad uploads with
    ``except SqueezeError`` rejects it) and a :class:`MemoryError` (so code that handles running out
    of memory sees it); the message names the tensor and the byte count."""


class UnknownCodecError(SqueezeError):
    """The container names a codec id (or codec version) this build does not know."""


class CodecError(SqueezeError):
    """A codec could not encode its input, or its stream is corrupt and cannot be decoded."""


class StreamError(CodecError):
    """A codec stream is malformed: truncated, padded with garbage, or inconsistent with its side information."""


class KerasFormatError(SqueezeError):
    """A Keras .h5 file (or stored model config) is not something squeezefmt can read or rebuild."""


class LazyWeightError(KerasFormatError, AttributeError):
    """A weight of a lazily loaded layer was used outside the layer's call (an AttributeError too, so
    ``getattr(weight, name, default)`` probes see a missing attribute)."""


class UnsafeModelError(SqueezeError):
    """Loading would need code from the file (Lambda layers, unknown custom objects) and safe_mode is on."""


class BaseMismatchError(SqueezeError):
    """A federated delta payload was decoded against a base model other than the one it names."""


__all__ = [
    "SqueezeError", "FormatError", "TruncatedError", "VersionError", "HeaderError", "ChecksumError",
    "LimitError", "DecodeMemoryError", "UnknownCodecError", "CodecError", "StreamError", "KerasFormatError", "LazyWeightError",
    "UnsafeModelError", "BaseMismatchError",
]
