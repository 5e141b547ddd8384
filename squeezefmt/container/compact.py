"""The format 1.1 header representation: a codec table, one array per tensor, Keras weight shorthand.

The 1.0 header restates a lot: every tensor carries its full codec object, every stream an offset
(derivable from the lengths) and a CRC, and the Keras layer records name every weight twice
(``{"name": "conv/kernel:0", "tensor": "conv/conv/kernel:0"}``). The 1.1 representation
(spec/format.md, section 10) keeps exactly the same information in fewer bytes::

    {"format": "squeezefmt",
     "codecs": [codec object, ...],                      # each distinct codec once, in order of first use
     "tensors": [[name, dtype, shape, codec index, side, [stream lengths], align mask, crc32(, stats)], ...],
     "metadata": {... "keras": {"layers": [[name, class_name, [weight, ...]], ...]} ...}}

``align mask`` bit ``i`` set: stream ``i`` starts at a multiple of 64; ``crc32`` is the CRC-32 of the
tensor's streams concatenated. A Keras layer record may be the array ``[name, class_name, weights]``
and a weight the string ``w``, which stands for ``{"name": name + "/" + w, "tensor": name + "/" +
name + "/" + w}``; a reader bounds what the shorthand expands to.

:func:`compact_header` builds it (writer); :func:`expand_header` turns an untrusted one back into the
1.0 object shape (reader), with stream records ``{"length", "align"}`` and a tensor-level ``crc32``,
so one validation path serves both versions. Expansion output is bounded by a small multiple of the
input (names are rebuilt from strings of the header itself, at most three per weight).
"""
from __future__ import annotations

from typing import Any

from ..errors import HeaderError, LimitError
from .limits import Limits

ALIGNED = 64


# -- writer ----------------------------------------------------------------------------------------

def compact_tensor(record: dict[str, Any], codec_index: int, lengths: list[int], aligns: list[int],
                   crc: int | None, derived: bool = False) -> list[Any]:
    """The tensor array; ``crc`` None (format 1.2) leaves the CRC out, ``derived`` writes the name as null."""
    mask = sum(1 << i for i, a in enumerate(aligns) if a > 1)
    out = [None if derived else record["name"], record["dtype"], list(record["shape"]), codec_index,
           record.get("side") or {}, list(lengths), mask] + ([] if crc is None else [crc])
    if record.get("stats"):
        out.append(record["stats"])
    return out


def compact_keras(keras: Any) -> Any:
    """The Keras metadata with layer records as arrays and weights in shorthand where it applies."""
    if not isinstance(keras, dict) or not isinstance(keras.get("layers"), list):
        return keras
    layers = []
    for layer in keras["layers"]:
        if not (isinstance(layer, dict) and set(layer) <= {"name", "class_name", "weights"}
                and isinstance(layer.get("name"), str) and isinstance(layer.get("weights", []), list)):
            layers.append(layer)
            continue
        name = layer["name"]
        weights = []
        for w in layer.get("weights", []):
            short = _short_weight(name, w)
            weights.append(short if short is not None else w)
        layers.append([name, layer.get("class_name"), weights])
    return {**keras, "layers": layers}


def _short_weight(layer: str, w: Any) -> str | None:
    if not isinstance(w, dict) or set(w) != {"name", "tensor"}:
        return None
    wname, tensor = w["name"], w["tensor"]
    prefix = layer + "/"
    if not (isinstance(wname, str) and wname.startswith(prefix) and len(wname) > len(prefix)):
        return None
    return wname[len(prefix):] if tensor == prefix + wname else None


def shorthand_tensor_names(metadata: Any) -> list[str]:
    """The tensor names the Keras weight shorthand of (compact) ``metadata`` stands for, in layer and
    weight order: ``name/name/w`` for every string weight ``w`` of an array layer record ``[name, class,
    weights]``. Format 1.2 gives the k-th tensor whose name is null the k-th of these names."""
    keras = metadata.get("keras") if isinstance(metadata, dict) else None
    layers = keras.get("layers") if isinstance(keras, dict) else None
    out: list[str] = []
    for layer in layers if isinstance(layers, list) else ():
        if isinstance(layer, list) and len(layer) == 3 and isinstance(layer[0], str) and isinstance(layer[2], list):
            out += [f"{layer[0]}/{layer[0]}/{w}" for w in layer[2] if isinstance(w, str)]
    return out


def derived_name_flags(names: list[str], metadata: Any) -> list[bool]:
    """Which tensors (in file order) a format 1.2 writer leaves to the shorthand: a tensor whose name is
    the next unused shorthand name (so the k-th null name is the k-th shorthand name)."""
    short, k, out = shorthand_tensor_names(metadata), 0, []
    for name in names:
        hit = k < len(short) and name == short[k]
        k += hit
        out.append(hit)
    return out


