"""Long fuzz runs: N worker processes of :func:`sqzdev.fuzzing.fuzz_random` with their own seeds,
their statistics added up and written to a JSON file every minute while the run goes on.

A worker that dies (a crash inside a C decoder: nothing Python could catch) is reported as a
``crash`` finding with the input it was running (kept by :class:`sqzdev.fuzzing.Inflight`) and
replaced by a fresh one with the next seed. A worker stuck on one input for ``hang_seconds`` of
wall-clock time (an endless loop never returns to the fuzzer's own time check) is killed and
reported the same way as a ``hang``. SIGTERM to the supervisor stops the workers and writes the
statistics so far (``"stopped": true``).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import signal
import threading
import time

from sqzdev import fuzzing


def _worker(q, index: int, seconds: float, targets, weights, seed: int, findings_dir: str | None,
            report_every: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the supervisor's handler is not the worker's

    def progress(stats):
        q.put((index, stats))

    fuzzing.fuzz_random(seconds, targets=targets, weights=weights, seed=seed, findings_dir=findings_dir,
                        progress=progress, progress_every=report_every)


def merge(parts: list[dict], targets) -> dict:
    """Statistics of several runs added up (maxima of the maxima)."""
    out = fuzzing.new_stats(targets)
    for p in parts:
        out["execs"] += p["execs"]
        out["findings"].extend(p["findings"])
        out["cpu_seconds"] += p["cpu_seconds"]
        out["max_seconds"] = max(out["max_seconds"], p["max_seconds"])
        out["max_extra_mib"] = max(out["max_extra_mib"], p["max_extra_mib"])
        out["max_cpu_seconds"] = max(out["max_cpu_seconds"], p["max_cpu_seconds"])
        for t, n in p["by_target"].items():
            out["by_target"][t] = out["by_target"].get(t, 0) + n
            top = out["max_by_target"].setdefault(t, {"seconds": 0.0, "cpu_seconds": 0.0, "extra_mib": 0.0})
            for k in ("seconds", "cpu_seconds", "extra_mib"):
                top[k] = max(top[k], p["max_by_target"][t][k])
    return out


def _crash_finding(findings_dir: str | None, pid: int, exitcode, kind: str = "crash") -> dict:
    """The input a dead worker was running, saved as a finding."""
    detail = f"worker exit code {exitcode}" if kind == "crash" else "killed: one input ran too long"
    finding = {"target": "?", "kind": kind, "path": None, "detail": detail}
    path = os.path.join(findings_dir, f".inflight-{pid}") if findings_dir else None
    if path and os.path.exists(path):
        with open(path, "rb") as fh:
            target, _, data = fh.read().partition(b"\n")
        finding["target"] = target.decode(errors="replace")
        finding["path"] = fuzzing.save_finding(findings_dir, finding["target"], data,
                                               {"kind": kind, "detail": finding["detail"]})
        os.unlink(path)
    return finding


def _stuck(findings_dir: str | None, pid: int, seconds: float) -> bool:
    """Whether worker ``pid`` has been on one input for ``seconds`` (its in-flight file is rewritten
    before every input)."""
    if not findings_dir:
        return False
    try:
        return time.time() - os.stat(os.path.join(findings_dir, f".inflight-{pid}")).st_mtime > seconds
    except OSError:
        return False


def write_json(path: str, stats: dict) -> None:
    """Replace ``path`` atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(stats, fh, indent=1)
    os.replace(tmp, path)


