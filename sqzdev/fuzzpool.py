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


def run_pool(seconds: float, *, processes: int = 1, targets=("container", "federated", "h5"), weights=None,
             seed: int = 0, findings_dir: str | None = None, json_path: str | None = None,
             write_every: float = 60.0, hang_seconds: float = 300.0, log=print) -> dict:
    """Fuzz with ``processes`` workers (seeds ``seed``, ``seed + 1``, ...) for ``seconds``; returns the
    merged statistics, also written to ``json_path`` every ``write_every`` seconds and at the end."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    latest: dict[int, dict] = {}
    crashes: list[dict] = []
    workers: dict[int, mp.Process] = {}  # by incarnation: worker i has seed ``seed + i``

    def spawn() -> None:
        index = len(workers) + len(ended)
        left = seconds - (time.monotonic() - t0)
        p = ctx.Process(target=_worker, args=(q, index, left, tuple(targets), weights, seed + index, findings_dir,
                                              min(10.0, write_every)), daemon=True)
        p.start()
        workers[index] = p

    ended: list[int] = []
    hung: set[int] = set()
    stop: list[int] = []
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    for _ in range(processes):
        spawn()

    def report(final: bool = False) -> dict:
        stats = merge(list(latest.values()), targets)
        stats["findings"].extend(crashes)
        stats.update(started=started, seed=seed, processes=processes, wall_seconds=time.monotonic() - t0,
                     finished=final, stopped=bool(stop),
                     execs_per_second=stats["execs"] / max(1e-9, time.monotonic() - t0))
        if json_path:
            write_json(json_path, stats)
        return stats

    next_write = t0 + write_every
    while workers:
        if stop:
            for p in workers.values():
                p.kill()
                p.join()
                if findings_dir and os.path.exists(os.path.join(findings_dir, f".inflight-{p.pid}")):
                    os.unlink(os.path.join(findings_dir, f".inflight-{p.pid}"))
            workers.clear()
            break
        try:
            index, snap = q.get(timeout=1.0)
            known = {f["path"] for f in latest.get(index, {}).get("findings", [])}
            for f in snap["findings"]:
                if f["path"] not in known and log:
                    log(f"FINDING {f['target']} {f['kind']} {f['path']}\n{f['detail'][-1500:]}")
            latest[index] = snap
        except queue.Empty:
            pass
        for index, p in list(workers.items()):
            if p.is_alive():
                if _stuck(findings_dir, p.pid, hang_seconds):
                    hung.add(p.pid)
                    p.kill()
                continue
            p.join()
            del workers[index]
            ended.append(index)
            if p.exitcode != 0:
                kind = "hang" if p.pid in hung else "crash"
                crash = _crash_finding(findings_dir, p.pid, p.exitcode, kind)
                crashes.append(crash)
                if log:
                    log(f"FINDING {crash['target']} {kind} {crash['path']} (exit code {p.exitcode})")
                if seconds - (time.monotonic() - t0) > 1:
                    spawn()  # its last report stays in ``latest``
        if time.monotonic() >= next_write:
            next_write += write_every
            report()
    while True:  # the final reports of the workers that ended normally
        try:
            index, snap = q.get_nowait()
            latest[index] = snap
        except queue.Empty:
            break
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
    return report(final=True)
