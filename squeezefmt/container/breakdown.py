"""Where the bytes of a container go: preamble, header, padding, streams, and what the header is made of.

:func:`file_breakdown` splits the file; :func:`header_breakdown` attributes the *stored* (compressed)
header bytes to its parts by leave-one-out: the cost of a part is how many bytes the stored header
shrinks when that part is removed from the JSON and the rest is compressed the same way. The parts
overlap in what zstd can share, so their costs do not add up exactly to the total; ``rest`` is
the total minus their sum (it can be negative). Numpy and zstandard only.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Callable

from .header import dumps
from .layout import PREAMBLE_SIZE, encode_header


def file_breakdown(f) -> dict[str, int]:
    """``{"file", "preamble", "header", "padding", "streams", "tensors"}`` of an open :class:`SqzFile`."""
    streams = sum(s.length for name in f.keys() for s in f.entry(name).streams)
    size = f.file_size
    return {"file": size, "preamble": PREAMBLE_SIZE, "header": f.header_size,
            "padding": size - PREAMBLE_SIZE - f.header_size - streams, "streams": streams, "tensors": len(f)}


def _drop(path: tuple) -> Callable[[Any], None]:
    def fn(obj):
        *head, last = path
        for k in head:
            obj = obj[k]
        if isinstance(obj, dict):
            obj.pop(last, None)
    return fn


def _tensor_fields(obj: dict[str, Any], small: bool = False) -> dict[str, Callable[[Any], None]]:
    """Removers for the per-tensor fields of a 1.0 (objects) or 1.1/1.2 (arrays) header."""
    compact = bool(obj.get("tensors")) and isinstance(obj["tensors"][0], list)
    if compact:
        fields = {"tensor names": 0, "dtypes+shapes": (1, 2), "codec refs": 3, "side info": 4,
                  "stream lengths": 5, "alignment": 6}
        if not small:  # 1.2: one CRC for all streams, in the preamble
            fields["checksums"] = 7

        def blank(idx):
            idx = idx if isinstance(idx, tuple) else (idx,)

            def fn(o):
                for t in o["tensors"]:
                    for i in idx:
                        t[i] = 0
            return fn
        out = {k: blank(v) for k, v in fields.items()}
        width = 7 if small else 8
        out["stats"] = lambda o: [t.pop() for t in o["tensors"] if len(t) == width + 1]
        out["codec table"] = lambda o: o.__setitem__("codecs", [])
        return out

    def each(fn):
        return lambda o: [fn(t) for t in o["tensors"]]
    return {
        "tensor names": each(lambda t: t.__setitem__("name", "")),
        "dtypes+shapes": each(lambda t: (t.pop("dtype", None), t.pop("shape", None))),
        "codecs": each(lambda t: t.pop("codec", None)),
        "side info": each(lambda t: t.pop("side", None)),
        "stream records": each(lambda t: t.pop("streams", None)),
        "stats": each(lambda t: t.pop("stats", None)),
    }


def header_breakdown(f, measure: str = "stored") -> dict[str, int]:
    """Header bytes attributed to its parts (leave-one-out; see the module doc).

    ``measure="stored"``: bytes of the stored (compressed) header; ``"json"``: bytes of the JSON text
    before compression (there the parts add up, up to separators).
    """
    pre = f.preamble
    obj = json.loads(f.header_json())
    compact, small = bool(pre.flags & 2), bool(pre.flags & 8)

    def stored(o) -> int:
        if measure == "json":
            return len(dumps(o))
        return len(encode_header(dumps(o), True, compact, small)[1])
    total = stored(obj)
    parts: dict[str, Callable[[Any], None]] = dict(_tensor_fields(obj, small))
    meta = obj.get("metadata", {})
    for key in sorted(meta):
        if key == "keras" and isinstance(meta[key], dict):
            for sub in sorted(meta[key]):
                parts[f"metadata.keras.{sub}"] = _drop(("metadata", "keras", sub))
        else:
            parts[f"metadata.{key}"] = _drop(("metadata", key))
    if "pad" in obj:
        parts["pad"] = _drop(("pad",))
    out = {"stored header": total, "json": len(f.header_json())}
    for name, remove in parts.items():
        trial = copy.deepcopy(obj)
        remove(trial)
        out[name] = total - stored(trial)
    out["rest"] = total - sum(v for k, v in out.items() if k not in ("stored header", "json"))
    return out
