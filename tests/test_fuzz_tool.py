"""The fuzzer (tools/fuzz.py): a short run in the suite, the saved findings replayed, and the tool's
own checks (structure-aware mutation, memory and exception classification) shown to work.

``SQUEEZEFMT_FUZZ_SECONDS`` sets the length of the short run (default 60; 0 skips it) and
``SQUEEZEFMT_FUZZ_SEED`` its seed (default: a fixed one, so a failure reproduces).
"""
from __future__ import annotations

import importlib.util
import json
import mmap
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import squeezefmt
from sqzdev import fuzzing as fuzz
from squeezefmt import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz_corpus")


def test_saved_findings_replay_clean():
    """Every minimised finding (and hand-made reproducer) is now rejected cleanly, within time and memory."""
    counts = {t: len(os.listdir(os.path.join(CORPUS, t))) for t in ("container", "federated", "h5")}
    assert all(counts.values()), counts
    assert fuzz.replay([CORPUS]) == []


def test_short_fuzz_run_finds_nothing(tmp_path):
    seconds = float(os.environ.get("SQUEEZEFMT_FUZZ_SECONDS", "60"))
    if seconds <= 0:
        pytest.skip("SQUEEZEFMT_FUZZ_SECONDS=0")
    seed = int(os.environ.get("SQUEEZEFMT_FUZZ_SEED", "13"))
    stats = fuzz.fuzz_random(seconds, seed=seed, findings_dir=str(tmp_path))
    assert stats["execs"] > 0 and all(stats["by_target"].values()), stats
    assert stats["findings"] == [], stats["findings"][:3]


def test_mutator_keeps_checksums_valid():
    """Structure-aware: most mutants get past every checksum, so the codecs see them."""
    rng = random.Random(1)
    seeds = [d for _, d in fuzz.seed_files("container") if fuzz.split_container(d)]
    mut = fuzz.Mutator(rng, seeds)
    past_crc = 0
    for _ in range(300):
        try:
            with squeezefmt.open(mut.mutate(rng.choice(seeds))) as f:
                f.verify()
            past_crc += 1
        except errors.ChecksumError:
            pass
        except errors.SqueezeError:
            past_crc += 1
    assert past_crc > 240


def test_run_one_classifies_exceptions_memory_and_catch_all(monkeypatch):
    def internal(_data):
        raise KeyError("oops")

    def hog(_data):
        block = bytearray(96 << 20)
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
        return 0

    def catch_all(_data):
        try:
            raise IndexError("inside a codec")
        except IndexError as exc:
            raise errors.FormatError("codec failed on corrupt data") from exc

    monkeypatch.setitem(fuzz.TARGETS, "internal", internal)
    monkeypatch.setitem(fuzz.TARGETS, "hog", hog)
    monkeypatch.setitem(fuzz.TARGETS, "catchall", catch_all)
    assert fuzz.run_one("internal", b"x")["kind"] == "KeyError"
    assert fuzz.run_one("catchall", b"x")["kind"] == "catch-all"
    if fuzz.reset_peak():
        assert fuzz.run_one("hog", b"x")["kind"] == "memory"
    assert fuzz.run_one("container", b"not a container")["ok"]


def test_every_single_bit_flip_is_detected_by_verify():
    """Each byte of a container with one bit flipped (bit = position mod 8): verify rejects 100 %."""
    rng = np.random.default_rng(3)
    blob = squeezefmt.save({"w": rng.normal(size=(20, 6)).astype(np.float32),
                            "i": rng.integers(0, 5, 40, dtype=np.int16), "b": np.array([True, False])},
                           metadata={"k": "v"})
    missed = []
    for pos in range(len(blob)):
        broken = bytearray(blob)
        broken[pos] ^= 1 << (pos % 8)
        try:
            with squeezefmt.open(bytes(broken)) as f:
                f.verify()
            missed.append(pos)
        except errors.SqueezeError:
            pass
    assert missed == [], missed


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_driver_runs(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fuzz.py"), "atheris", "--target", "container",
                        "--seed-dir", str(tmp_path / "corpus"), "--", str(tmp_path / "corpus"), "-runs=300",
                        "-timeout=10"], capture_output=True, text=True, timeout=1800,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + sys.path)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 300 runs" in r.stderr


