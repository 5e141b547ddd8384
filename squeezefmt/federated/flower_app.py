"""Flower Message API integration (flwr >= 1.20): squeezefmt payloads between ServerApp and ClientApps.

Today's Flower runs ``ServerApp``/``ClientApp`` and strategies from ``flwr.serverapp.strategy`` that
send ``Message`` objects whose ``RecordDict`` holds an ``ArrayRecord`` (the model) and a
``ConfigRecord``. This module wraps both ends; the legacy ``NumPyClient``/``start_server`` wrapper
for flwr 1.12 stays in :mod:`squeezefmt.federated.flower`. Both use the same round payloads,
deltas and presets (:mod:`squeezefmt.federated.delta`). Server::

    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg
    from squeezefmt.federated.flower_app import SqueezeMessageStrategy

    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy = SqueezeMessageStrategy(FedAvg(fraction_evaluate=1.0), preset="lossy-delta")
        strategy.start(grid=grid, initial_arrays=ArrayRecord(...), num_rounds=5)
        strategy.report()              # per round: bytes sent vs Flower's numpy Arrays, payload kinds

Client (user code keeps reading ``msg.content["arrays"]`` as numpy ``Array`` objects)::

    from flwr.clientapp import ClientApp
    from squeezefmt.federated.flower_app import squeeze_mod

    app = ClientApp(mods=[squeeze_mod])

On the wire the model ``ArrayRecord`` becomes one ``Array`` with ``stype="squeezefmt.v1"`` holding
the payload bytes. Each node keeps the model it holds in its ``Context.state`` (so a delta can be
applied next round, also across processes) and reports that model's content hash back in a
``ConfigRecord`` ``"sqz"`` of its reply; the strategy sends every node the cheapest payload that
brings it up to date (delta, "keep", or a full catch-up) and removes that record before the inner
strategy aggregates. A node that receives a delta on a base it does not hold forgets its model and
replies with an error message; the strategy sends it a full payload next time.

``preset=None`` sends Flower's own numpy Arrays and only measures (the baseline).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import SqueezeError
from .delta import BroadcastDecoder, BroadcastEncoder, UpdateEncoder, decode_update
from .flower import _without_tensorflow, builds_on_broadcast
from .payload import encode_model
from .presets import get_preset

with _without_tensorflow():
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
    from flwr.serverapp.strategy import FedAvg, FedAvgM, Strategy
    from flwr.serverapp.strategy.fedopt import FedOpt

#: ``Array.stype`` of a squeezefmt payload (one Array, dtype uint8, the payload bytes as data).
STYPE = "squeezefmt.v1"
#: Name of the payload Array inside the ArrayRecord.
PAYLOAD_KEY = "sqz"
#: ConfigRecord a node adds to its replies: ``state`` (held model hash), ``decode_s``, ``error``.
REPLY_KEY = "sqz"
#: Context.state records where a node keeps its model, its hash, and its uplink error feedback.
STATE_MODEL, STATE_META, STATE_RESIDUAL = "sqz.model", "sqz.meta", "sqz.residual"
#: Train-config key the strategy sets to ask nodes for compressed updates (a preset name).
CONFIG_UPLINK = "sqz.uplink"
#: Error code of a reply from a node that refused a payload (base mismatch, corrupt payload).
ERROR_CODE = 4701


def hide_tensorflow() -> None:
    """Make ``import tensorflow`` fail in this process (a Ray ``worker_process_setup_hook``).

    ``flwr.simulation`` imports TensorFlow when it is installed (for a GPU helper), so every Ray
    actor of a simulation would load it (~0.7 GB, seconds) although numpy ClientApps never use it.
    """
    from .flower import _HideTensorFlow  # noqa: PLC0415

    if "tensorflow" not in sys.modules and not any(isinstance(f, _HideTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _HideTensorFlow())


def payload_record(data: bytes) -> ArrayRecord:
    """An ArrayRecord carrying one squeezefmt payload."""
    record = ArrayRecord()
    record[PAYLOAD_KEY] = Array(dtype="uint8", shape=(len(data),), stype=STYPE, data=bytes(data))
    return record


def payload_of(record: Any) -> bytes | None:
    """The payload bytes if ``record`` is a squeezefmt ArrayRecord, else None."""
    if not isinstance(record, ArrayRecord) or len(record) != 1:
        return None
    array = next(iter(record.values()))
    return array.data if array.stype == STYPE else None


def record_bytes(record: ArrayRecord) -> int:
    """Bytes of array data Flower carries for ``record`` (numpy Arrays: their .npy serialization)."""
    return sum(len(a.data) for a in record.values())


def to_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def from_arrays(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    record = ArrayRecord()
    for k, v in arrays.items():
        record[k] = Array(np.ascontiguousarray(v))
    return record


def _copy_with(msg: Message, key: str, record) -> Message:
    content = RecordDict({k: v for k, v in msg.content.items()})
    content[key] = record
    md = msg.metadata
    return Message(content=content, dst_node_id=md.dst_node_id, message_type=md.message_type, group_id=md.group_id)


class SqueezeMessageStrategy(Strategy):
    """Wrap a Message API strategy (FedAvg by default) so the global model travels as squeezefmt payloads.

    ``preset``: a federated preset (``"lossless"``, ``"lossless-delta"``, ``"lossy"``,
    ``"lossy-delta"``), or None for Flower's numpy Arrays (measure only). ``uplink``: the preset
    nodes code their trained models with, as deltas against the model they received (None: numpy).
    ``rounds`` collects per server round: ``down_bytes`` (payload bytes sent), ``numpy_bytes`` (what
    Flower's numpy Arrays of the same messages hold), ``up_bytes`` / ``up_numpy_bytes`` likewise for
    the replies, ``encode_s``, the payload kinds, ``client_decode_s`` (mean) and node errors.
    ``carry_residual``: as for :class:`squeezefmt.federated.flower.SqueezeStrategy` (None: on for
    FedAvg-like inner strategies, off for FedOpt / FedAvgM, which keep a server-side model).
    ``evaluate_reconstruction``: the ``evaluate_fn`` given to :meth:`start` sees the model the nodes
    will hold (the next broadcast, decoded), not the server's float aggregate.
    """

    def __init__(self, inner: Strategy | None = None, *, preset: str | None = "lossy-delta",
                 full_every: int | None = None, bits: int | None = None, delta_bits: int | None = None,
                 uplink: str | None = None, carry_residual: bool | None = None, evaluate_reconstruction: bool = True):
        self.inner = inner if inner is not None else FedAvg()
        carry = (builds_on_broadcast(self.inner, FedAvg, (FedOpt, FedAvgM)) if carry_residual is None
                 else bool(carry_residual))
        self.key = getattr(self.inner, "arrayrecord_key", "arrays")
        self.config_key = getattr(self.inner, "configrecord_key", "config")
        if uplink is not None:
            get_preset(uplink)  # validate now
            if preset is None:
                raise SqueezeError("compressed uplink needs a squeezefmt preset for the downlink (its bases)")
        self.uplink = uplink
        self.evaluate_reconstruction = evaluate_reconstruction
        self.encoder = (None if preset is None else
                        BroadcastEncoder(preset, full_every=full_every, bits=bits, delta_bits=delta_bits,
                                         carry_residual=carry))
        self._encoded_for: ArrayRecord | None = None
        self._held: dict[int, str] = {}
        self.rounds: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        name = "numpy" if self.encoder is None else self.encoder.preset.name
        return f"SqueezeMessageStrategy({type(self.inner).__name__}, preset={name!r})"

    def summary(self) -> None:
        self.inner.summary()

    def start(self, grid, initial_arrays, num_rounds=3, timeout=3600, train_config=None, evaluate_config=None,
              evaluate_fn=None):
        """Flower's ``Strategy.start``; ``evaluate_fn`` sees the reconstruction (``evaluate_reconstruction``)."""
        if evaluate_fn is not None and self.encoder is not None and self.evaluate_reconstruction:
            user_fn = evaluate_fn

            def evaluate_fn(rnd, arrays):
                self._ensure_encoded(rnd + 1, arrays)  # round rnd + 1's broadcast: what the nodes will hold
                return user_fn(rnd, from_arrays(self.encoder.state))
        return super().start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn)

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _round(self, rnd: int) -> dict[str, Any]:
        return self.rounds.setdefault(rnd, {"round": rnd, "down_bytes": 0, "numpy_bytes": 0, "up_bytes": 0,
                                            "up_numpy_bytes": 0,
                                            "encode_s": 0.0, "client_decode_s": [], "kinds": {},
                                            "down_messages": 0, "errors": []})

    def _ensure_encoded(self, rnd: int, arrays: ArrayRecord) -> None:
        if arrays is self._encoded_for or self.encoder is None:
            return
        t0 = time.perf_counter()
        self.encoder.encode(to_arrays(arrays))
        self._round(rnd)["encode_s"] += time.perf_counter() - t0
        self._encoded_for = arrays

    def _wrap(self, rnd: int, msg: Message) -> Message:
        record = msg.content.get(self.key) if msg.has_content() else None
        if not isinstance(record, ArrayRecord):
            return msg
        stats = self._round(rnd)
        stats["down_messages"] += 1
        stats["numpy_bytes"] += record_bytes(record)
        if self.encoder is None:
            stats["down_bytes"] += record_bytes(record)
            return msg
        if record is self._encoded_for:
            kind, data = self.encoder.select(self._held.get(msg.metadata.dst_node_id))
        else:  # an inner strategy that sends node-specific models
            kind, data = "other", encode_model(to_arrays(record))
        stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
        stats["down_bytes"] += len(data)
        return _copy_with(msg, self.key, payload_record(data))

    def _absorb(self, rnd: int, replies: Iterable[Message], sent: set[int]) -> list[Message]:
        """Record what each answering node holds; strip our record; drop refused replies."""
        stats = self._round(rnd)
        kept = []
        for msg in replies:
            node = msg.metadata.src_node_id
            sent.discard(node)
            if msg.has_error():
                self._held.pop(node, None)
                stats["errors"].append(msg.error.reason)
                if msg.error.code == ERROR_CODE:
                    continue
                kept.append(msg)
                continue
            info = msg.content.get(REPLY_KEY)
            if isinstance(info, ConfigRecord):
                del msg.content[REPLY_KEY]
                state = info.get("state")
                if isinstance(state, str) and state:
                    self._held[node] = state
                else:
                    self._held.pop(node, None)
                if isinstance(info.get("decode_s"), float):
                    stats["client_decode_s"].append(info["decode_s"])
            arrays = msg.content.get(self.key)
            if isinstance(arrays, ArrayRecord):
                stats["up_bytes"] += record_bytes(arrays)
                try:
                    arrays = self._decode_update(arrays)
                except SqueezeError as exc:  # a bad update is a failed node, not a failed round
                    self._held.pop(node, None)
                    stats["errors"].append(f"update from node {node}: {type(exc).__name__}: {exc}")
                    continue
                msg.content[self.key] = arrays
                stats["up_numpy_bytes"] += record_bytes(arrays)
            kept.append(msg)
        for node in sent:  # no answer: its state is unknown
            self._held.pop(node, None)
        return kept

    def _decode_update(self, record: ArrayRecord) -> ArrayRecord:
        payload = payload_of(record)
        if payload is None:
            return record
        arrays = decode_update(payload, self.encoder)
        return from_arrays(arrays if isinstance(arrays, dict) else {str(i): a for i, a in enumerate(arrays)})

    def report(self) -> list[dict[str, Any]]:
        """Per-round statistics (see the class docstring), client decode times averaged."""
        out = []
        for rnd in sorted(self.rounds):
            r = dict(self.rounds[rnd])
            vals = r["client_decode_s"]
            r["client_decode_s"] = sum(vals) / len(vals) if vals else 0.0
            out.append(r)
        return out

    # -- Strategy interface --------------------------------------------------------------------------
    def configure_train(self, server_round, arrays, config, grid):
        if self.uplink is not None:
            config[CONFIG_UPLINK] = self.uplink
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._ensure_encoded(server_round, arrays)
        out = [self._wrap(server_round, m) for m in messages]
        self._sent = {m.metadata.dst_node_id for m in out}
        return out

    def aggregate_train(self, server_round, replies):
        kept = self._absorb(server_round, list(replies), getattr(self, "_sent", set()))
        return self.inner.aggregate_train(server_round, kept)

    def configure_evaluate(self, server_round, arrays, config, grid):
        messages = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
        self._ensure_encoded(server_round, arrays)
        out = [self._wrap(server_round, m) for m in messages]
        self._sent = {m.metadata.dst_node_id for m in out}
        return out

    def aggregate_evaluate(self, server_round, replies):
        kept = self._absorb(server_round, list(replies), getattr(self, "_sent", set()))
        return self.inner.aggregate_evaluate(server_round, kept)


