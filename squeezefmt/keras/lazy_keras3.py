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

_RECORDING = threading.local()


@contextlib.contextmanager
def recording_add_weight(make_record):
    """Within this context, Keras 3 layers get uninitialized variables; ``make_record(layer, variable)``
    is called for each and its result recorded on the layer (``_squeezefmt_pending``) and yielded."""
    from keras.src.backend.common import global_state  # noqa: PLC0415
    from keras.src.backend.common.stateless_scope import StatelessScope  # noqa: PLC0415
    from keras.src.layers.layer import Layer  # noqa: PLC0415

    original = Layer.add_weight
    records: list = []

    @functools.wraps(original)
    def add_weight(self, *args, **kwargs):
        if not getattr(_RECORDING, "active", False):
            return original(self, *args, **kwargs)
        if len(args) > 1:  # (shape, initializer, dtype) positionally
            args = args[:1] + (None,) + args[2:]
        kwargs["initializer"] = "zeros"
        with StatelessScope(initialize_variables=False):
            variable = original(self, *args, **kwargs)
        rec = make_record(self, variable)
        self.__dict__.setdefault("_squeezefmt_pending", []).append(rec)
        records.append(rec)
        return variable

    Layer.add_weight = add_weight
    _RECORDING.active = True
    try:
        yield records
    finally:
        _RECORDING.active = False
        Layer.add_weight = original
        # ours stay uninitialized: keep them out of Keras's "initialize on the next scope exit" list
        mine = {id(r.placeholder) for r in records}
        pending = global_state.get_global_attribute("uninitialized_variables") or []
        global_state.set_global_attribute("uninitialized_variables", [v for v in pending if id(v) not in mine])