def compact_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    if "keras" in metadata:
        return {**metadata, "keras": compact_keras(metadata["keras"])}
    return metadata


# -- reader ----------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expand_tensors(obj: dict[str, Any], limits: Limits, small: bool = False) -> list[dict[str, Any]]:
    """The 1.0-shaped tensor records of a 1.1 header (types of the compact fields checked here).

    ``small`` (format 1.2): arrays of 7 or 8 fields (no CRC; ``crc32`` None in the records), and a null
    name is the next name of :func:`shorthand_tensor_names` (call after ``expand_metadata`` has bounded
    the shorthand).
    """
    codecs = obj.get("codecs", [])
    tensors = obj.get("tensors")
    if not isinstance(codecs, list) or not isinstance(tensors, list):
        raise HeaderError("header 'codecs' and 'tensors' must be lists")
    if len(tensors) > limits.max_tensors:
        raise LimitError(f"header lists {len(tensors)} tensors; the limit is {limits.max_tensors}")
    out = []
    width = 7 if small else 8
    short = iter(shorthand_tensor_names(obj.get("metadata")) if small else ())
    for index, t in enumerate(tensors):
        if not isinstance(t, list) or len(t) not in (width, width + 1):
            raise HeaderError(f"tensor #{index} must be an array of {width} or {width + 1} fields")
        name, dtype, shape, codec, side, lengths, mask = t[:7]
        crc = t[7] if not small else 0
        if small and name is None:
            name = next(short, None)
            if name is None:
                raise HeaderError(f"tensor #{index}: null name, and the Keras shorthand names no more tensors")
        if not _is_int(codec) or not 0 <= codec < len(codecs):
            raise HeaderError(f"tensor #{index}: codec index {codec!r} is not in the codec table")
        if not isinstance(lengths, list):
            raise HeaderError(f"tensor #{index}: stream lengths must be a list")
        if len(lengths) > limits.max_streams_per_tensor:
            raise LimitError(f"tensor #{index}: {len(lengths)} streams; the limit is {limits.max_streams_per_tensor}")
        if not _is_int(mask) or not 0 <= mask < (1 << len(lengths)):
            raise HeaderError(f"tensor #{index}: alignment mask {mask!r} does not fit {len(lengths)} streams")
        if not _is_int(crc) or not 0 <= crc < 2**32:
            raise HeaderError(f"tensor #{index}: crc32 must be a 32-bit unsigned integer")
        streams = []
        for i, n in enumerate(lengths):
            if not _is_int(n) or n < 0:
                raise HeaderError(f"tensor #{index}: stream length {n!r} must be a non-negative integer")
            streams.append({"length": n, "align": ALIGNED if mask >> i & 1 else 1})
        record = {"name": name, "dtype": dtype, "shape": shape, "codec": codecs[codec], "side": side,
                  "streams": streams, "crc32": None if small else crc}
        if len(t) == width + 1:
            record["stats"] = t[width]
        out.append(record)
    return out


def expand_metadata(metadata: Any, budget: int) -> Any:
    """Undo :func:`compact_keras` on untrusted metadata (anything else is left for the consumers to check).

    ``budget``: most characters the rebuilt weight names may take together (``LimitError`` beyond);
    the reader passes twice the header's JSON length plus 64 KiB.
    """
    if not isinstance(metadata, dict) or not isinstance(metadata.get("keras"), dict):
        return metadata
    keras = metadata["keras"]
    layers = keras.get("layers")
    if not isinstance(layers, list):
        return metadata
    expanded = []
    for i, layer in enumerate(layers):
        if isinstance(layer, list):
            if len(layer) != 3 or not isinstance(layer[0], str) or not isinstance(layer[2], list):
                raise HeaderError(f"metadata 'keras.layers[{i}]' must be [name, class_name, weights]")
            name = layer[0]
            budget -= sum(3 * len(name) + 2 * len(w) for w in layer[2] if isinstance(w, str))
            if budget < 0:
                raise LimitError("the Keras weight shorthand of the header expands beyond its limit")
            weights = [_expand_weight(name, w) for w in layer[2]]
            layer = {"name": name, "class_name": layer[1], "weights": weights}
        expanded.append(layer)
    return {**metadata, "keras": {**keras, "layers": expanded}}


def _expand_weight(layer: str, w: Any) -> Any:
    if isinstance(w, str):
        wname = f"{layer}/{w}"
        return {"name": wname, "tensor": f"{layer}/{wname}"}
    return w
