"""Round payloads: one .sqz container per broadcast, naming the model state it produces.

A *payload* is an ordinary .sqz container (spec/format.md) whose metadata has a ``federated``
object (spec/federated.md is the normative text)::

    {"v": 1, "kind": "full" | "delta" | "keep", "round": 7, "layout": "list" | "dict",
     "state": "<sha256 hex of the model the receiver holds after applying it>",
     "base":  "<sha256 hex of the model a delta applies to>",        # delta only
     "op":    "add" | "xor"}                                          # delta only

- ``full``: the tensors are the model itself.
- ``delta``: the tensors are differences against the model named ``base``: float16/32/64 tensors
  are added (``op == "add"``, for lossy deltas) or XOR-ed bit for bit (``op == "xor"``, exact);
  every other element type is always XOR-ed.
- ``keep``: no tensors; the receiver already holds ``state`` (or must refuse); no ``base``.

The *state hash* (:func:`content_hash`) is SHA-256 over a canonical serialisation of the arrays
(names, element types, shapes and little-endian bytes, tensors sorted by name), so a receiver can
check that it reconstructed exactly the model the sender meant, and a delta can name its base.

Nothing here imports TensorFlow: a Keras model is accepted by duck typing (``get_weights()``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from typing import Any, Callable, Mapping

import numpy as np

from .._version import __version__
from ..codecs import Codec, TensorSpec, codec_class
from ..codecs.decode import decode_tensor
from ..container import DEFAULT_LIMITS, Limits, PendingTensor, SqzFile, write_container
from ..container.header import dumps as header_dumps
from ..dtypes import as_storage, dtype_name, from_storage
from ..encode import plan_and_encode
from ..errors import BaseMismatchError, ChecksumError, HeaderError, SqueezeError

#: Version of the ``federated`` metadata object this module writes and reads.
PAYLOAD_VERSION = 1
#: The metadata key of the container that holds the payload description.
METADATA_KEY = "federated"
#: Domain-separation prefix of the state hash (spec/federated.md, "State hash").
HASH_PREFIX = b"squeezefmt-fl-state-v1\n"
#: Element types whose delta may be arithmetic (``op == "add"``); every other type is XOR-ed.
ADD_DTYPES = ("float16", "float32", "float64")

KINDS = ("full", "delta", "keep")
OPS = ("add", "xor")
LAYOUTS = ("list", "dict")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Arrays = "dict[str, np.ndarray]"


# -- model <-> named arrays ----------------------------------------------------------------------

def as_named_arrays(model: Any) -> tuple[dict[str, np.ndarray], str]:
    """``(name -> array, layout)`` for a dict, a list/tuple of arrays, or a Keras-like model.

    Lists get the names ``"0"``, ``"1"``, ... (layout ``"list"``); a model with ``get_weights()``
    is taken as the list of its weights (no TensorFlow import: duck typing). Arrays are made
    C-contiguous; nothing is copied when they already are.
    """
    if isinstance(model, Mapping):
        out = {}
        for name, value in model.items():
            if not isinstance(name, str) or not name:
                raise SqueezeError(f"tensor names must be non-empty strings, got {name!r}")
            out[name] = np.ascontiguousarray(value)
        return out, "dict"
    if hasattr(model, "get_weights") and callable(model.get_weights):
        model = model.get_weights()
    if isinstance(model, (list, tuple)):
        return {str(i): np.ascontiguousarray(a) for i, a in enumerate(model)}, "list"
    raise SqueezeError(
        f"cannot take model weights from {type(model).__name__}: pass a dict or list of numpy arrays, "
        "or an object with get_weights() (a Keras model)"
    )


def to_layout(arrays: Mapping[str, np.ndarray], layout: str):
    """The arrays as a list (in order) for layout ``"list"``, else as a dict."""
    return list(arrays.values()) if layout == "list" else dict(arrays)


# -- the state hash --------------------------------------------------------------------------------

def content_hash(model: Any) -> str:
    """SHA-256 (hex) of the canonical serialisation of a model's arrays (spec/federated.md).

    For every tensor in order of its name's UTF-8 bytes: ``u32 len(name) | name | u32 len(dtype) |
    dtype | u32 ndim | u64 dim... | u64 nbytes | data`` (little-endian integers; data in C order,
    little-endian, in the container element type), all after the prefix
    ``b"squeezefmt-fl-state-v1\\n"``. Equal hashes mean equal names, types, shapes and bits.
    """
    arrays, _ = as_named_arrays(model)
    h = hashlib.sha256(HASH_PREFIX)
    for name in sorted(arrays, key=lambda n: n.encode("utf-8")):
        a = arrays[name]
        dt = dtype_name(a.dtype).encode("ascii")
        nb = name.encode("utf-8")
        data = as_storage(a)
        h.update(struct.pack("<I", len(nb)) + nb + struct.pack("<I", len(dt)) + dt)
        h.update(struct.pack("<I", a.ndim) + b"".join(struct.pack("<Q", int(d)) for d in a.shape))
        h.update(struct.pack("<Q", data.nbytes))
        h.update(memoryview(data).cast("B"))
    return h.hexdigest()


def short(h: str | None) -> str:
    return "none" if h is None else h[:12]


# -- payload description -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PayloadInfo:
    """What a payload's header says (read without decoding any tensor: :func:`peek`)."""

    kind: str
    round: int
    state: str
    layout: str
    base: str | None = None
    op: str | None = None
    nbytes: int = 0            # size of the payload in bytes
    tensors: int = 0

    def to_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"v": PAYLOAD_VERSION, "kind": self.kind, "round": self.round,
                                "state": self.state, "layout": self.layout}
        if self.base is not None:
            meta["base"] = self.base
        if self.op is not None:
            meta["op"] = self.op
        return meta


