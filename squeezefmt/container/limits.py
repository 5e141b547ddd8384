"""Safety limits a reader applies to untrusted containers.

The defaults admit any realistic model (a 4 GiB tensor, a million tensors) while keeping a hostile
header from making the reader allocate or loop without bound. Pass your own :class:`Limits` to
:func:`squeezefmt.open` to tighten or widen them.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    #: Largest JSON header accepted, in bytes.
    max_header_bytes: int = 64 << 20
    #: Most tensors one container may list.
    max_tensors: int = 1_000_000
    #: Most streams one tensor may have.
    max_streams_per_tensor: int = 4096
    #: Most dimensions of a tensor.
    max_ndim: int = 32
    #: Largest decoded tensor, in bytes.
    max_tensor_bytes: int = 4 << 30
    #: Longest tensor name, in characters.
    max_name_length: int = 4096
    #: Deepest JSON nesting accepted in the header.
    max_json_depth: int = 64


DEFAULT_LIMITS = Limits()
