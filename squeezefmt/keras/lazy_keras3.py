"""The weight recorder of lazy loading (keras/lazy.py) for Keras 3, with no Keras 2 internals.

Under Keras 3, ``Layer.add_weight`` is replaced while the model is rebuilt: it still creates the
variable, but inside a ``StatelessScope`` that leaves it *uninitialized* (Keras's own deferred
initialization: no buffer is allocated, and used symbolically it reads as zeros), so layers build,
track and trace as usual while no weight memory exists. Each weight becomes a pending weight that
lazy.py binds to a decoded tensor for the duration of one call.
"""
from __future__ import annotations

import contextlib
import functools
import threading


class _Recorder:
    """The scoped, re-entrant ``Layer.add_weight`` patch behind Keras 3 lazy rebuilding.

    As lazy.py's tf.keras 2 recorder: the class attribute is replaced once, while at least one scope
    is open (a count under a lock), and restored when the last scope closes, whatever order
    overlapping scopes close in. The wrapper records only for the thread whose innermost open scope
    asked for it (a thread-local stack); every other call goes to Keras's own ``add_weight``.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._open = 0
        self._original = None
        self._local = threading.local()

    @contextlib.contextmanager
    def scope(self, make_record):
        from keras.src.layers.layer import Layer  # noqa: PLC0415

        records: list = []
        with self._lock:
            if self._open == 0:
                self._original = Layer.add_weight
                Layer.add_weight = self._wrapper(self._original)
            self._open += 1
        stack = self._local.__dict__.setdefault("stack", [])
        frame = (records, make_record)
        stack.append(frame)
        try:
            yield records
        finally:
            del stack[next(i for i, item in enumerate(stack) if item is frame)]  # by identity, not ==
            with self._lock:
                self._open -= 1
                if self._open == 0:
                    Layer.add_weight, self._original = self._original, None
            _forget_uninitialized(records)

    def _wrapper(self, original):
        from keras.src.backend.common.stateless_scope import StatelessScope  # noqa: PLC0415

        local = self._local

        @functools.wraps(original)
        def add_weight(layer, *args, **kwargs):
            stack = getattr(local, "stack", None)
            if not stack:
                return original(layer, *args, **kwargs)
            records, make_record = stack[-1]
            if len(args) > 1:  # (shape, initializer, dtype) positionally
                args = args[:1] + (None,) + args[2:]
            kwargs["initializer"] = "zeros"
            with StatelessScope(initialize_variables=False):
                variable = original(layer, *args, **kwargs)
            rec = make_record(layer, variable)
            layer.__dict__.setdefault("_squeezefmt_pending", []).append(rec)
            records.append(rec)
            return variable
        return add_weight


def _forget_uninitialized(records) -> None:
    """Keep ``records``' variables out of Keras's (per-thread) "initialize on the next scope exit" list."""
    from keras.src.backend.common import global_state  # noqa: PLC0415

    mine = {id(r.placeholder) for r in records}
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    global_state.set_global_attribute("uninitialized_variables", [v for v in pending if id(v) not in mine])


_RECORDER = _Recorder()


def recording_add_weight(make_record):
    """Within this context (on this thread), Keras 3 layers get uninitialized variables;
    ``make_record(layer, variable)`` is called for each and its result recorded on the layer
    (``_squeezefmt_pending``) and in the list this context yields. Scopes may nest and overlap."""
    return _RECORDER.scope(make_record)
