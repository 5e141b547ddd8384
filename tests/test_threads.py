"""squeezefmt.threads: the decode-thread setting and its helper pool."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from squeezefmt import threads


@pytest.fixture(autouse=True)
def _restore():
    before = threads.decode_threads()
    yield
    threads.set_decode_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="decode threads"):
        threads.set_decode_threads(bad)


def test_settings_are_clamped_to_two():
    assert threads.set_decode_threads(1) == 1 == threads.decode_threads()
    assert threads.set_decode_threads(8) == 2 == threads.decode_threads()


def test_helper_runs_work():
    threads.set_decode_threads(2)
    assert threads.helper().submit(lambda: 41 + 1).result(timeout=10) == 42


@pytest.mark.parametrize("env, want", [("1", 1), ("2", 2), ("7", 2), ("0", 1), ("many", None)])
def test_environment_sets_the_default(env, want):
    code = ("import os; from squeezefmt import threads; "
            "n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1); "
            "print(threads.decode_threads(), min(2, n))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SQUEEZEFMT_DECODE_THREADS": env},
                         capture_output=True, text=True, check=True).stdout.split()
    got, default = int(out[0]), int(out[1])
    assert got == (default if want is None else want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_gets_its_own_helper():
    threads.set_decode_threads(2)
    assert threads.helper().submit(lambda: 1).result(timeout=10) == 1   # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: the parent's helper thread does not exist here
        try:
            ok = threads.helper().submit(lambda: 2).result(timeout=10) == 2
        except BaseException:  # noqa: BLE001
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_a_helper_thread_never_splits_again():
    threads.set_decode_threads(2)
    assert threads.split_here() and not threads.in_helper()
    assert threads.helper().submit(lambda: (threads.in_helper(), threads.split_here())).result(timeout=10) == (True, False)
    threads.set_decode_threads(1)
    assert not threads.split_here()