def _parse_info(meta: Any, nbytes: int, tensors: int) -> PayloadInfo:
    fed = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
    if not isinstance(fed, dict):
        raise HeaderError("not a federated payload: the container has no 'federated' metadata")
    v = fed.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise HeaderError(f"federated payload: 'v' must be a positive integer, got {v!r}")
    if v > PAYLOAD_VERSION:
        raise HeaderError(f"federated payload version {v} is newer than this reader supports ({PAYLOAD_VERSION})")
    kind, rnd, state, layout = fed.get("kind"), fed.get("round"), fed.get("state"), fed.get("layout")
    base, op = fed.get("base"), fed.get("op")
    if kind not in KINDS:
        raise HeaderError(f"federated payload: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    if not isinstance(rnd, int) or isinstance(rnd, bool) or not 0 <= rnd < 2**53:
        raise HeaderError(f"federated payload: 'round' must be a non-negative integer, got {rnd!r}")
    if not isinstance(state, str) or not _HEX64.match(state):
        raise HeaderError("federated payload: 'state' must be 64 lowercase hex digits")
    if layout not in LAYOUTS:
        raise HeaderError(f"federated payload: 'layout' must be one of {list(LAYOUTS)}, got {layout!r}")
    if kind == "delta":
        if not isinstance(base, str) or not _HEX64.match(base):
            raise HeaderError("federated delta payload: 'base' must be 64 lowercase hex digits")
    elif base is not None:
        raise HeaderError(f"federated {kind} payload must not name a base")
    if kind == "delta":
        if op not in OPS:
            raise HeaderError(f"federated delta payload: 'op' must be one of {list(OPS)}, got {op!r}")
    elif op is not None:
        raise HeaderError(f"federated {kind} payload must not have an 'op'")
    if kind == "keep" and tensors:
        raise HeaderError("federated keep payload must not have tensors")
    return PayloadInfo(kind, rnd, state, layout, base, op, nbytes, tensors)


def peek(payload, *, limits: Limits = DEFAULT_LIMITS) -> PayloadInfo:
    """Read a payload's description from its header only (no tensor is decoded)."""
    with SqzFile(payload, limits=limits) as f:
        return _parse_info(f.metadata(), f.file_size, len(f))


# -- delta arithmetic (shared by sender and receiver: both MUST compute bit-identical results) ---------

def _uint_view(a: np.ndarray) -> np.ndarray:
    s = as_storage(a)
    return s.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[s.dtype.itemsize])


