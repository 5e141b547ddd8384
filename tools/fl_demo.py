#!/usr/bin/env python3
"""A real federated run over Flower on loopback: Flower's numpy serialization vs squeezefmt payloads.

For every configuration a Flower server (``flwr.server.start_server``, gRPC on 127.0.0.1) and N
clients (``flwr.client.start_client``) run as separate processes. The clients train a small Keras
classifier (Flatten -> Dense(128, relu) -> Dense(10), 101,770 float32 weights) on IID shards of
Fashion-MNIST (or scikit-learn's digits with ``--dataset digits``) for R rounds of FedAvg; the server
evaluates on the test set the model the clients reconstruct. Configurations::

    baseline          Flower's own numpy serialization (np.save per tensor), no squeezefmt
    lossless          squeezefmt full payload each round, byte-grouped zstd (exact)
    lossless-delta    XOR delta against the previous round, byte-grouped zstd (exact)
    lossy             full payload each round, 8-bit quantization
    lossy-delta       cabac codec (RDO quantization, arithmetic coded): first round at 1 RMS, then
                      deltas at 2 RMS of each delta; the server feeds what a payload left out into the
                      next one (FedAvg builds each model on what the clients hold)
    lossy-delta+up    lossy-delta, and client updates sent back as lossy-delta deltas too
    lossy-delta-quant 8-bit first round, then 4-bit quantized deltas (lossy-delta before cabac)
    lossy-delta-3     4-bit first round, then 3-bit quantized deltas with error feedback
    lossy-delta-nocarry  lossy-delta without the server's residual: what a payload leaves out is lost

Measured from the strategy wrapper: downlink and uplink bytes per round (the bytes of
``Parameters.tensors`` that Flower's gRPC carries), server encode time, client decode/encode time
(reported by the clients), centralised accuracy per round. Output: a Markdown table on stdout,
``<out>/fl_demo.json``, ``<out>/fl_demo.md`` and ``<out>/fl_demo.png`` (accuracy vs cumulative
downlink bytes); each process's log and the server's raw report are in ``<out>/runs/`` (git-ignored).

    .venv/bin/pip install -e ".[keras,flower,tools]"
    .venv/bin/python tools/fl_demo.py                         # full run: Fashion-MNIST, 4 clients, 10 rounds
    .venv/bin/python tools/fl_demo.py --quick                 # the CI version: digits, 2 clients, 3 rounds

The full run needs the Debian package ``dataset-fashion-mnist`` (``python tools/datasets.py
--print-install`` prints the line; nothing here installs it). Every process is bounded: rounds are fixed, Flower's round timeout is set, and
the orchestrator kills its own children if a configuration exceeds ``--timeout`` seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

#: configuration name -> (downlink preset or None for Flower's numpy, uplink preset or None)
CONFIGS = {
    "baseline": (None, None),
    "lossless": ("lossless", None),
    "lossless-delta": ("lossless-delta", None),
    "lossy": ("lossy", None),
    "lossy-delta": ("lossy-delta", None),
    "lossy-delta-3": ("lossy-delta-3", None),
    "lossy-delta+up": ("lossy-delta", "lossy-delta"),
    "lossy-delta-quant": ("lossy-delta-quant", None),
    "lossy-delta-ac": ("lossy-delta-ac", None),
    "lossy-delta-nocarry": ("lossy-delta", None),
}
DEFAULT_CONFIGS = "baseline,lossless,lossless-delta,lossy,lossy-delta,lossy-delta-quant,lossy-delta-3,lossy-delta+up"
QUICK_CONFIGS = "baseline,lossy-delta+up"
SEED = 1234


def _quiet_env() -> dict:
    env = dict(os.environ)
    env.update({"FLWR_TELEMETRY_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0",
                "TF_ENABLE_ONEDNN_OPTS": "0", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    return env


# -- data and model (only the server and client processes import TensorFlow) ----------------------------

def load_data(name: str):
    import numpy as np
    from sqzdev import datasets  # noqa: E402

    (x_tr, y_tr), (x_te, y_te) = datasets.load(name)
    return ((x_tr.astype(np.float32) / 255.0, y_tr.astype(np.int64)),
            (x_te.astype(np.float32) / 255.0, y_te.astype(np.int64)))


def partition(n_items: int, cid: int, clients: int):
    import numpy as np

    order = np.random.default_rng(SEED).permutation(n_items)
    return np.array_split(order, clients)[cid]


def tf_setup():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    return tf


def build_model(tf):
    model = tf.keras.Sequential([
        tf.keras.layers.Input((28, 28)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


# -- server process ---------------------------------------------------------------------------------------

def run_server(args) -> int:
    tf = tf_setup()
    import flwr as fl
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import FedAvg

    from squeezefmt.federated.flower import SqueezeStrategy

    _, (x_te, y_te) = load_data(args.dataset)
    model = build_model(tf)
    initial = model.get_weights()

    def evaluate_fn(server_round, arrays, config):
        model.set_weights(arrays)
        loss, acc = model.evaluate(x_te, y_te, batch_size=1000, verbose=0)
        print(f"[server] round {server_round}: accuracy {acc:.4f}", flush=True)
        return float(loss), {"accuracy": float(acc)}

    class OrderedFedAvg(FedAvg):
        """FedAvg summing client results in partition order, so runs are reproducible bit for bit."""

        def aggregate_fit(self, server_round, results, failures):
            results = sorted(results, key=lambda r: int(r[1].metrics.get("partition", 0)))
            return super().aggregate_fit(server_round, results, failures)

    inner = OrderedFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=args.clients,
                          min_available_clients=args.clients, initial_parameters=ndarrays_to_parameters(initial),
                          evaluate_fn=evaluate_fn, fit_metrics_aggregation_fn=lambda m: {})
    preset, uplink = CONFIGS[args.config]
    lossy = bool(preset and preset.startswith("lossy"))
    strategy = SqueezeStrategy(inner, preset=preset, uplink=uplink, bits=args.bits if lossy else None,
                               delta_bits=args.delta_bits if lossy and "delta" in preset else None,
                               carry_residual=False if args.config.endswith("-nocarry") else None)
    t0 = time.perf_counter()
    fl.server.start_server(server_address=f"127.0.0.1:{args.port}", strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=args.rounds, round_timeout=args.round_timeout))
    wall = time.perf_counter() - t0
    rounds = strategy.report()
    raw = sum(a.nbytes for a in initial)
    Path(args.report).write_text(json.dumps({
        "config": args.config, "preset": preset, "uplink": uplink, "dataset": args.dataset, "clients": args.clients,
        "rounds": args.rounds, "model_params": int(sum(a.size for a in initial)), "model_bytes": raw,
        "wall_s": wall, "per_round": rounds,
    }, indent=1, default=float))
    return 0


# -- client process ---------------------------------------------------------------------------------------

def run_client(args) -> int:
    tf = tf_setup()
    import flwr as fl
    import numpy as np

    from squeezefmt.federated.flower import SqueezeClient

    (x_tr, y_tr), _ = load_data(args.dataset)
    idx = partition(len(x_tr), args.cid, args.clients)
    x, y = x_tr[idx], y_tr[idx]
    model = build_model(tf)

    class KerasClient(fl.client.NumPyClient):
        rounds = 0

        def get_parameters(self, config):
            return model.get_weights()

        def fit(self, parameters, config):
            model.set_weights(parameters)
            KerasClient.rounds += 1
            tf.keras.utils.set_random_seed(SEED + 1000 * args.cid + KerasClient.rounds)
            model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, shuffle=True)
            return model.get_weights(), len(x), {"partition": args.cid}

        def evaluate(self, parameters, config):
            model.set_weights(parameters)
            loss, acc = model.evaluate(x, y, batch_size=1000, verbose=0)
            return float(loss), len(x), {"accuracy": float(acc)}

    # SqueezeClient passes Flower's numpy Parameters through untouched (baseline) and decodes
    # squeezefmt payloads otherwise; either way it reports decode/encode times to the server.
    fl.client.start_client(server_address=f"127.0.0.1:{args.port}", client=SqueezeClient(KerasClient()),
                           max_retries=20, max_wait_time=60.0)
    del np
    return 0


# -- orchestration ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def stop(procs) -> None:
    """End our own children (each in its own process group), politely first."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def run_config(name: str, args, out: Path) -> dict:
    port = free_port()
    out = out / "runs"  # per-configuration server report and process logs
    out.mkdir(parents=True, exist_ok=True)
    report = out / f"fl_{name}.json"
    if report.exists():
        report.unlink()
    common = ["--port", str(port), "--clients", str(args.clients), "--dataset", args.dataset,
              "--rounds", str(args.rounds), "--epochs", str(args.epochs)]
    me = [sys.executable, str(Path(__file__).resolve())]
    logs = []
    procs = []
    env = _quiet_env()

    def spawn(argv, tag):
        log = open(out / f"fl_{name}_{tag}.log", "w")
        logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                             start_new_session=True)
        procs.append(p)
        return p

    t0 = time.perf_counter()
    try:
        bits = (["--bits", str(args.bits)] if args.bits else []) + (
            ["--delta-bits", str(args.delta_bits)] if args.delta_bits else [])
        server = spawn(me + ["server", "--config", name, "--report", str(report),
                             "--round-timeout", str(args.round_timeout)] + bits + common, "server")
        # Flower's legacy gRPC client does not retry a refused connection: start clients once it listens
        wait_port(port, server, timeout=min(180.0, args.timeout))
        for cid in range(args.clients):
            spawn(me + ["client", "--cid", str(cid)] + common, f"client{cid}")
        while server.poll() is None:
            if time.perf_counter() - t0 > args.timeout:
                raise RuntimeError(f"configuration {name!r} exceeded --timeout {args.timeout} s")
            dead = [i for i, p in enumerate(procs[1:]) if p.poll() not in (None, 0)]
            if dead:  # the server would wait for it forever
                raise RuntimeError(f"configuration {name!r}: client {dead[0]} exited with code "
                                   f"{procs[1 + dead[0]].returncode}; see {out / f'fl_{name}_client{dead[0]}.log'}")
            time.sleep(0.25)
        for p in procs[1:]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # a client that does not notice the end is stopped below
        if server.returncode != 0 or not report.exists():
            raise RuntimeError(f"configuration {name!r}: server exited with code {server.returncode}; "
                               f"see {out / f'fl_{name}_server.log'}")
    finally:
        stop(procs)
        for log in logs:
            log.close()
    result = json.loads(report.read_text())
    result["orchestrated_s"] = time.perf_counter() - t0
    return result


