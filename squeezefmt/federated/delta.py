"""Stateful round coding: the server's :class:`BroadcastEncoder`, the client's :class:`BroadcastDecoder`.

The server encodes the global model once per round::

    enc = BroadcastEncoder("lossy-delta")
    payload = enc.encode(global_weights)          # bytes, the same for every up-to-date client
    late = enc.payload_for(client_held_hash)      # delta, "keep", or a full catch-up payload

and every client keeps one :class:`BroadcastDecoder`::

    dec = BroadcastDecoder()
    weights = dec.decode(payload)                 # list (or dict) of numpy arrays
    dec.state_hash                                # what the client holds now

**Deltas are taken against what clients reconstruct**, never against the server's float model:
the encoder keeps ``state``, the model receivers hold after its last payload (it decodes its own
lossy payload to get it, exactly as a receiver does). Round t's delta is ``w_t - state_{t-1}``,
so the quantization error left in round t-1 (``w_{t-1} - state_{t-1}``) is part of round t's
delta: this is *error feedback*, and the error after any number of rounds is that of one
quantization step instead of piling up (``tests/test_federated.py`` checks both).

A client that missed rounds holds an older state; the base hash in a delta tells it so
(:class:`~squeezefmt.errors.BaseMismatchError`), and :meth:`BroadcastEncoder.payload_for` /
:meth:`BroadcastEncoder.full_payload` give it the current state in full. ``full_every=K``
additionally makes every K-th broadcast a full one.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

import numpy as np

from ..container import DEFAULT_LIMITS, Limits, SqzFile
from ..errors import SqueezeError
from .payload import (
    PayloadInfo, _parse_info, apply_delta, apply_payload, as_named_arrays, content_hash, encode_tensors,
    make_delta, to_layout,
)
from .presets import FederatedPreset, get_preset


@dataclasses.dataclass(frozen=True)
class RoundReport:
    """What one :meth:`BroadcastEncoder.encode` produced."""

    round: int
    kind: str                 # "full" or "delta"
    nbytes: int               # payload size
    raw_bytes: int            # the model's uncompressed size (sum of array nbytes)
    encode_s: float           # seconds to encode (including the local decode of a lossy payload)
    state: str
    base: str | None
    residual_rel_rms: float   # ||w - state|| / ||w|| over all float tensors after this round
    residual_max_abs: float

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.nbytes if self.nbytes else float("inf")


def _same_structure(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[n].shape == b[n].shape and a[n].dtype == b[n].dtype for n in a)


def _residual_stats(arrays: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]) -> tuple[float, float]:
    num = den = 0.0
    mx = 0.0
    for name, w in arrays.items():
        if w.dtype.kind != "f":
            continue
        d = w.astype(np.float64) - state[name].astype(np.float64)
        num += float(np.sum(d * d))
        den += float(np.sum(np.square(w, dtype=np.float64)))
        if d.size:
            mx = max(mx, float(np.max(np.abs(d))))
    rel = (num / den) ** 0.5 if den > 0 else (0.0 if num == 0 else float("inf"))
    return rel, mx


class BroadcastEncoder:
    """Server side: encode the global model once per round, as full or delta payloads.

    ``preset`` is a name from :data:`squeezefmt.federated.PRESETS` or a :class:`FederatedPreset`;
    ``full_every``, ``bits`` and ``delta_bits`` override its fields.

    ``carry_residual``: say how the models given to :meth:`encode` come about. False (default): each
    continues the sender's own model, so the delta against the state already holds what the last
    lossy payload left out. True: each is built on what receivers hold, as FedAvg builds it (the
    average of client models trained from the last broadcast), so what the last payload left out
    (``target - state``) would be lost; it is added to the next model before coding (server-side
    error feedback; the Flower strategies turn it on for FedAvg).
    """

    def __init__(self, preset: "str | FederatedPreset" = "lossless", *, full_every: int | None = None,
                 bits: int | None = None, delta_bits: int | None = None, keep_states: int = 4,
                 carry_residual: bool = False):
        self.preset = get_preset(preset, full_every=full_every, bits=bits, delta_bits=delta_bits)
        self.carry_residual = bool(carry_residual)
        self._residual: dict[str, np.ndarray] | None = None
        self._full_choose = self.preset.full_chooser()
        self._delta_choose = self.preset.delta_chooser()
        self._state: dict[str, np.ndarray] | None = None
        self._state_hash: str | None = None
        self._layout = "list"
        self._round: int | None = None
        self._key_round: int | None = None
        self._broadcast: bytes | None = None
        self._broadcast_info: PayloadInfo | None = None
        self._full: bytes | None = None
        self._keep: bytes | None = None
        self._recent: dict[str, dict[str, np.ndarray]] = {}
        self._keep_states = max(1, keep_states)
        self.history: list[RoundReport] = []

    # -- what receivers hold -------------------------------------------------------------------------
    @property
    def state(self):
        """The model receivers hold after the last payload (list or dict, like the input); None before."""
        return None if self._state is None else to_layout(self._state, self._layout)

    @property
    def state_hash(self) -> str | None:
        return self._state_hash

    @property
    def round(self) -> int | None:
        return self._round

    @property
    def broadcast(self) -> bytes | None:
        """The last payload :meth:`encode` returned."""
        return self._broadcast

    def state_by_hash(self, state_hash: str):
        """A recent state (the last ``keep_states``) by its hash, e.g. the base of a client's update."""
        s = self._recent.get(state_hash)
        return None if s is None else to_layout(s, self._layout)

    # -- encoding ------------------------------------------------------------------------------------
    def encode(self, model: Any, *, full: bool = False, round: int | None = None) -> bytes:  # noqa: A002
        """Encode the next round's global model; returns the payload bytes to broadcast.

        The payload is a delta against the current state when the preset says so, unless ``full``
        is set, this is the first round, the model's tensors changed (names, shapes, types), or a
        keyframe is due (``full_every``).
        """
        t0 = time.perf_counter()
        arrays, layout = as_named_arrays(model)
        arrays = self._with_residual(arrays, layout)
        rnd = (0 if self._round is None else self._round + 1) if round is None else int(round)
        if self._round is not None and rnd <= self._round:
            raise SqueezeError(f"round {rnd} is not after the last encoded round {self._round}")
        p = self.preset
        keyframe = (full or not p.delta or self._state is None or layout != self._layout
                    or not _same_structure(arrays, self._state)
                    or (p.full_every > 0 and self._key_round is not None and rnd - self._key_round >= p.full_every))
        if keyframe:
            enc = encode_tensors(arrays, choose=self._full_choose, preset=p.planner_preset)
            state = {n: a.copy() for n, a in arrays.items()} if enc.lossless() else enc.decode()
            info = PayloadInfo("full", rnd, content_hash(state), layout)
        else:
            op = p.op
            deltas = {n: make_delta(a, self._state[n], op) for n, a in arrays.items()}
            enc = encode_tensors(deltas, choose=self._delta_choose, preset=p.planner_preset)
            decoded = deltas if enc.lossless() else enc.decode()
            state = {n: apply_delta(self._state[n], decoded[n], op) for n in arrays}
            info = PayloadInfo("delta", rnd, content_hash(state), layout, base=self._state_hash, op=op)
        data = enc.write(info)
        encode_s = time.perf_counter() - t0
        rel, mx = _residual_stats(arrays, state)
        self._state, self._state_hash, self._layout, self._round = state, info.state, layout, rnd
        if self.carry_residual:
            self._residual = {n: a - state[n] for n, a in arrays.items() if a.dtype.kind == "f"}
        if keyframe:
            self._key_round = rnd
        self._recent[info.state] = state
        while len(self._recent) > self._keep_states:
            self._recent.pop(next(iter(self._recent)))
        self._broadcast, self._broadcast_info = data, info
        self._full = data if keyframe else None
        self._keep = None
        self.history.append(RoundReport(rnd, info.kind, len(data), sum(a.nbytes for a in arrays.values()),
                                        encode_s, info.state, info.base, rel, mx))
        return data

    def _with_residual(self, arrays: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
        """``arrays`` plus what the last payload left out, when ``carry_residual`` and the tensors match."""
        res = self._residual
        if res is None or layout != self._layout or not _same_structure(arrays, self._state):
            return arrays
        return {n: (a + res[n]).astype(a.dtype) if n in res else a for n, a in arrays.items()}

    @property
    def residual(self) -> "dict[str, np.ndarray] | None":
        """With ``carry_residual``: what the last payload left out (float tensors), added to the next model."""
        return self._residual

    def full_payload(self) -> bytes:
        """A full payload of the current state, for a receiver that missed rounds.

        It is the round's broadcast when that was full; otherwise the current state coded
        losslessly (so the receiver ends up with exactly what everyone else holds).
        """
        if self._state is None:
            raise SqueezeError("nothing has been encoded yet")
        if self._full is None:
            enc = encode_tensors(self._state, preset=self.preset.planner_preset)
            self._full = enc.write(PayloadInfo("full", self._round, self._state_hash, self._layout))
        return self._full

    def keep_payload(self) -> bytes:
        """A tensor-less payload telling a receiver that already holds the current state to keep it."""
        if self._state is None:
            raise SqueezeError("nothing has been encoded yet")
        if self._keep is None:
            info = PayloadInfo("keep", self._round, self._state_hash, self._layout)
            self._keep = encode_tensors({}).write(info)
        return self._keep

    def select(self, held: str | None) -> tuple[str, bytes]:
        """``(kind, payload)``: the cheapest payload that brings a receiver holding ``held`` up to date.

        ``kind`` is ``"keep"`` (it already holds the current state), ``"delta"`` or ``"full"`` (the
        round's broadcast), or ``"catchup"`` (the full current state, for a receiver that missed
        rounds or holds nothing).
        """
        if self._broadcast_info is None:
            raise SqueezeError("nothing has been encoded yet")
        if held is not None and held == self._state_hash:
            return "keep", self.keep_payload()
        info = self._broadcast_info
        if info.kind == "full" or (held is not None and held == info.base):
            return info.kind, self._broadcast
        return "catchup", self.full_payload()

    def payload_for(self, held: str | None) -> bytes:
        """The payload of :meth:`select` for a receiver holding state ``held`` (hash or None)."""
        return self.select(held)[1]


class BroadcastDecoder:
    """Client side: hold the current model and apply each round's payload to it.

    ``decode`` returns copies, so user code may change the arrays in place without corrupting the
    state the next delta applies to. A payload whose ``state`` is already held is accepted as is.
    """

    def __init__(self, *, verify: bool = True, limits: Limits = DEFAULT_LIMITS):
        self.verify = verify
        self.limits = limits
        self._state: dict[str, np.ndarray] | None = None
        self._state_hash: str | None = None
        self._layout = "list"
        self._round: int | None = None
        self.last_info: PayloadInfo | None = None
        self.last_decode_s = 0.0

    @property
    def state(self):
        return None if self._state is None else to_layout({n: a.copy() for n, a in self._state.items()}, self._layout)

    @property
    def state_hash(self) -> str | None:
        return self._state_hash

    @property
    def round(self) -> int | None:
        return self._round

    def reset(self) -> None:
        """Forget the held model (the next payload must be full)."""
        self._state = self._state_hash = self._round = None

    def set_state(self, model: Any) -> None:
        """Hold ``model`` (e.g. restored from disk) as the base for the next delta."""
        arrays, layout = as_named_arrays(model)
        self._state = {n: a.copy() for n, a in arrays.items()}
        self._state_hash, self._layout = content_hash(self._state), layout

    def decode(self, payload) -> Any:
        """Apply one payload; returns the model (list or dict of arrays) now held.

        Raises :class:`~squeezefmt.errors.BaseMismatchError` (and keeps the held model) when the
        payload is a delta against a model other than the one held.
        """
        t0 = time.perf_counter()
        with SqzFile(payload, limits=self.limits) as f:
            info = _parse_info(f.metadata(), f.file_size, len(f))
            if self._state is not None and info.state == self._state_hash:
                state = self._state  # already there (a re-sent or "keep" payload)
            else:
                tensors = f.tensors() if info.kind != "keep" else {}
                state = apply_payload(info, tensors, self._state, self._state_hash, verify=self.verify)
        self._state, self._state_hash, self._layout, self._round = state, info.state, info.layout, info.round
        self.last_info = info
        self.last_decode_s = time.perf_counter() - t0
        return self.state


class UpdateEncoder:
    """Client side, uplink: code the locally trained model as a delta against the model received.

    Lossy deltas keep their quantization error and add it to the next update (error feedback,
    per client). The server decodes with :func:`decode_update` given the states it broadcast.
    """

    def __init__(self, preset: "str | FederatedPreset" = "lossy-delta", *, delta_bits: int | None = None):
        self.preset = get_preset(preset, delta_bits=delta_bits)
        self._choose = self.preset.delta_chooser()
        self._residual: dict[str, np.ndarray] | None = None
        self.last_encode_s = 0.0

    @property
    def residual(self) -> "dict[str, np.ndarray] | None":
        """The quantization error carried to the next update (to keep it across processes)."""
        return self._residual

    @residual.setter
    def residual(self, value: "dict[str, np.ndarray] | None") -> None:
        self._residual = None if value is None else {n: np.asarray(a) for n, a in value.items()}

    def encode(self, model: Any, base: Any, *, base_hash: str | None = None, round: int = 0) -> bytes:  # noqa: A002
        t0 = time.perf_counter()
        arrays, layout = as_named_arrays(model)
        base_arrays, _ = as_named_arrays(base)
        if not _same_structure(arrays, base_arrays):
            raise SqueezeError("the update's tensors (names, shapes, types) differ from its base")
        base_hash = base_hash or content_hash(base_arrays)
        op = self.preset.op
        if not self.preset.delta:  # full update
            enc = encode_tensors(arrays, choose=self.preset.full_chooser(), preset=self.preset.planner_preset)
            state = arrays if enc.lossless() else enc.decode()
            data = enc.write(PayloadInfo("full", round, content_hash(state), layout))
            self.last_encode_s = time.perf_counter() - t0
            return data
        target = arrays
        res = self._residual
        if op == "add" and res is not None and _same_structure(res, arrays):
            target = {n: (a + res[n]).astype(a.dtype) if a.dtype.kind == "f" else a for n, a in arrays.items()}
        deltas = {n: make_delta(target[n], base_arrays[n], op) for n in arrays}
        enc = encode_tensors(deltas, choose=self._choose, preset=self.preset.planner_preset)
        decoded = deltas if enc.lossless() else enc.decode()
        state = {n: apply_delta(base_arrays[n], decoded[n], op) for n in arrays}
        if op == "add":
            self._residual = {n: (target[n] - state[n]) if target[n].dtype.kind == "f" else np.zeros_like(state[n])
                              for n in arrays}
        data = enc.write(PayloadInfo("delta", round, content_hash(state), layout, base=base_hash, op=op))
        self.last_encode_s = time.perf_counter() - t0
        return data


def decode_update(payload, bases: "Mapping[str, Any] | BroadcastEncoder", *, limits: Limits = DEFAULT_LIMITS):
    """Server side: decode a client's update; ``bases`` maps state hash -> model (or is the encoder).

    Raises :class:`~squeezefmt.errors.BaseMismatchError` when the update's base is unknown.
    """
    with SqzFile(payload, limits=limits) as f:
        info = _parse_info(f.metadata(), f.file_size, len(f))
        tensors = f.tensors() if info.kind != "keep" else {}
    base = None
    if info.base is not None:
        if isinstance(bases, BroadcastEncoder):
            base = bases.state_by_hash(info.base)
        else:
            base = bases.get(info.base)
    base_arrays = as_named_arrays(base)[0] if base is not None else None
    state = apply_payload(info, tensors, base_arrays, info.base if base is not None else None)
    return to_layout(state, info.layout)


__all__ = ["BroadcastEncoder", "BroadcastDecoder", "UpdateEncoder", "RoundReport", "decode_update"]