# -- client side ------------------------------------------------------------------------------------

def _decoder_from(context: Context) -> BroadcastDecoder:
    """The node's decoder with the model it holds (kept in ``context.state`` between messages)."""
    decoder = BroadcastDecoder()
    model, meta = context.state.get(STATE_MODEL), context.state.get(STATE_META)
    if isinstance(model, ArrayRecord) and isinstance(meta, ConfigRecord):
        decoder.set_state(to_arrays(model))
        if decoder.state_hash != meta.get("state"):  # the stored copy does not match its hash
            decoder.reset()
    return decoder


def _store(context: Context, decoder: BroadcastDecoder) -> None:
    if decoder.state is None:
        for key in (STATE_MODEL, STATE_META):
            if key in context.state:
                del context.state[key]
        return
    context.state[STATE_MODEL] = from_arrays(decoder.state)
    context.state[STATE_META] = ConfigRecord({"state": decoder.state_hash or ""})


def squeeze_mod(msg: Message, context: Context, call_next) -> Message:
    """ClientApp mod: decode squeezefmt payloads before the app's functions see the message.

    Messages without a payload pass through unchanged (the app also works with an unwrapped
    server). The reply gets a ConfigRecord ``"sqz"`` with the held model's hash and the decode time.
    """
    key = next((k for k, v in msg.content.items() if payload_of(v) is not None), None) if msg.has_content() else None
    if key is None:
        return call_next(msg, context)
    decoder = _decoder_from(context)
    t0 = time.perf_counter()
    try:
        arrays = decoder.decode(payload_of(msg.content[key]))
    except SqueezeError as exc:
        decoder.reset()
        _store(context, decoder)
        return Message(Error(code=ERROR_CODE, reason=f"squeezefmt: {type(exc).__name__}: {exc}"), reply_to=msg)
    decode_s = time.perf_counter() - t0
    _store(context, decoder)
    msg.content[key] = from_arrays(arrays if isinstance(arrays, dict) else {str(i): a for i, a in enumerate(arrays)})
    uplink = _uplink_preset(msg)
    reply = call_next(msg, context)
    if not reply.has_content():
        return reply
    reply.content[REPLY_KEY] = ConfigRecord({"state": decoder.state_hash or "", "decode_s": float(decode_s)})
    if uplink and isinstance(reply.content.get(key), ArrayRecord):
        reply.content[key] = _encode_update(reply.content[key], decoder, uplink, context)
    return reply


def _uplink_preset(msg: Message) -> str | None:
    for record in msg.content.values():
        if isinstance(record, ConfigRecord) and isinstance(record.get(CONFIG_UPLINK), str):
            return record[CONFIG_UPLINK]
    return None


def _encode_update(record: ArrayRecord, decoder: BroadcastDecoder, preset: str, context: Context) -> ArrayRecord:
    """The trained model as an uplink payload against the model received (error feedback kept per node)."""
    encoder = UpdateEncoder(preset)
    residual = context.state.get(STATE_RESIDUAL)
    if isinstance(residual, ArrayRecord):
        encoder.residual = to_arrays(residual)
    payload = encoder.encode(to_arrays(record), decoder.state, base_hash=decoder.state_hash,
                             round=decoder.round or 0)
    if encoder.residual is not None:
        context.state[STATE_RESIDUAL] = from_arrays(encoder.residual)
    return payload_record(payload)


__all__ = ["SqueezeMessageStrategy", "squeeze_mod", "STYPE", "payload_record", "payload_of", "record_bytes"]
