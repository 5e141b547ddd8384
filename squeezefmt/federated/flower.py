"""Flower integration: send the global model as squeezefmt payloads around any strategy.

Needs ``pip install squeezefmt[flower]`` (``flwr==1.12.0``, the last release that co-installs with
TensorFlow 2.14's protobuf < 5). Server::

    import flwr as fl
    from squeezefmt.federated.flower import SqueezeStrategy
    strategy = SqueezeStrategy(fl.server.strategy.FedAvg(...), preset="lossy-delta", uplink="lossy-delta")
    fl.server.start_server(server_address="127.0.0.1:8080", strategy=strategy, config=...)
    strategy.report()                     # bytes per round down/up, encode/decode times

Client (wraps any ``NumPyClient``; user code sees plain numpy arrays)::

    from squeezefmt.federated.flower import SqueezeClient
    fl.client.start_client(server_address="127.0.0.1:8080", client=SqueezeClient(MyNumPyClient()))

On the wire a squeezefmt payload is ``Parameters(tensors=[payload bytes], tensor_type="squeezefmt.v1")``.
The strategy tracks which model each client holds (clients report its state hash in their
metrics, ``sqz.state``) and sends each one the cheapest payload that brings it up to date: the
round's delta, a tensor-less "keep", or a full catch-up payload for a client that missed rounds or
reported a base mismatch. A client that receives a delta for a base it does not hold answers with a
non-OK status (Flower's legacy transport would kill the client process on an exception), forgets
its model, and gets a full payload next time.

``preset=None`` leaves Flower's own numpy serialization in place and only measures (the baseline).
Centralised evaluation (``evaluate_fn`` of the inner strategy) sees the model clients reconstruct,
not the server's float model, so reported accuracy is the accuracy clients get.

Importing this module imports ``flwr``, whose package ``__init__`` imports TensorFlow when it is
installed (for a GPU helper of its ray simulation); this module hides TensorFlow from that one
import when TensorFlow is not already loaded, so a numpy-only client or server stays TensorFlow-free.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import sys
import time
from typing import Any

from ..errors import BaseMismatchError, SqueezeError
from .delta import BroadcastDecoder, BroadcastEncoder, UpdateEncoder, decode_update
from .presets import FederatedPreset, get_preset


class _HideTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden while importing flwr)", name=name)
        return None


@contextlib.contextmanager
def _without_tensorflow():
    if "tensorflow" in sys.modules:
        yield
        return
    finder = _HideTensorFlow()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


with _without_tensorflow():
    import flwr  # noqa: F401
    from flwr.client import Client, NumPyClient
    from flwr.common import (
        Code, EvaluateIns, EvaluateRes, FitIns, FitRes, GetParametersIns, GetParametersRes, GetPropertiesIns,
        GetPropertiesRes, Parameters, Status, ndarrays_to_parameters, parameters_to_ndarrays,
    )
    from flwr.server.strategy import FedAvg, FedAvgM, FedOpt, Strategy

#: ``Parameters.tensor_type`` of a squeezefmt payload (one tensor: the payload bytes).
TENSOR_TYPE = "squeezefmt.v1"
#: Config key the strategy sets to ask clients for compressed updates (a preset name, "" for none).
CONFIG_UPLINK = "sqz.uplink"
#: Metric keys clients add (and the strategy removes before the inner strategy sees the metrics).
METRIC_STATE = "sqz.state"
METRIC_DECODE_S = "sqz.decode_s"
METRIC_ENCODE_S = "sqz.encode_s"
METRIC_ERROR = "sqz.error"
_PREFIX = "sqz."


def wire_bytes(parameters: Parameters) -> int:
    """Bytes Flower carries for ``parameters`` (the sum of its tensors' byte strings)."""
    return sum(len(t) for t in parameters.tensors)


def _strip(metrics: dict | None) -> dict:
    return {k: v for k, v in (metrics or {}).items() if not str(k).startswith(_PREFIX)}


def builds_on_broadcast(inner, fedavg=FedAvg, own_model=(FedOpt, FedAvgM)) -> bool:
    """Whether ``inner`` makes the next global model from the clients' models alone (FedAvg and its
    plain relatives: FedProx, FedMedian, Krum, ...), i.e. on top of what the clients received. Then
    the broadcast encoder must carry its residual (``BroadcastEncoder(carry_residual=True)``).
    Server-side optimisers (FedOpt: FedAdam, FedYogi, FedAdagrad; FedAvgM) keep their own model."""
    return isinstance(inner, fedavg) and not isinstance(inner, own_model)


def _payload_of(parameters: Parameters) -> bytes:
    if len(parameters.tensors) != 1:
        raise SqueezeError(f"a {TENSOR_TYPE} Parameters object holds exactly one payload, got {len(parameters.tensors)}")
    return parameters.tensors[0]


class SqueezeStrategy(Strategy):
    """Wrap ``inner`` (FedAvg by default) so the global model travels as squeezefmt payloads.

    ``preset``: a federated preset (``"lossless"``, ``"lossless-delta"``, ``"lossy"``,
    ``"lossy-delta"`` or a :class:`FederatedPreset`), or None for Flower's numpy serialization
    (measure only). ``uplink``: preset clients use for their updates (None: plain numpy).
    ``evaluate_reconstruction``: centralised evaluation sees the model clients reconstruct.
    ``carry_residual``: feed what a lossy payload left out into the next one (see
    :class:`~squeezefmt.federated.BroadcastEncoder`); None (default): on for FedAvg-like inner
    strategies (:func:`builds_on_broadcast`), off for those with a server-side model.

    ``rounds`` collects per server round: ``down_bytes``/``up_bytes`` (fit + evaluate messages),
    ``encode_s`` (server), ``client_decode_s``/``client_encode_s`` (mean over clients),
    ``server_decode_s`` (uplink), the payload kinds sent, and the centralised metrics.
    """

    def __init__(self, inner: Strategy | None = None, *, preset: "str | FederatedPreset | None" = "lossy-delta",
                 full_every: int | None = None, bits: int | None = None, delta_bits: int | None = None,
                 uplink: str | None = None, evaluate_reconstruction: bool = True,
                 carry_residual: bool | None = None):
        super().__init__()
        self.inner = inner if inner is not None else FedAvg()
        carry = builds_on_broadcast(self.inner) if carry_residual is None else bool(carry_residual)
        self.encoder = (None if preset is None else
                        BroadcastEncoder(preset, full_every=full_every, bits=bits, delta_bits=delta_bits,
                                         carry_residual=carry))
        if uplink is not None:
            if not isinstance(uplink, str):
                raise SqueezeError("uplink must be a federated preset name (clients build the encoder from it)")
            get_preset(uplink)  # validate now
            if preset is None:
                raise SqueezeError("compressed uplink needs a squeezefmt preset for the downlink (its bases)")
        self.uplink = uplink
        self.evaluate_reconstruction = evaluate_reconstruction
        self._encoded_for: Parameters | None = None
        self._held: dict[str, str] = {}
        self._pending: set[str] = set()
        self.rounds: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        name = "numpy" if self.encoder is None else self.encoder.preset.name
        return f"SqueezeStrategy({self.inner!r}, preset={name!r}, uplink={self.uplink!r})"

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _round(self, rnd: int) -> dict[str, Any]:
        return self.rounds.setdefault(rnd, {"round": rnd, "down_bytes": 0, "up_bytes": 0, "encode_s": 0.0,
                                            "client_decode_s": [], "client_encode_s": [], "server_decode_s": 0.0,
                                            "kinds": {}, "down_messages": 0, "up_messages": 0})

    def _ensure_encoded(self, rnd: int, parameters: Parameters) -> None:
        if parameters is self._encoded_for:
            return
        t0 = time.perf_counter()
        arrays = parameters_to_ndarrays(parameters)
        if self.encoder is not None:
            self.encoder.encode(arrays)
        else:  # baseline: the cost of Flower's own serialization of the global model
            t0 = time.perf_counter()
            ndarrays_to_parameters(arrays)
        self._round(rnd)["encode_s"] += time.perf_counter() - t0
        self._encoded_for = parameters

    def _wrap(self, rnd: int, client, parameters: Parameters) -> Parameters:
        stats = self._round(rnd)
        stats["down_messages"] += 1
        if self.encoder is None:
            stats["down_bytes"] += wire_bytes(parameters)
            return parameters
        if parameters is not self._encoded_for:  # an inner strategy that sends per-client models
            from .payload import encode_model
            kind, data = "other", encode_model(parameters_to_ndarrays(parameters))
        else:
            kind, data = self.encoder.select(self._held.get(client.cid))
        stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
        stats["down_bytes"] += len(data)
        self._pending.add(client.cid)
        return Parameters(tensors=[data], tensor_type=TENSOR_TYPE)

    def _absorb(self, rnd: int, results, failures) -> None:
        """Record what each answering client holds now; forget clients that did not answer."""
        stats = self._round(rnd)
        answered = set()
        for client, res in list(results) + [f for f in failures if isinstance(f, tuple)]:
            answered.add(client.cid)
            m = res.metrics or {}
            state = m.get(METRIC_STATE)
            if isinstance(state, str) and state:
                self._held[client.cid] = state
            else:
                self._held.pop(client.cid, None)
            for key, dst in ((METRIC_DECODE_S, "client_decode_s"), (METRIC_ENCODE_S, "client_encode_s")):
                if isinstance(m.get(key), (int, float)):
                    stats[dst].append(float(m[key]))
            if METRIC_ERROR in m:
                stats.setdefault("client_errors", []).append(str(m[METRIC_ERROR]))
        for cid in self._pending - answered:
            self._held.pop(cid, None)
        self._pending.clear()

    def report(self) -> list[dict[str, Any]]:
        """Per-round statistics (see the class docstring), client timings averaged."""
        out = []
        for rnd in sorted(self.rounds):
            r = dict(self.rounds[rnd])
            for key in ("client_decode_s", "client_encode_s"):
                vals = r[key]
                r[key] = sum(vals) / len(vals) if vals else 0.0
            out.append(r)
        return out

    # -- Strategy interface --------------------------------------------------------------------------
    def initialize_parameters(self, client_manager):
        params = self.inner.initialize_parameters(client_manager)
        if params is not None and params.tensor_type == TENSOR_TYPE:
            raise SqueezeError("the inner strategy's initial parameters must be numpy Parameters")
        return params

    def configure_fit(self, server_round, parameters, client_manager):
        self._ensure_encoded(server_round, parameters)
        out = []
        for client, ins in self.inner.configure_fit(server_round, parameters, client_manager):
            config = dict(ins.config)
            if self.uplink is not None:
                config[CONFIG_UPLINK] = self.uplink
            out.append((client, FitIns(self._wrap(server_round, client, ins.parameters), config)))
        return out

    def aggregate_fit(self, server_round, results, failures):
        stats = self._round(server_round)
        decoded_results = []
        for client, res in results:
            stats["up_bytes"] += wire_bytes(res.parameters)
            stats["up_messages"] += 1
            params = res.parameters
            if params.tensor_type == TENSOR_TYPE:
                t0 = time.perf_counter()
                try:
                    arrays = decode_update(_payload_of(params), self.encoder)
                except SqueezeError as exc:  # a bad update is a failed client, not a failed round
                    failures.append(exc)
                    continue
                stats["server_decode_s"] += time.perf_counter() - t0
                params = ndarrays_to_parameters(arrays)
            decoded_results.append((client, FitRes(res.status, params, res.num_examples, res.metrics)))
        self._absorb(server_round, decoded_results, failures)
        clean = [(c, FitRes(r.status, r.parameters, r.num_examples, _strip(r.metrics))) for c, r in decoded_results]
        return self.inner.aggregate_fit(server_round, clean, failures)

    def configure_evaluate(self, server_round, parameters, client_manager):
        self._ensure_encoded(server_round, parameters)
        out = []
        for client, ins in self.inner.configure_evaluate(server_round, parameters, client_manager):
            out.append((client, EvaluateIns(self._wrap(server_round, client, ins.parameters), dict(ins.config))))
        return out

    def aggregate_evaluate(self, server_round, results, failures):
        self._absorb(server_round, results, failures)
        clean = [(c, EvaluateRes(r.status, r.loss, r.num_examples, _strip(r.metrics))) for c, r in results]
        return self.inner.aggregate_evaluate(server_round, clean, failures)

    def evaluate(self, server_round, parameters):
        if self.encoder is not None and self.evaluate_reconstruction:
            self._ensure_encoded(server_round, parameters)  # the broadcast of the next round
            parameters = ndarrays_to_parameters(self.encoder.state)
        res = self.inner.evaluate(server_round, parameters)
        if res is not None:
            self._round(server_round)["centralized"] = {"loss": res[0], **dict(res[1])}
        return res


class SqueezeClient(Client):
    """Wrap a :class:`flwr.client.NumPyClient`: decode squeezefmt payloads before it sees the arrays.

    Plain numpy ``Parameters`` pass through unchanged, so the same client works with an unwrapped
    server. When the server asks (``sqz.uplink`` in the fit config) the trained model goes back as a
    squeezefmt delta against the model received, with per-client error feedback when lossy.
    """

    def __init__(self, numpy_client: NumPyClient, *, verify: bool = True):
        self.inner = numpy_client
        self.decoder = BroadcastDecoder(verify=verify)
        self._uplink: dict[str, UpdateEncoder] = {}

    def _receive(self, parameters: Parameters):
        """``(arrays, decode seconds)``; raises BaseMismatchError for a delta on another base."""
        t0 = time.perf_counter()
        if parameters.tensor_type == TENSOR_TYPE:
            arrays = self.decoder.decode(_payload_of(parameters))
        else:
            arrays = parameters_to_ndarrays(parameters)
        return arrays, time.perf_counter() - t0

    def _refuse(self, exc: SqueezeError) -> dict:
        self.decoder.reset()  # the server will send a full payload next time
        return {METRIC_STATE: "", METRIC_ERROR: f"{type(exc).__name__}: {exc}"}

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(Status(Code.OK, "Success"), self.inner.get_properties(ins.config))

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        arrays = self.inner.get_parameters(ins.config)
        return GetParametersRes(Status(Code.OK, "Success"), ndarrays_to_parameters(arrays))

    def fit(self, ins: FitIns) -> FitRes:
        config = _strip(ins.config)
        try:
            arrays, decode_s = self._receive(ins.parameters)
        except (BaseMismatchError, SqueezeError) as exc:
            return FitRes(Status(Code.FIT_NOT_IMPLEMENTED, f"squeezefmt: {exc}"), Parameters([], ""), 0,
                          self._refuse(exc))
        base_hash = self.decoder.state_hash if ins.parameters.tensor_type == TENSOR_TYPE else None
        new, num_examples, metrics = self.inner.fit(arrays, config)
        uplink = ins.config.get(CONFIG_UPLINK)
        t0 = time.perf_counter()
        if isinstance(uplink, str) and uplink and base_hash is not None:
            enc = self._uplink.setdefault(uplink, UpdateEncoder(uplink))
            # the base is the held model itself (user code may have changed ``arrays`` in place)
            payload = enc.encode(new, self.decoder.state, base_hash=base_hash, round=self.decoder.round or 0)
            params = Parameters(tensors=[payload], tensor_type=TENSOR_TYPE)
        else:
            params = ndarrays_to_parameters(new)
        encode_s = time.perf_counter() - t0
        metrics = dict(metrics or {})
        metrics.update({METRIC_STATE: self.decoder.state_hash or "", METRIC_DECODE_S: decode_s,
                        METRIC_ENCODE_S: encode_s})
        return FitRes(Status(Code.OK, "Success"), params, num_examples, metrics)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        try:
            arrays, decode_s = self._receive(ins.parameters)
        except (BaseMismatchError, SqueezeError) as exc:
            return EvaluateRes(Status(Code.EVALUATE_NOT_IMPLEMENTED, f"squeezefmt: {exc}"), 0.0, 0, self._refuse(exc))
        loss, num_examples, metrics = self.inner.evaluate(arrays, _strip(ins.config))
        metrics = dict(metrics or {})
        metrics.update({METRIC_STATE: self.decoder.state_hash or "", METRIC_DECODE_S: decode_s})
        return EvaluateRes(Status(Code.OK, "Success"), float(loss), num_examples, metrics)


__all__ = ["SqueezeStrategy", "SqueezeClient", "TENSOR_TYPE", "CONFIG_UPLINK", "METRIC_STATE", "wire_bytes",
           "builds_on_broadcast"]
