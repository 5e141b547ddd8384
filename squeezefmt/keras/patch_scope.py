"""A class attribute replaced while any scope is open: the re-entrant, per-thread patch lazy loading uses.

:class:`ScopedPatch` installs ``wrapper(original)`` on ``owner.attribute`` when the first scope opens
(a count under a lock) and restores the original when the last one closes, whatever order
overlapping scopes close in. Each scope pushes a *frame* onto a thread-local stack; the wrapper asks
:meth:`ScopedPatch.innermost` for the frame of its own thread's innermost open scope (``None``: not
recording on this thread, call the original). The Keras 2 and Keras 3 weight recorders of
:mod:`.lazy` and :mod:`.lazy_keras3` are the two users.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable


class ScopedPatch:
    """Patch ``owner().attribute`` with ``wrapper(original)`` while at least one :meth:`scope` is open."""

    def __init__(self, owner: Callable[[], type], attribute: str, wrapper: Callable[[Any], Any]):
        self._owner, self._attribute, self._wrapper = owner, attribute, wrapper
        self._lock = threading.Lock()
        self._open = 0
        self._original = None
        self._local = threading.local()

    @contextlib.contextmanager
    def scope(self, frame):
        """Open a scope on this thread with ``frame`` as its innermost frame; yields ``frame``."""
        cls = self._owner()
        with self._lock:
            if self._open == 0:
                self._original = getattr(cls, self._attribute)
                setattr(cls, self._attribute, self._wrapper(self._original))
            self._open += 1
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(frame)
        try:
            yield frame
        finally:
            del stack[next(i for i, item in enumerate(stack) if item is frame)]  # by identity, not ==
            with self._lock:
                self._open -= 1
                if self._open == 0:
                    setattr(cls, self._attribute, self._original)
                    self._original = None

    def innermost(self):
        """The frame of this thread's innermost open scope, or None."""
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else None