# -- the fast harness: kept /proc descriptors, lazily learnt declared sizes, worker processes ---------

def _touch(mib: int) -> mmap.mmap:
    """``mib`` MiB of fresh, touched pages, unmapped when the object goes (an anonymous mapping of its
    own: heap memory may reuse pages that are already resident, so RSS would not move)."""
    block = mmap.mmap(-1, mib << 20)
    for offset in range(0, mib << 20, 4096):
        block[offset] = 1
    return block


def _hog(_data):
    _touch(100)
    return 0


def test_probe_reads_the_same_values_as_proc_status():
    from sqzdev.procmem import Probe, proc_status

    probe = Probe()
    if not probe.reset_peak():
        pytest.skip("no /proc/self/clear_refs")
    keep = _touch(40)
    assert abs(probe.rss() - proc_status("VmRSS")) < 4 << 20
    assert probe.peak() == proc_status("VmHWM") and probe.peak() >= probe.rss()
    keep.close()
    assert probe.rss() < probe.peak() - (30 << 20)  # the descriptors re-read fresh values


def test_memory_finding_is_flagged_after_the_rss_fell_below_an_earlier_peak(monkeypatch):
    """A 100 MiB hog is a finding even right after a large block was freed (RSS far below the peak)."""
    if not fuzz.reset_peak():
        pytest.skip("no /proc/self/clear_refs")
    monkeypatch.setitem(fuzz.TARGETS, "hog", _hog)
    monkeypatch.setitem(fuzz.TARGETS, "quiet", lambda _data: 0)
    for _ in range(2):
        block = _touch(150)
        del block
        assert fuzz.run_one("quiet", b"x")["ok"]
        result = fuzz.run_one("hog", b"x")
        assert result["kind"] == "memory" and result["extra_mib"] > 90, result


def test_driver_reports_a_memory_finding(monkeypatch, tmp_path):
    if not fuzz.reset_peak():
        pytest.skip("no /proc/self/clear_refs")
    monkeypatch.setitem(fuzz.TARGETS, "hog", _hog)
    stats = fuzz.fuzz_random(60, targets=("hog",), seed=1, findings_dir=str(tmp_path), max_execs=3)
    assert stats["execs"] == 3 and [f["kind"] for f in stats["findings"]] == ["memory"] * 3
    assert os.path.exists(stats["findings"][0]["path"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".inflight")]


def test_declared_size_learnt_after_the_run_excuses_an_honest_decode(monkeypatch):
    """A target that does not return its declared size (the federated one) has it looked up when
    its peak grew: 100 MiB for a container declaring 100 MiB is no finding, for garbage it is."""
    if not fuzz.reset_peak():
        pytest.skip("no /proc/self/clear_refs")
    from squeezefmt.codecs.zstd_codec import Zstd
    from squeezefmt.container.limits import DEFAULT_LIMITS

    bomb = squeezefmt.save({"z": np.zeros(100 << 18, np.float32)}, None, codecs={"z": Zstd(level=3)})
    assert len(bomb) < fuzz.SMALL_INPUT

    def silent_hog(_data):
        _touch(100)

    monkeypatch.setitem(fuzz.TARGETS, "silent", silent_hog)
    assert fuzz.run_one("silent", bomb, limits=DEFAULT_LIMITS)["ok"]
    assert fuzz.run_one("silent", b"garbage", limits=DEFAULT_LIMITS)["kind"] == "memory"


def test_pool_workers_measure_their_own_memory_and_write_json(monkeypatch, tmp_path):
    """Worker processes (forked) reopen their own /proc descriptors: the hog is seen there too; the
    statistics JSON is written while the run goes on and at its end."""
    if not fuzz.reset_peak():
        pytest.skip("no /proc/self/clear_refs")
    from sqzdev.fuzzpool import run_pool

    fuzz._PROBE.rss()  # the parent's descriptors are open before the fork
    monkeypatch.setitem(fuzz.TARGETS, "hog", _hog)
    out = tmp_path / "stats.json"
    stats = run_pool(3, processes=2, targets=("hog", "container"), weights=[1, 20], seed=5,
                     findings_dir=str(tmp_path / "f"), json_path=str(out), write_every=1, log=None)
    on_disk = json.loads(out.read_text())
    assert on_disk["finished"] and on_disk["execs"] == stats["execs"] > 0
    assert stats["processes"] == 2 and stats["by_target"]["hog"] > 0
    assert {f["kind"] for f in stats["findings"]} == {"memory"}
    assert len(stats["findings"]) == stats["by_target"]["hog"]