def summarise(results: dict) -> tuple[list[dict], str]:
    base = results.get("baseline")
    rows = []
    for name, r in results.items():
        rounds = [x for x in r["per_round"] if 1 <= x["round"] <= r["rounds"]]
        acc = {x["round"]: x.get("centralized", {}).get("accuracy") for x in r["per_round"]}
        down = [x["down_bytes"] for x in rounds]
        up = [x["up_bytes"] for x in rounds]
        row = {
            "config": name, "down_per_round": sum(down) / len(down), "down_total": sum(down),
            "up_total": sum(up), "final_accuracy": acc.get(r["rounds"]),
            "encode_ms": 1000 * sum(x["encode_s"] for x in r["per_round"]) / max(1, len(r["per_round"])),
            "client_decode_ms": 1000 * sum(x["client_decode_s"] for x in rounds) / len(rounds),
            "client_encode_ms": 1000 * sum(x["client_encode_s"] for x in rounds) / len(rounds),
            "server_decode_ms": 1000 * sum(x["server_decode_s"] for x in rounds) / len(rounds),
            "down_by_round": down, "up_by_round": up, "accuracy_by_round": [acc.get(i) for i in range(r["rounds"] + 1)],
            "kinds_by_round": [x["kinds"] for x in rounds], "wall_s": r["wall_s"],
        }
        rows.append(row)
    if base is not None:
        b = next(x for x in rows if x["config"] == "baseline")
        for row in rows:
            row["down_ratio"] = b["down_total"] / row["down_total"]
            row["up_ratio"] = b["up_total"] / row["up_total"]
            row["total_ratio"] = (b["down_total"] + b["up_total"]) / (row["down_total"] + row["up_total"])
            row["accuracy_delta"] = row["final_accuracy"] - b["final_accuracy"]
    first = next(iter(results.values()))
    lines = [
        f"Federated run: {first['dataset']}, {first['clients']} clients, {first['rounds']} rounds, "
        f"{first['model_params']:,} float32 weights ({first['model_bytes']:,} B) per model; bytes = Parameters.tensors "
        "on Flower's gRPC (fit messages: every client, every round).",
        "",
        "| config | downlink B/round | downlink total | down ratio | uplink total | up ratio | final acc | Δacc vs baseline "
        "| server encode ms/round | client decode ms | client encode ms | server uplink decode ms/round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['down_per_round']:,.0f} | {row['down_total']:,} | {row.get('down_ratio', 1):.2f}x "
            f"| {row['up_total']:,} | {row.get('up_ratio', 1):.2f}x | {100 * row['final_accuracy']:.2f} % "
            f"| {100 * row.get('accuracy_delta', 0):+.2f} pp | {row['encode_ms']:.1f} | {row['client_decode_ms']:.1f} "
            f"| {row['client_encode_ms']:.1f} | {row['server_decode_ms']:.1f} |")
    lines.append("")
    lines.append("Downlink bytes per round (all fit messages of the round):")
    lines.append("")
    n = len(rows[0]["down_by_round"])
    lines.append("| config | " + " | ".join(f"r{i + 1}" for i in range(n)) + " |")
    lines.append("|---|" + "---:|" * n)
    for row in rows:
        lines.append(f"| {row['config']} | " + " | ".join(f"{v:,}" for v in row["down_by_round"]) + " |")
    return rows, "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[tools]'): no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        acc = row["accuracy_by_round"]
        for ax, series in ((axes[0], row["down_by_round"]),
                           (axes[1], [d + u for d, u in zip(row["down_by_round"], row["up_by_round"])])):
            cum, xs = 0, []
            for v in series:
                cum += v
                xs.append(cum)
            ax.plot(xs, [100 * a for a in acc[1:]], marker="o", ms=3, label=row["config"])
    axes[0].set_xlabel("cumulative downlink bytes")
    axes[1].set_xlabel("cumulative downlink + uplink bytes")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def orchestrate(args) -> int:
    from sqzdev import datasets  # noqa: E402

    if args.quick:
        args.dataset, args.clients, args.rounds = "digits", 2, 3
        args.configs = args.configs or QUICK_CONFIGS
    args.configs = args.configs or DEFAULT_CONFIGS
    if not datasets.is_available(args.dataset):
        print(f"data set {args.dataset!r} is not installed; install it with: "
              f"{datasets.INSTALL_COMMANDS[args.dataset.replace('-', '_')]}", file=sys.stderr)
        return 2
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        print(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        print(f"== {name}: 1 server + {args.clients} clients on 127.0.0.1, {args.rounds} rounds", flush=True)
        results[name] = run_config(name, args, out)
        acc = results[name]["per_round"][-1].get("centralized", {}).get("accuracy")
        print(f"   done in {results[name]['orchestrated_s']:.1f} s, final accuracy {acc}", flush=True)
    rows, table = summarise(results)
    print()
    print(table)
    (out / "fl_demo.json").write_text(json.dumps({"args": vars(args), "summary": rows, "runs": results}, indent=1,
                                                 default=float))
    title = f"{args.dataset}: {args.clients} clients, {args.rounds} rounds (Flower {flwr_version()})"
    if plot(rows, out / "fl_demo.png", title):
        print(f"\nplot: {out / 'fl_demo.png'}")
    (out / "fl_demo.md").write_text(table + "\n")
    print(f"results: {out / 'fl_demo.json'}, {out / 'fl_demo.md'}")
    return 0


def flwr_version() -> str:
    try:
        from importlib.metadata import version
        return version("flwr")
    except Exception:  # noqa: BLE001
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role", nargs="?", default="run", choices=["run", "server", "client"])
    ap.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits", "mnist"])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    ap.add_argument("--configs", default=None, help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--bits", type=int, default=None, help="override: quantization bits of full lossy payloads")
    ap.add_argument("--delta-bits", type=int, default=None, help="override: quantization bits of lossy deltas")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "fl"))
    ap.add_argument("--quick", action="store_true", help="the CI version: digits, 2 clients, 3 rounds")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration before giving up")
    ap.add_argument("--round-timeout", type=float, default=600.0, help="Flower's per-round timeout")
    # process roles
    ap.add_argument("--port", type=int)
    ap.add_argument("--config")
    ap.add_argument("--report")
    ap.add_argument("--cid", type=int)
    args = ap.parse_args(argv)
    if args.role == "server":
        return run_server(args)
    if args.role == "client":
        return run_client(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
