"""How many threads one decode may use, and the shared helper threads it uses.

A long Huffman stream decoded before (a lazy model decodes the same layers at every call) can be
decoded in two halves at once (``squeezefmt.entropy.huffman.decode_gather``): the calling thread
decodes one half and a helper thread the other. This module owns that choice and the helper:

* ``decode_threads()``: threads per decode; the default is 2 when the process may run on two or more
  CPUs, else 1; the environment variable ``SQUEEZEFMT_DECODE_THREADS`` (read once) or
  :func:`set_decode_threads` sets it (1 = never split).
* ``helper()``: a process-wide pool of ``decode_threads() - 1`` worker threads, made on first use;
  a forked child makes its own. Work given to it never waits for other work given to it, so it
  cannot deadlock; ``in_helper()`` tells code that could split again that it runs there.
* ``split_here()``: whether a decode running on this thread may give half of its work to the helper.

It imports nothing of squeezefmt: the decoders below it use it.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading

_lock = threading.Lock()
_threads: int | None = None
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_MAX = 2  # the decoders split a stream in two halves at most
_local = threading.local()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _default() -> int:
    raw = os.environ.get("SQUEEZEFMT_DECODE_THREADS", "").strip()
    if raw:
        try:
            return max(1, min(_MAX, int(raw)))
        except ValueError:
            pass  # an unreadable setting is the default, not an error at import time
    return max(1, min(_MAX, _usable_cpus()))


def decode_threads() -> int:
    """Threads one decode may use (1 or 2)."""
    global _threads
    if _threads is None:
        _threads = _default()
    return _threads


def set_decode_threads(n: int) -> int:
    """Let one decode use up to ``n`` threads (1 = the calling thread only; more than 2 counts as 2).
    Returns the setting in force. Raises ValueError for ``n < 1``."""
    global _threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"decode threads must be an integer >= 1, not {n!r}")
    with _lock:
        _threads = min(_MAX, n)
        if _threads == 1 and _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None
    return _threads


def _mark_helper() -> None:
    _local.helper = True


def in_helper() -> bool:
    """Whether the calling thread is one of the helper pool's."""
    return getattr(_local, "helper", False)


def split_here() -> bool:
    """Whether a decode on this thread may hand half of its work to the helper: two decode threads
    are allowed and this is not a helper thread (a helper waiting for the helper would wait forever)."""
    return decode_threads() >= 2 and not in_helper()


def helper() -> concurrent.futures.ThreadPoolExecutor:
    """The shared pool of ``decode_threads() - 1`` helper threads (at least one)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max(1, decode_threads() - 1), "squeezefmt-decode-helper",
                                                          initializer=_mark_helper)
        return _pool


def _forget_after_fork() -> None:
    global _pool, _lock
    _pool, _lock = None, threading.Lock()  # the parent's threads do not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