def test_pool_reports_a_dead_worker_as_a_crash_with_its_input(monkeypatch, tmp_path):
    from sqzdev.fuzzpool import run_pool

    def die(data):
        os._exit(3)

    monkeypatch.setitem(fuzz.TARGETS, "die", die)
    stats = run_pool(2, processes=1, targets=("die",), seed=1, findings_dir=str(tmp_path), log=None)
    crashes = [f for f in stats["findings"] if f["kind"] == "crash"]
    assert crashes and crashes[0]["target"] == "die" and "exit code 3" in crashes[0]["detail"]
    assert os.path.getsize(crashes[0]["path"]) > 0


def test_forge_keeps_the_frozen_vectors_and_mutants_open_at_a_fast_level():
    """The header level is the forger's business: level 19 still gives the frozen broken vectors byte
    for byte, and mutants forged at FORGE_LEVEL parse the same header."""
    from sqzdev import VECTORS
    from sqzdev.vectors.core import broken_cases, forge, split

    base = open(os.path.join(VECTORS, "valid", "v1_zstd.sqz"), "rb").read()
    for name, data in broken_cases(base):
        with open(os.path.join(VECTORS, "broken", name + ".sqz"), "rb") as fh:
            assert fh.read() == data, name
    header, streams = split(base)
    fast = forge(header, streams, level=fuzz.FORGE_LEVEL)
    assert fast != base and split(fast)[0] == split(base)[0]
    with squeezefmt.open(fast) as f, squeezefmt.open(base) as g:
        f.verify()
        assert all(np.array_equal(f.tensor(n), g.tensor(n)) for n in g.keys())


def test_timeout_is_cpu_time_not_a_starved_scheduler(monkeypatch):
    """A run that computes for over a second is a timeout; one that only waits (as a niced fuzzer on a
    busy machine does) is not, until it waits ten times as long."""
    import time

    def spin(_data):
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass

    monkeypatch.setitem(fuzz.TARGETS, "spin", spin)
    monkeypatch.setitem(fuzz.TARGETS, "wait", lambda _data: time.sleep(0.3))
    assert fuzz.run_one("spin", b"x", timeout=0.2)["kind"] == "timeout"
    assert fuzz.run_one("wait", b"x", timeout=0.2)["ok"]
    assert fuzz.run_one("wait", b"x", timeout=0.02)["kind"] == "timeout"


def test_pool_kills_a_worker_stuck_on_one_input(monkeypatch, tmp_path):
    from sqzdev.fuzzpool import run_pool

    def endless(_data):
        while True:
            pass

    monkeypatch.setitem(fuzz.TARGETS, "endless", endless)
    stats = run_pool(4, processes=1, targets=("endless",), seed=1, findings_dir=str(tmp_path), hang_seconds=1.5,
                     log=None)
    hangs = [f for f in stats["findings"] if f["kind"] == "hang"]
    assert hangs and hangs[0]["target"] == "endless" and os.path.exists(hangs[0]["path"])


def test_sigterm_stops_a_long_run_and_writes_its_statistics(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "fuzz.py"), "run", "--seconds", "600",
                             "--processes", "2", "--target", "container", "--findings", str(tmp_path / "f"),
                             "--json", str(out), "--write-every", "1"], env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.monotonic() + 300
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=120)
    stats = json.loads(out.read_text())
    assert stats["stopped"] and stats["finished"] and stats["execs"] > 0, stderr[-2000:]
    assert stats["findings"] == [] and proc.returncode == 0, stdout[-2000:]
    assert not [p for p in os.listdir(tmp_path / "f") if p.startswith(".inflight")]