def tensor_op(dtype: str, op: str) -> str:
    """The operation a delta applies to a tensor of element type ``dtype`` (add only for floats)."""
    return "add" if op == "add" and dtype in ADD_DTYPES else "xor"


def make_delta(target: np.ndarray, base: np.ndarray, op: str) -> np.ndarray:
    """The delta that takes ``base`` to ``target`` (same shape and element type)."""
    dt = dtype_name(base.dtype)
    if tensor_op(dt, op) == "add":
        if dt == "float16":
            return (target.astype(np.float32) - base.astype(np.float32)).astype(np.float16)
        return np.subtract(target.astype(base.dtype, copy=False), base)
    x = _uint_view(np.ascontiguousarray(target, dtype=base.dtype)) ^ _uint_view(base)
    return from_storage(x.view(as_storage(base).dtype), dt).reshape(base.shape)


def apply_delta(base: np.ndarray, delta: np.ndarray, op: str) -> np.ndarray:
    """``base`` moved by ``delta`` (spec/federated.md, "Applying a delta")."""
    dt = dtype_name(base.dtype)
    if tensor_op(dt, op) == "add":
        if dt == "float16":  # float32 sum, rounded once to float16
            return (base.astype(np.float32) + delta.astype(np.float32)).astype(np.float16)
        return np.add(base, delta.astype(base.dtype, copy=False))
    x = _uint_view(base) ^ _uint_view(np.ascontiguousarray(delta))
    return from_storage(x.view(as_storage(base).dtype), dt).reshape(base.shape)


# -- encode / decode one payload -------------------------------------------------------------------

CodecChooser = Callable[[str, np.ndarray], "Codec | None"]


def _codecs_for(arrays: Mapping[str, np.ndarray], choose: CodecChooser | None) -> dict[str, Codec]:
    if choose is None:
        return {}
    out = {}
    for name, a in arrays.items():
        c = choose(name, a)
        if c is not None:
            out[name] = c
    return out


@dataclasses.dataclass
class EncodedTensors:
    """Tensors encoded for a payload but not yet written (the metadata needs the decoded state)."""

    pending: list[PendingTensor]
    preset: str

    def decode(self) -> dict[str, np.ndarray]:
        """Decode the encoded tensors exactly as a receiver will (side information through JSON)."""
        out = {}
        for t in self.pending:
            side = json.loads(header_dumps(t.encoded.side)) if t.encoded.side else {}
            out[t.name] = decode_tensor(t.name, json.loads(header_dumps(t.codec)), TensorSpec(t.dtype, tuple(t.shape)),
                                        side, [memoryview(bytes(s)) for s in t.encoded.streams])
        return out

    def lossless(self) -> bool:
        return all(codec_class(t.codec["id"]).lossless for t in self.pending)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {t.name: dict(t.encoded.stats) for t in self.pending if t.encoded.stats}

    def write(self, info: PayloadInfo, target=None):
        meta = {"writer": f"squeezefmt {__version__}", "preset": self.preset, METADATA_KEY: info.to_metadata()}
        return write_container(self.pending, target, meta)


def encode_tensors(arrays: Mapping[str, np.ndarray], *, choose: CodecChooser | None = None,
                   preset: str = "lossless") -> EncodedTensors:
    """Encode ``arrays`` (model or delta tensors) for a payload.

    ``choose(name, array)`` may return an explicit codec per tensor (None: the planner ``preset``).
    """
    return EncodedTensors(plan_and_encode(arrays, preset_name=preset, codecs=_codecs_for(arrays, choose)), preset)


