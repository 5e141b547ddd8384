"""The fuzzer (tools/fuzz.py): a short run in the suite, the saved findings replayed, and the tool's
own checks (structure-aware mutation, memory and exception classification) shown to work.

``SQUEEZEFMT_FUZZ_SECONDS`` sets the length of the short run (default 60; 0 skips it) and
``SQUEEZEFMT_FUZZ_SEED`` its seed (default: a fixed one, so a failure reproduces).
"""
from __future__ import annotations

import importlib.util
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
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done 300 runs" in r.stderr