class _Pool:
    """The supervisor's state: live workers by incarnation (worker i has seed ``seed + i``), the last
    statistics each reported, and the findings only the supervisor sees (crashes and hangs)."""

    def __init__(self, seconds, processes, targets, weights, seed, findings_dir, json_path, write_every,
                 hang_seconds, log):
        self.seconds, self.processes, self.targets, self.weights = seconds, processes, tuple(targets), weights
        self.seed, self.findings_dir, self.json_path, self.log = seed, findings_dir, json_path, log
        self.write_every, self.hang_seconds = write_every, hang_seconds
        self.ctx = mp.get_context("fork")
        self.q = self.ctx.Queue()
        self.t0 = time.monotonic()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.latest: dict[int, dict] = {}
        self.crashes: list[dict] = []
        self.workers: dict[int, mp.Process] = {}
        self.ended: list[int] = []
        self.hung: set[int] = set()
        self.stop: list[int] = []

    def spawn(self) -> None:
        index = len(self.workers) + len(self.ended)
        left = self.seconds - (time.monotonic() - self.t0)
        p = self.ctx.Process(target=_worker, args=(self.q, index, left, self.targets, self.weights, self.seed + index,
                                                   self.findings_dir, min(10.0, self.write_every)), daemon=True)
        p.start()
        self.workers[index] = p

    def report(self, final: bool = False) -> dict:
        stats = merge(list(self.latest.values()), self.targets)
        stats["findings"].extend(self.crashes)
        wall = time.monotonic() - self.t0
        stats.update(started=self.started, seed=self.seed, processes=self.processes, wall_seconds=wall,
                     finished=final, stopped=bool(self.stop), execs_per_second=stats["execs"] / max(1e-9, wall))
        if self.json_path:
            write_json(self.json_path, stats)
        return stats

    def collect(self, timeout: float) -> None:
        """Take the workers' reports (waiting up to ``timeout`` for the first), logging new findings."""
        while True:
            try:
                index, snap = self.q.get(timeout=timeout) if timeout else self.q.get_nowait()
            except queue.Empty:
                return
            timeout = 0
            known = {f["path"] for f in self.latest.get(index, {}).get("findings", [])}
            for f in snap["findings"]:
                if f["path"] not in known and self.log:
                    self.log(f"FINDING {f['target']} {f['kind']} {f['path']}\n{f['detail'][-1500:]}")
            self.latest[index] = snap

    def reap(self) -> None:
        """Kill stuck workers; record the dead ones' inputs and replace them while time is left."""
        for index, p in list(self.workers.items()):
            if p.is_alive():
                if _stuck(self.findings_dir, p.pid, self.hang_seconds):
                    self.hung.add(p.pid)
                    p.kill()
                continue
            p.join()
            del self.workers[index]
            self.ended.append(index)
            if p.exitcode != 0:
                kind = "hang" if p.pid in self.hung else "crash"
                crash = _crash_finding(self.findings_dir, p.pid, p.exitcode, kind)
                self.crashes.append(crash)
                if self.log:
                    self.log(f"FINDING {crash['target']} {kind} {crash['path']} (exit code {p.exitcode})")
                if self.seconds - (time.monotonic() - self.t0) > 1:
                    self.spawn()  # the dead worker's last report stays in ``latest``

    def halt(self) -> None:
        """Stop every worker now (SIGTERM to the supervisor): their in-flight inputs are no findings."""
        for p in self.workers.values():
            p.kill()
            p.join()
            inflight = os.path.join(self.findings_dir, f".inflight-{p.pid}") if self.findings_dir else None
            if inflight and os.path.exists(inflight):
                os.unlink(inflight)
        self.workers.clear()


def run_pool(seconds: float, *, processes: int = 1, targets=("container", "federated", "h5"), weights=None,
             seed: int = 0, findings_dir: str | None = None, json_path: str | None = None,
             write_every: float = 60.0, hang_seconds: float = 300.0, log=print) -> dict:
    """Fuzz with ``processes`` workers (seeds ``seed``, ``seed + 1``, ...) for ``seconds``; returns the
    merged statistics, also written to ``json_path`` every ``write_every`` seconds and at the end."""
    pool = _Pool(seconds, processes, targets, weights, seed, findings_dir, json_path, write_every, hang_seconds, log)
    main = threading.current_thread() is threading.main_thread()
    if main:
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: pool.stop.append(signum))
    try:
        for _ in range(processes):
            pool.spawn()
        next_write = pool.t0 + write_every
        while pool.workers:
            if pool.stop:
                pool.halt()
                break
            pool.collect(timeout=1.0)
            pool.reap()
            if time.monotonic() >= next_write:
                next_write += write_every
                pool.report()
        pool.collect(timeout=0)  # the final reports of the workers that ended normally
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return pool.report(final=True)
