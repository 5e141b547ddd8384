"""The .sqz byte layout: writing, reading (bytes, file objects, memory-mapped paths) and validation.

This package knows nothing of what codecs do; it stores their streams, side information and
descriptions, checks the layout and checksums, and hands verified streams to the codec registry.
spec/format.md is the normative description.
"""
from .layout import ALIGN, FORMAT_MAJOR, FORMAT_MINOR, MAGIC
from .limits import DEFAULT_LIMITS, Limits
from .reader import SqzFile, TensorInfo
from .writer import PendingTensor, write_container

__all__ = [
    "ALIGN", "FORMAT_MAJOR", "FORMAT_MINOR", "MAGIC", "DEFAULT_LIMITS", "Limits", "SqzFile", "TensorInfo",
    "PendingTensor", "write_container",
]
