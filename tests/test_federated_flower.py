"""squeezefmt.federated.flower: the strategy wrapper and the client wrapper, driven in-process.

The rounds are driven the way ``flwr.server.Server.fit`` drives them (configure_fit -> client.fit ->
aggregate_fit -> evaluate -> configure_evaluate -> ...), with real ``FitIns``/``FitRes`` objects and
a deterministic numpy client, so the byte accounting, missed rounds and base mismatches can be
checked exactly. tests/test_federated_run.py runs the real thing over gRPC on loopback.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
flower = pytest.importorskip("squeezefmt.federated.flower", reason="needs the flower extra (flwr)")

from flwr.client import NumPyClient  # noqa: E402
from flwr.common import Code, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402

from squeezefmt import federated as fl  # noqa: E402
from squeezefmt.codecs import codec_ids  # noqa: E402
from squeezefmt.federated.flower import SqueezeClient, SqueezeStrategy, TENSOR_TYPE, wire_bytes  # noqa: E402


class Proxy:
    def __init__(self, cid):
        self.cid = cid


class Manager:
    """A client manager whose sample() returns the clients marked online."""

    def __init__(self, cids):
        self.proxies = [Proxy(c) for c in cids]
        self.online = set(cids)

    def num_available(self):
        return len(self.online)

    def sample(self, num_clients, min_num_clients=None, criterion=None):
        return [p for p in self.proxies if p.cid in self.online][:num_clients]


class LinearClient(NumPyClient):
    """Softmax regression trained with a few deterministic gradient steps on its own synthetic data."""

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(0, 1, (400, 300)).astype(np.float32)
        true_w = np.random.default_rng(0).normal(0, 1, (300, 10)).astype(np.float32)
        self.y = np.argmax(self.x @ true_w + rng.normal(0, 0.5, (400, 10)), axis=1)
        self.seen = []

    def get_parameters(self, config):
        return [np.zeros((300, 10), np.float32), np.zeros(10, np.float32)]

    def fit(self, parameters, config):
        assert all(isinstance(p, np.ndarray) for p in parameters)  # user code sees numpy only
        assert not any(k.startswith("sqz.") for k in config)
        self.seen.append([p.copy() for p in parameters])
        w, b = [p.copy() for p in parameters]
        for _ in range(5):
            logits = self.x @ w + b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(self.y)), self.y] -= 1
            w -= 0.1 * (self.x.T @ p / len(self.y)).astype(np.float32)
            b -= 0.1 * p.mean(0).astype(np.float32)
        return [w, b], len(self.y), {"partition": 1}

    def evaluate(self, parameters, config):
        w, b = parameters
        acc = float(np.mean(np.argmax(self.x @ w + b, 1) == self.y))
        return 1.0 - acc, len(self.y), {"accuracy": acc}


def init_params():
    rng = np.random.default_rng(7)
    return ndarrays_to_parameters([rng.normal(0, 0.1, (300, 10)).astype(np.float32), np.zeros(10, np.float32)])


def run(strategy, clients, manager, rounds, *, offline=None, before_round=None):
    """Drive ``rounds`` rounds like flwr.server.Server.fit; ``offline[r]`` = cids offline in round r."""
    params = strategy.initialize_parameters(manager)
    strategy.evaluate(0, params)
    for rnd in range(1, rounds + 1):
        manager.online = set(clients) - set((offline or {}).get(rnd, ()))
        if before_round:
            before_round(rnd)
        results, failures = [], []
        for proxy, ins in strategy.configure_fit(rnd, params, manager):
            res = clients[proxy.cid].fit(ins)
            (results if res.status.code == Code.OK else failures).append((proxy, res))
        new, _ = strategy.aggregate_fit(rnd, results, failures)
        if new is not None:
            params = new
        strategy.evaluate(rnd, params)
        results, failures = [], []
        for proxy, ins in strategy.configure_evaluate(rnd, params, manager):
            res = clients[proxy.cid].evaluate(ins)
            (results if res.status.code == Code.OK else failures).append((proxy, res))
        strategy.aggregate_evaluate(rnd, results, failures)
    return params


def make(preset, n=3, **kw):
    inner = FedAvg(initial_parameters=init_params(), min_fit_clients=1, min_available_clients=1,
                   min_evaluate_clients=1, fraction_evaluate=1.0)
    strategy = SqueezeStrategy(inner, preset=preset, **kw)
    clients = {f"c{i}": SqueezeClient(LinearClient(i)) for i in range(n)}
    return strategy, clients, Manager(list(clients))


def test_baseline_measures_flower_numpy_bytes():
    strategy, clients, manager = make(None)
    params = run(strategy, clients, manager, 2)
    rep = strategy.report()
    per_message = wire_bytes(params)
    # fit + evaluate messages of 3 clients each, Flower's own np.save serialization
    assert rep[1]["down_bytes"] == 6 * per_message and rep[1]["down_messages"] == 6
    assert rep[1]["up_bytes"] == 3 * per_message
    assert params.tensor_type == "numpy.ndarray"


def test_lossless_delta_is_exact_and_smaller_than_baseline():
    base_strategy, base_clients, m1 = make(None)
    base = run(base_strategy, base_clients, m1, 3)
    strategy, clients, m2 = make("lossless-delta")
    params = run(strategy, clients, m2, 3)
    # bit-identical training: squeezefmt lossless changes nothing but the bytes
    for a, b in zip(parameters_to_ndarrays(base), parameters_to_ndarrays(params)):
        assert a.tobytes() == b.tobytes()
    rep, brep = strategy.report(), base_strategy.report()
    assert sum(r["down_bytes"] for r in rep) < sum(r["down_bytes"] for r in brep)
    # evaluate messages go to clients that already hold the model: tensor-less "keep" payloads
    assert rep[2]["kinds"] == {"delta": 3, "keep": 3}
    for c in clients.values():
        assert c.decoder.state_hash == strategy.encoder.state_hash


def test_missed_round_client_gets_a_full_catchup():
    strategy, clients, manager = make("lossless-delta")
    run(strategy, clients, manager, 5, offline={2: ["c1"], 3: ["c1"]})
    rep = strategy.report()
    # fit of round r sends the model of round r-1, which clients got in round r-1's evaluation ("keep");
    # evaluation sends round r's model as a delta
    assert rep[2]["kinds"] == {"keep": 2, "delta": 2}
    assert rep[4]["kinds"] == {"keep": 2, "catchup": 1, "delta": 3}     # c1 was offline in rounds 2-3
    assert rep[5]["kinds"] == {"keep": 3, "delta": 3}
    hashes = {c.decoder.state_hash for c in clients.values()}
    assert hashes == {strategy.encoder.state_hash}


def test_wrong_base_is_refused_then_recovered():
    """The server believes a client holds the base, but it does not: the client refuses, then catches up."""
    strategy, clients, manager = make("lossless-delta")

    def lose_model(rnd):
        if rnd == 3:
            clients["c2"].decoder.set_state([np.ones((300, 10), np.float32), np.ones(10, np.float32)])

    run(strategy, clients, manager, 4, before_round=lose_model)
    rep = strategy.report()
    assert any("BaseMismatchError" in e for e in rep[3]["client_errors"])
    assert rep[3]["up_messages"] == 2                          # the refusing client trained on nothing
    assert rep[3]["kinds"]["catchup"] == 1                     # it got the full model for evaluation
    assert {c.decoder.state_hash for c in clients.values()} == {strategy.encoder.state_hash}
    # user code never saw the wrong model
    assert len(clients["c2"].inner.seen) == 3


@pytest.mark.skipif("quant" not in codec_ids(), reason="needs the quant codec")
def test_lossy_delta_with_compressed_uplink():
    base_strategy, base_clients, m1 = make(None)
    run(base_strategy, base_clients, m1, 4)
    strategy, clients, manager = make("lossy-delta", uplink="lossy-delta")
    params = run(strategy, clients, manager, 4)
    rep, brep = strategy.report(), base_strategy.report()
    assert rep[1]["up_bytes"] < brep[1]["up_bytes"] / 2
    down = sum(r["down_bytes"] for r in rep)
    assert down < sum(r["down_bytes"] for r in brep) / 2
    # clients evaluate the model the server evaluates: its reconstruction
    acc = [r["centralized"] for r in rep if "centralized" in r]
    assert acc == []  # the inner FedAvg has no evaluate_fn
    final = parameters_to_ndarrays(params)
    ref = parameters_to_ndarrays(base_strategy.inner.initial_parameters or init_params())
    assert final[0].shape == ref[0].shape
    for c in clients.values():
        assert c.decoder.state_hash == strategy.encoder.state_hash


def test_centralized_evaluation_sees_the_reconstruction():
    seen = []

    def evaluate_fn(rnd, arrays, config):
        seen.append(fl.content_hash(arrays))
        return 0.0, {}

    inner = FedAvg(initial_parameters=init_params(), min_fit_clients=1, min_available_clients=1,
                   fraction_evaluate=0.0, evaluate_fn=evaluate_fn)
    strategy = SqueezeStrategy(inner, preset="lossless")
    clients = {"a": SqueezeClient(LinearClient(1))}
    run(strategy, clients, Manager(["a"]), 2)
    assert seen[-1] == strategy.encoder.state_hash
    assert strategy.report()[2]["centralized"] == {"loss": 0.0}


def test_plain_numpy_parameters_pass_through_the_client():
    client = SqueezeClient(LinearClient(3))
    from flwr.common import FitIns
    res = client.fit(FitIns(init_params(), {}))
    assert res.status.code == Code.OK and res.parameters.tensor_type == "numpy.ndarray"
    assert res.metrics["sqz.state"] == ""


def test_payload_on_the_wire_is_one_tensor():
    strategy, clients, manager = make("lossless")
    params = strategy.initialize_parameters(manager)
    ins = strategy.configure_fit(1, params, manager)
    assert all(i.parameters.tensor_type == TENSOR_TYPE and len(i.parameters.tensors) == 1 for _, i in ins)
    assert fl.peek(ins[0][1].parameters.tensors[0]).kind == "full"


class InPlaceClient(LinearClient):
    """User code that trains on the arrays it is given, in place."""

    def fit(self, parameters, config):
        new, n, metrics = super().fit(parameters, config)
        for p, q in zip(parameters, new):
            p[...] = q
        self.last = [p.copy() for p in parameters]
        return parameters, n, metrics


def test_exact_uplink_survives_in_place_training():
    inner = FedAvg(initial_parameters=init_params(), min_fit_clients=1, min_available_clients=1,
                   fraction_evaluate=0.0)
    received = []

    class Spy(SqueezeStrategy):
        def aggregate_fit(self, rnd, results, failures):
            out = super().aggregate_fit(rnd, results, failures)
            received.append(parameters_to_ndarrays(out[0]))
            return out

    strategy = Spy(inner, preset="lossless-delta", uplink="lossless-delta")
    clients = {"a": SqueezeClient(InPlaceClient(1))}
    run(strategy, clients, Manager(["a"]), 3)
    rep = strategy.report()
    assert all(not r.get("client_errors") for r in rep)
    for got, want in zip(received[-1], clients["a"].inner.last):  # one client: FedAvg returns its model
        assert got.tobytes() == want.tobytes()
    assert rep[3]["up_bytes"] < wire_bytes(ndarrays_to_parameters(received[-1]))


def test_fedavg_carries_the_residual_and_server_side_optimisers_do_not():
    from flwr.server.strategy import FedAdam, FedAvgM, FedProx

    assert flower.builds_on_broadcast(FedAvg()) and flower.builds_on_broadcast(FedProx(proximal_mu=0.1))
    assert not flower.builds_on_broadcast(FedAdam(initial_parameters=init_params()))
    assert not flower.builds_on_broadcast(FedAvgM())
    assert SqueezeStrategy(FedAvg(), preset="lossy-delta").encoder.carry_residual
    assert not SqueezeStrategy(FedAdam(initial_parameters=init_params()), preset="lossy-delta").encoder.carry_residual
    assert not SqueezeStrategy(FedAvg(), preset="lossy-delta", carry_residual=False).encoder.carry_residual
    strategy, clients, manager = make("lossy-delta")
    params = run(strategy, clients, manager, 4)
    res = strategy.encoder.residual
    assert res is not None and set(res) == {"0", "1"}
    # the residual is what the last payload left out of (aggregate + previous residual)
    agg = parameters_to_ndarrays(params)
    assert np.max(np.abs(res["0"])) > 0 and np.max(np.abs(res["0"])) < 0.5 * np.max(np.abs(agg[0]))
    for c in clients.values():
        assert c.decoder.state_hash == strategy.encoder.state_hash
