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

from .patch_scope import ScopedPatch


def _layer_class():
    from keras.src.layers.layer import Layer  # noqa: PLC0415

    return Layer


def _recording_wrapper(original):
    """``Layer.add_weight`` that, inside a recording scope of this thread, creates the variable
    uninitialized and records it (the scope's frame is ``(records, make_record)``)."""
    from keras.src.backend.common.stateless_scope import StatelessScope  # noqa: PLC0415

    @functools.wraps(original)
    def add_weight(layer, *args, **kwargs):
        frame = _PATCH.innermost()
        if frame is None:
            return original(layer, *args, **kwargs)
        records, make_record = frame
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


#: The scoped, re-entrant ``Layer.add_weight`` patch behind Keras 3 lazy rebuilding (as lazy.py's).
_PATCH = ScopedPatch(_layer_class, "add_weight", _recording_wrapper)


@contextlib.contextmanager
def recording_add_weight(make_record):
    """Within this context (on this thread), Keras 3 layers get uninitialized variables;
    ``make_record(layer, variable)`` is called for each and its result recorded on the layer
    (``_squeezefmt_pending``) and in the list this context yields. Scopes may nest and overlap."""
    records: list = []
    try:
        with _PATCH.scope((records, make_record)):
            yield records
    finally:
        _forget_uninitialized(records)
