"""A Flower Message API federation for tests and tools/fl_app_demo.py: numpy MLP, ServerApp, ClientApp, run.

Flower's simulation runtime (``flwr.simulation.run_simulation``, Ray backend) runs one ``ServerApp``
whose strategy is ``flwr.serverapp.strategy.FedAvg`` wrapped in
:class:`squeezefmt.federated.flower_app.SqueezeMessageStrategy` (or unwrapped: the baseline) and N
virtual SuperNodes running a ``ClientApp`` (with :func:`~squeezefmt.federated.flower_app.squeeze_mod`).
The clients train a numpy MLP (64 -> 256 relu -> 10, 19,210 float32 weights) on IID shards of
scikit-learn's digits; the server evaluates the aggregated model on held-out digits.
:func:`run_config` returns the strategy's per-round report plus the centralised accuracy.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

HIDDEN = 256


# -- the model and data (numpy only) -----------------------------------------------------------------

def digits_split(seed: int = 0):
    """scikit-learn's digits, scaled to [0, 1]: (x_train, y_train, x_test, y_test), a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def init_model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense/kernel": (rng.normal(0, 1, (64, HIDDEN)) / 8).astype(np.float32),
            "dense/bias": np.zeros(HIDDEN, np.float32),
            "out/kernel": (rng.normal(0, 1, (HIDDEN, 10)) / 16).astype(np.float32),
            "out/bias": np.zeros(10, np.float32)}


def forward(m, x):
    h = np.maximum(x @ m["dense/kernel"] + m["dense/bias"], 0)
    return h, h @ m["out/kernel"] + m["out/bias"]


def accuracy(m, x, y) -> float:
    return float((forward(m, x)[1].argmax(1) == y).mean())


def sgd_epoch(m, x, y, lr=0.1, batch=32, seed=0):
    """One epoch of softmax cross-entropy SGD; returns the new model and the mean loss."""
    m = {k: v.copy() for k, v in m.items()}
    order = np.random.default_rng(seed).permutation(len(x))
    losses = []
    for i in range(0, len(x), batch):
        xb, yb = x[order[i:i + batch]], y[order[i:i + batch]]
        h, logits = forward(m, xb)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        losses.append(float(-np.log(p[np.arange(len(yb)), yb] + 1e-12).mean()))
        g = p
        g[np.arange(len(yb)), yb] -= 1
        g /= len(yb)
        gh = (g @ m["out/kernel"].T) * (h > 0)
        m["out/kernel"] -= lr * h.T @ g
        m["out/bias"] -= lr * g.sum(0)
        m["dense/kernel"] -= lr * xb.T @ gh
        m["dense/bias"] -= lr * gh.sum(0)
    return {k: v.astype(np.float32) for k, v in m.items()}, float(np.mean(losses))


# -- the Flower apps -------------------------------------------------------------------------------

def make_client_app(num_clients: int, squeeze: bool):
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from squeezefmt.federated.flower_app import squeeze_mod, to_arrays

    app = ClientApp(mods=[squeeze_mod] if squeeze else [])

    def shard(context):
        pid = int(context.node_config.get("partition-id", 0))
        x, y, _, _ = digits_split()
        return x[pid::num_clients], y[pid::num_clients], pid

    @app.train()
    def train(msg: Message, context):
        x, y, pid = shard(context)
        model = to_arrays(msg.content["arrays"])
        rnd = int(msg.content["config"].get("server-round", 0))
        new, loss = sgd_epoch(model, x, y, seed=1000 * rnd + pid)
        reply = RecordDict({"arrays": _record(new),
                            "metrics": MetricRecord({"train_loss": loss, "num-examples": len(x)})})
        return Message(content=reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context):
        x, y, _ = shard(context)
        model = to_arrays(msg.content["arrays"])
        reply = RecordDict({"metrics": MetricRecord({"accuracy": accuracy(model, x, y), "num-examples": len(x)})})
        return Message(content=reply, reply_to=msg)

    return app


def _record(arrays):
    from squeezefmt.federated.flower_app import from_arrays

    return from_arrays(arrays)


def make_server_app(num_clients: int, rounds: int, preset: str | None, report_path: str, uplink: str | None = None,
                    timeout: float = 300):
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    from squeezefmt.federated.flower_app import SqueezeMessageStrategy, to_arrays

    app = ServerApp()

    @app.main()
    def main(grid, context):
        _, _, x_test, y_test = digits_split()
        inner = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=num_clients,
                       min_evaluate_nodes=num_clients, min_available_nodes=num_clients)
        strategy = SqueezeMessageStrategy(inner, preset=preset, uplink=uplink)
        central = {}

        def evaluate_fn(rnd, arrays: ArrayRecord):
            central[rnd] = accuracy(to_arrays(arrays), x_test, y_test)
            return MetricRecord({"accuracy": central[rnd]})

        result = strategy.start(grid=grid, initial_arrays=_record(init_model()), num_rounds=rounds,
                                timeout=timeout, evaluate_fn=evaluate_fn)
        rows = strategy.report()
        for r in rows:
            r["accuracy"] = central.get(r["round"])
        final = to_arrays(result.arrays) if result.arrays is not None else None
        with open(report_path, "w") as f:
            json.dump({"rounds": rows, "final_accuracy": None if final is None else accuracy(final, x_test, y_test)}, f)

    return app


def _init_ray() -> None:
    """Start Ray as Flower would (our sys.path for the workers), with TensorFlow hidden in its workers.

    Flower's Ray backend keeps a Ray that is already running; the numpy ClientApps never need
    TensorFlow, which ``flwr.simulation`` would otherwise import in every actor.
    """
    import ray

    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join(p for p in sys.path if p)
    os.environ["PYTHONPATH"] = pythonpath
    # one BLAS thread per process: the model is tiny, and OpenBLAS threads spinning on an
    # oversubscribed machine stalled a run for minutes
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OPENBLAS_NUM_THREADS": "1",
                                       "OMP_NUM_THREADS": "1"},
                          "worker_process_setup_hook": "squeezefmt.federated.flower_app.hide_tensorflow"},
             include_dashboard=False, num_cpus=2, logging_level="ERROR")


def run_config(preset: str | None, *, uplink: str | None = None, clients: int = 3, rounds: int = 4,
               workdir: str | None = None, timeout: float = 300) -> dict:
    """One Flower simulation; returns the strategy's per-round report (see the module docstring).

    ``timeout``: seconds the ServerApp waits for the nodes' replies in each round (Flower's own).
    """
    from flwr.simulation import run_simulation
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    _init_ray()
    workdir = workdir or tempfile.mkdtemp(prefix="sqz_flapp_")
    report_path = os.path.join(workdir, f"report_{preset or 'baseline'}_{uplink or 'numpy'}.json")
    t0 = time.perf_counter()
    with threadpool_limits(limits=1):
        run_simulation(server_app=make_server_app(clients, rounds, preset, report_path, uplink, timeout),
                       client_app=make_client_app(clients, squeeze=preset is not None), num_supernodes=clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    if not os.path.exists(report_path):
        raise RuntimeError(f"the ServerApp of configuration {preset or 'baseline'} did not finish (no report)")
    with open(report_path) as f:
        out = json.load(f)
    out["wall_s"] = time.perf_counter() - t0
    return out
