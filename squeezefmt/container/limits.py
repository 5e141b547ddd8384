"""Safety limits a reader applies to untrusted containers.

The defaults admit any realistic model (a 4 GiB tensor, tens of thousands of tensors) while
keeping a hostile header from making the reader allocate or loop without bound, and cap what a
small file may make the reader decode (``max_decoded_bytes``: a 300-byte file can honestly
declare a gigabyte of zeros). Pass your own :class:`Limits` to :func:`squeezefmt.open` to tighten
or widen them; spec/format.md section "Limits" lists them with their reference values.
"""
from __future__ import annotations

import dataclasses

#: Integers in the header must lie in this range (int64 minimum .. uint64 maximum).
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class Limits:
    #: Largest stored header and largest header JSON, in bytes.
    max_header_bytes: int = 64 << 20
    #: Most JSON values in the header (every object, array, member name, string, number and literal).
    max_json_values: int = 1 << 19
    #: Most elements of one JSON array (or members of one object) in the header.
    max_json_container: int = 1 << 18
    #: Longest JSON string in the header (member names included), in UTF-8 bytes.
    max_json_string_bytes: int = 32 << 20
    #: Largest ``metadata`` object, serialised canonically, in bytes.
    max_metadata_bytes: int = 32 << 20
    #: Deepest JSON nesting accepted in the header.
    max_json_depth: int = 64
    #: Most tensors one container may list.
    max_tensors: int = 1 << 18
    #: Most streams one tensor may have.
    max_streams_per_tensor: int = 4096
    #: Most dimensions of a tensor.
    max_ndim: int = 32
    #: Largest decoded tensor, in bytes.
    max_tensor_bytes: int = 4 << 30
    #: Largest sum of the decoded sizes of all tensors of one container, in bytes (checked on open).
    max_decoded_bytes: int = 4 << 30
    #: Longest tensor name, in characters.
    max_name_length: int = 4096


DEFAULT_LIMITS = Limits()


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"64k"`` or a plain byte count as an int (binary multiples)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(s[-1:], 1)
    if mult != 1:
        s = s[:-1]
    if not s.isdigit() or len(s) > 20:
        raise ValueError(f"not a byte size: {text!r} (use e.g. 1073741824, 512M, 4G)")
    return int(s) * mult