def read_payload(payload, *, limits: Limits = DEFAULT_LIMITS) -> tuple[PayloadInfo, dict[str, np.ndarray]]:
    """Parse and decode every tensor of a payload (no base is applied)."""
    with SqzFile(payload, limits=limits) as f:
        info = _parse_info(f.metadata(), f.file_size, len(f))
        return info, f.tensors()


def _check_same_structure(delta: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> None:
    if list(delta) != list(base):
        raise HeaderError("delta payload tensors do not match its base's tensors (names or order)")
    for name, d in delta.items():
        b = base[name]
        if d.shape != b.shape or dtype_name(d.dtype) != dtype_name(b.dtype):
            raise HeaderError(f"delta tensor {name!r} is {dtype_name(d.dtype)}{list(d.shape)}, "
                              f"its base is {dtype_name(b.dtype)}{list(b.shape)}")


def apply_payload(info: PayloadInfo, tensors: dict[str, np.ndarray], base: Mapping[str, np.ndarray] | None,
                  base_hash: str | None, *, verify: bool = True) -> dict[str, np.ndarray]:
    """The model a decoded payload produces, given the receiver's ``base`` (and its hash).

    Raises :class:`BaseMismatchError` when the payload needs a base the receiver does not hold,
    and :class:`ChecksumError` when the result does not hash to the payload's ``state``.
    """
    if info.kind == "full":
        state = tensors
    else:
        needed = info.base if info.kind == "delta" else info.state
        if base is None:
            raise BaseMismatchError(
                f"round {info.round} {info.kind} payload needs base model {short(needed)}, and no base is held "
                "(ask the server for a full payload)")
        if base_hash is None:
            base_hash = content_hash(base)
        if base_hash != needed:
            what = "was coded against base model" if info.kind == "delta" else "says to keep model"
            raise BaseMismatchError(
                f"round {info.round} {info.kind} payload {what} {short(needed)}, but the "
                f"model held here is {short(base_hash)} (a missed round?): ask the server for a full payload")
        if info.kind == "keep":
            return dict(base)
        _check_same_structure(tensors, base)
        state = {name: apply_delta(base[name], d, info.op) for name, d in tensors.items()}
    if verify and content_hash(state) != info.state:
        raise ChecksumError(
            f"round {info.round} {info.kind} payload: the reconstructed model does not hash to the state the "
            f"sender announced ({short(info.state)}); sender and receiver disagree on the arithmetic")
    return state


# -- stateless convenience API -----------------------------------------------------------------------

def encode_model(model: Any, *, preset: str = "lossless", round: int = 0,  # noqa: A002 - payload field name
                 choose: CodecChooser | None = None) -> bytes:
    """One full payload of ``model`` (dict/list of arrays or a Keras model), stateless.

    ``preset`` is a planner preset for every tensor (``choose`` may override per tensor). The
    payload's ``state`` is the hash of what a receiver decodes, so lossy codecs work too.
    """
    arrays, layout = as_named_arrays(model)
    enc = encode_tensors(arrays, choose=choose, preset=preset)
    state = content_hash(arrays) if enc.lossless() else content_hash(enc.decode())
    return enc.write(PayloadInfo("full", round, state, layout))


def decode_model(payload, base: Any = None, *, limits: Limits = DEFAULT_LIMITS):
    """Decode a payload to a model in its layout (list or dict of arrays).

    ``base`` is the model the receiver holds; it is needed for ``delta``/``keep`` payloads and MUST
    hash to the payload's ``base`` (else :class:`BaseMismatchError`).
    """
    info, tensors = read_payload(payload, limits=limits)
    base_arrays = as_named_arrays(base)[0] if base is not None else None
    state = apply_payload(info, tensors, base_arrays, None)
    return to_layout(state, info.layout)


__all__ = [
    "PAYLOAD_VERSION", "METADATA_KEY", "PayloadInfo", "as_named_arrays", "to_layout", "content_hash", "peek",
    "make_delta", "apply_delta", "tensor_op", "EncodedTensors", "encode_tensors", "read_payload", "apply_payload", "encode_model",
    "decode_model",
]
