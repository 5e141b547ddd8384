"""Lazy Keras models: every weighted layer decodes its weights just before it runs and drops them after.

``squeezefmt.keras.load(path, lazy=True)`` returns an ordinary ``tf.keras.Model`` whose layers own no
weight variables. The container stays open (memory-mapped for a path); when a weighted layer is
called, its tensors are decoded from their streams, bound to the layer's weight attributes
(``kernel``, ``bias``, ``gamma``, a TT layer's ``cores``, an LSTM cell's ``recurrent_kernel`` ...) for
that one call, and unbound afterwards, so nothing references them once the layer's ops are done.
Peak memory is about the compressed file plus the largest layer (plus activations), not the whole
float model. Predictions are the same as those of the eager ``load``.

How it works
    * The model is rebuilt from its stored config while ``Layer.add_weight`` records instead of
      creating (a scoped, re-entrant patch: the recorder is installed while at least one load is
      rebuilding, and only calls made by the thread and scope that asked record): builds run as usual (so layer attributes like BatchNormalization's axis are set up
      by Keras itself) but no variable is created; each weight becomes a *pending weight*
      (name, shape, dtype, trainable).
    * Pending weights are matched to the stored layers as Keras's own .h5 loader matches weights:
      by position among the layers that have weights, trainable before non-trainable (nested
      layers such as an LSTM's cell or a nested model included, in Keras's order).
    * Each top-level weighted layer's ``call`` is wrapped. Eagerly (``model(x)``), the wrapper
      decodes the layer and binds the arrays as tensors. In a graph (``model.predict``,
      ``tf.function``), it adds a ``tf.numpy_function`` op that decodes the layer when the graph runs,
      with a control dependency on the layer's inputs, so layer *i+1* is decoded only after layer
      *i* has produced its output and released its weights.
    * ``model.predict`` is replaced by the layer-major schedule of :mod:`.lazy_schedule` (each layer
      decoded once per call; optionally the next stage decoded while one computes); it binds the decoded weights
      through ``LazyLayer.provided`` instead of the decode op, and falls back to Keras's predict
      (the per-batch path above) for what it cannot run.
    * Decoding goes through a :class:`~squeezefmt.container.cache.LayerCache`: ``cache_bytes=0``
      (default) keeps nothing; a budget keeps recently used layers (LRU) so that repeated batches
      do not pay the decode again. ``lazy_state(model).cache.stats()`` counts decodes and the live
      decoded bytes.

The model is for inference: its layers have no variables to train, ``model.weights`` is empty and
``model.save`` has nothing to store. Call :func:`close` (or drop the model) to close the container.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..api import open as open_sqz
from ..buffers import keep_buffers
from ..container.cache import LayerCache
from ..errors import KerasFormatError, LazyWeightError
from . import lazy_schedule
from .archive import keras_metadata
from .compat import numpy_dtype
from .patch_scope import ScopedPatch
from .rebuild import build_model, import_tf
from .resolve import resolve_weights

#: Attribute on a lazy model holding its :class:`LazyState`.
STATE_ATTR = "_squeezefmt_lazy"


@dataclasses.dataclass(eq=False)
class PendingWeight:
    """A weight a layer asked for while the model was rebuilt, not created (see the module doc)."""

    owner: Any                 # the Keras layer that called add_weight
    name: str
    shape: tuple[int, ...]
    dtype: Any                 # tf.DType
    trainable: bool
    placeholder: Any = None    # what add_weight returned: a symbolic zeros tensor of Keras's scratch graph
    slot: tuple[str, int | None] | None = None  # (attribute, list index) holding it on ``owner``


class ReleasedWeight:
    """Stands in a lazy layer's weight attribute between calls: using it outside a call is an error."""

    def __init__(self, pending: PendingWeight):
        self._name = pending.name

    def __getattr__(self, item):
        raise LazyWeightError(
            f"weight {self._name!r} of a lazily loaded layer is only available while the layer runs; "
            "load the model with lazy=False to read or train its weights"
        )

    def __repr__(self) -> str:
        return f"<lazily decoded weight {self._name!r}>"


def _layer_class():
    from keras.src.engine.base_layer import Layer  # noqa: PLC0415 - Keras 2.14 (tf.keras) layout

    return Layer


def _recording_wrapper(original):
    """``Layer.add_weight`` that, inside a recording scope of this thread, creates nothing and records
    a :class:`PendingWeight` in the scope's list (its frame)."""
    tf = import_tf()

    @functools.wraps(original)
    def add_weight(layer, name=None, shape=None, dtype=None, initializer=None, regularizer=None,
                   trainable=None, constraint=None, use_resource=None,
                   synchronization=tf.VariableSynchronization.AUTO, aggregation=tf.VariableAggregation.NONE,
                   **kwargs):
        records = _PATCH.innermost()
        if records is None:
            return original(layer, name, shape, dtype, initializer, regularizer, trainable, constraint,
                            use_resource, synchronization, aggregation, **kwargs)
        rec = _pending(tf, layer, name, shape, dtype, trainable, synchronization)
        records.append(rec)
        return rec.placeholder
    return add_weight


def _pending(tf, layer, name, shape, dtype, trainable, synchronization) -> PendingWeight:
    """The :class:`PendingWeight` standing for one ``add_weight`` call (no variable is created)."""
    from keras.src.backend import get_graph as keras_graph  # noqa: PLC0415 - Keras 2.14 (tf.keras) layout

    if trainable is None:
        trainable = synchronization != tf.VariableSynchronization.ON_READ
    dims = tf.TensorShape(() if shape is None else shape)
    if not dims.is_fully_defined():
        raise KerasFormatError(f"layer {layer.name!r} asks for weight {name!r} of unknown shape {dims}")
    dtype = tf.as_dtype(dtype or layer.dtype or "float32")
    rec = PendingWeight(owner=layer, name=str(name), shape=tuple(dims.as_list()), dtype=dtype,
                        trainable=bool(trainable))
    # Keras builds layers under init_scope, then runs call() on symbolic inputs in its scratch graph
    # to infer output shapes: hand out a symbolic tensor of that graph (never evaluated, no memory).
    with keras_graph().as_default():
        rec.placeholder = tf.zeros(rec.shape, dtype, name=f"squeezefmt_pending_{rec.name}")
    layer.__dict__.setdefault("_squeezefmt_pending", []).append(rec)
    return rec


#: The scoped, re-entrant ``Layer.add_weight`` patch behind lazy rebuilding: installed while at least
#: one load is rebuilding; only calls made by the thread and scope that asked record.
_PATCH = ScopedPatch(_layer_class, "add_weight", _recording_wrapper)


def recording_add_weight():
    """Within this context (on this thread), ``Layer.add_weight`` records a :class:`PendingWeight` instead of a variable."""
    from .compat import is_keras3  # noqa: PLC0415

    if is_keras3():  # Keras 3: uninitialized variables stand in (keras/lazy_keras3.py)
        from .lazy_keras3 import recording_add_weight as keras3_recording  # noqa: PLC0415

        tf = import_tf()

        def record(layer, variable):
            return PendingWeight(owner=layer, name=str(variable.name), shape=tuple(variable.shape),
                                 dtype=tf.as_dtype(variable.dtype), trainable=bool(variable.trainable),
                                 placeholder=variable)

        return keras3_recording(record)
    return _PATCH.scope([])


def _children(layer) -> list:
    return list(layer._flatten_layers(include_self=False, recursive=False))  # Keras 2 tracking order


def _own(layer, trainable: bool) -> list[PendingWeight]:
    return [r for r in layer.__dict__.get("_squeezefmt_pending", []) if r.trainable == trainable]


def _trainable(layer) -> list[PendingWeight]:
    if not layer.trainable:
        return []
    return _own(layer, True) + [r for c in _children(layer) for r in _trainable(c)]


def _non_trainable(layer) -> list[PendingWeight]:
    if layer.trainable:
        return _own(layer, False) + [r for c in _children(layer) for r in _non_trainable(c)]
    return _own(layer, True) + _own(layer, False) + [r for c in _children(layer) for r in _all(c)]


def _all(layer) -> list[PendingWeight]:
    return _trainable(layer) + _non_trainable(layer)


def keras_weight_order(layer) -> list[PendingWeight]:
    """The pending weights of ``layer`` in the order Keras lists (and saves) its weights."""
    seen, out = set(), []
    for r in _all(layer):  # Keras dedups weights shared between sublayers
        if id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


#: Keras 3's own variable tracking lists: never the attribute a layer computes with.
_TRACKING_LISTS = frozenset({"_trainable_variables", "_non_trainable_variables", "_seed_generators"})


def _find_slot(rec: PendingWeight) -> tuple[str, int | None]:
    """Which attribute of its owner holds ``rec``'s placeholder (directly, else as a list item)."""
    items = list(vars(rec.owner).items())
    for attr, value in items:
        if value is rec.placeholder:
            return attr, None
    for attr, value in items:
        if attr in _TRACKING_LISTS:
            continue
        if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
            for i, item in enumerate(value):
                if item is rec.placeholder:
                    return attr, i
    raise KerasFormatError(
        f"layer {rec.owner.name!r} ({type(rec.owner).__name__}) keeps weight {rec.name!r} where lazy loading "
        "cannot find it; load this model with lazy=False"
    )


def _set_slot(rec: PendingWeight, value) -> None:
    attr, index = rec.slot
    if index is None:
        # object.__setattr__: skip Keras's attribute tracking (the value is transient)
        object.__setattr__(rec.owner, attr, value)
    else:
        getattr(rec.owner, attr)[index] = value


def _gate(*_) -> np.ndarray:
    return np.zeros((), np.int32)


def _eager_tensor(a: np.ndarray):
    """An eager tensor sharing ``a``'s memory (DLPack), or a copy when TensorFlow cannot share it.

    ``tf.convert_to_tensor`` always copies a numpy array, so the decoded layer would exist twice and
    the copy would come from TensorFlow's heap; the decoded buffers are aligned for sharing.
    """
    tf = import_tf()
    try:
        return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
    except (AttributeError, TypeError, ValueError, BufferError, RuntimeError, tf.errors.OpError):
        return tf.convert_to_tensor(a)


class LazyLayer:
    """The lazy machinery of one top-level weighted layer: which tensors to decode, where to bind them."""

    def __init__(self, layer, records: Sequence[PendingWeight], tensors: Sequence[str], cache: LayerCache):
        self.layer = layer
        self.records = list(records)
        self.tensors = list(tensors)
        self.key = layer.name
        self._cache = cache
        self._released = [ReleasedWeight(r) for r in self.records]
        self.provided: list | None = None  # weight tensors to use instead of decoding (lazy_schedule)

    def decode(self) -> list[np.ndarray]:
        """The layer's arrays, checked against the shapes and dtypes the layer asked for."""
        arrays = self._cache.get_tensors(self.key, self.tensors)
        out = []
        for rec, tensor, a in zip(self.records, self.tensors, arrays):
            if tuple(a.shape) != rec.shape:
                raise KerasFormatError(
                    f"weight {tensor!r} has shape {a.shape}, layer {self.layer.name!r} expects {rec.shape}")
            want = numpy_dtype(rec.dtype)
            out.append(a if a.dtype == want else a.astype(want))
        return out

    def tensors_for_call(self, inputs) -> list:
        tf = import_tf()
        if self.provided is not None:
            return list(self.provided)
        if tf.executing_eagerly():
            arrays = self.decode()
            return [_eager_tensor(arrays.pop(0)) for _ in range(len(arrays))]
        # Order: decode only once the layer's inputs exist, so layer i+1 is decoded after layer i ran and
        # dropped its weights. The inputs are passed as (unused) data inputs, not as a control
        # dependency: Grappler does not fuse ops (MatMul+BiasAdd+Tanh ...) whose weights come from a
        # node with control inputs, and the eager model's graph is fused, so predictions would differ in
        # rounding. (Not their shapes: Grappler can infer those without running the previous layer.)
        # The previous layer's arrays are aliased by its tensors; when those die, TensorFlow queues the
        # arrays' release until a py_func returns (its "decref cache"). An empty py_func first lets
        # them go, so the decode below does not hold two layers at once.
        deps = [t for t in tf.nest.flatten(inputs) if tf.is_tensor(t) and not isinstance(t, tf.SparseTensor)]
        gate = tf.numpy_function(_gate, deps, tf.int32, stateful=True, name=f"squeezefmt_release_{self.layer.name}")
        outs = tf.numpy_function(lambda _: self.decode(), [gate], [r.dtype for r in self.records], stateful=True,
                                 name=f"squeezefmt_decode_{self.layer.name}")
        for t, rec in zip(outs, self.records):
            t.set_shape(rec.shape)
        return list(outs)

    def bind(self, values) -> None:
        for rec, value in zip(self.records, values):
            _set_slot(rec, value)

    def unbind(self) -> None:
        self.bind(self._released)

    def wrap_call(self) -> None:
        original = self.layer.call
        lazy = self

        @functools.wraps(original)
        def call(inputs, *args, **kwargs):
            lazy.bind(lazy.tensors_for_call(inputs))
            try:
                return original(inputs, *args, **kwargs)
            finally:
                lazy.unbind()

        tf = import_tf()
        object.__setattr__(self.layer, "call", tf.autograph.experimental.do_not_convert(call))


@dataclasses.dataclass
class LazyState:
    """What a lazy model keeps: the open container, the decode cache and its lazy layers."""

    file: Any
    cache: LayerCache
    layers: list[LazyLayer]

    def close(self) -> None:
        self.cache.clear()
        self.file.close()


def lazy_state(model) -> LazyState:
    """The :class:`LazyState` of a model returned by ``load(..., lazy=True)``."""
    state = getattr(model, STATE_ATTR, None)
    if state is None:
        raise ValueError("this model was not loaded with squeezefmt.keras.load(..., lazy=True)")
    return state


def close(model) -> None:
    """Close the container behind a lazy model; calling the model afterwards raises an error."""
    lazy_state(model).close()


def load_lazy(path, *, safe_mode: bool = True, custom_objects: Mapping[str, Any] | None = None,
              densify: bool = False, cache_bytes: int = 0, fetch_hook: Callable[[str, int], None] | None = None):
    """Rebuild the model in ``path`` with lazily decoded weights (see the module doc).

    ``cache_bytes``: decoded bytes to keep between calls (LRU by layer; 0 keeps nothing).
    ``fetch_hook(layer name, nbytes)`` is called after every decode.
    """
    f = open_sqz(path)
    try:
        meta, fetch = resolve_weights(keras_metadata(f), f, "dense" if densify else "tt")
        with recording_add_weight():
            model = build_model(meta, safe_mode=safe_mode, custom_objects=custom_objects)
        cache = LayerCache(f, cache_bytes, fetch=fetch, on_decode=fetch_hook)
        layers = _attach(model, meta, f, cache)
    except BaseException:
        f.close()
        raise
    object.__setattr__(model, STATE_ATTR, LazyState(file=f, cache=cache, layers=layers))
    # Every call decodes the same layers again: keep their output buffers mapped (two stages in flight
    # plus the entropy decoders' symbol buffers) instead of faulting fresh pages in each time.
    sizes = [sum(f.nbytes(t) for t in lz.tensors if t in f) for lz in layers]
    keep_buffers(3 * max(sizes, default=0))
    lazy_schedule.install(model, layers, _eager_tensor)  # layer-major predict
    weakref.finalize(model, f.close)
    return model


def _attach(model, meta: Mapping[str, Any], f, cache: LayerCache) -> list[LazyLayer]:
    """Match pending weights to the stored layers, release the placeholders and wrap the calls."""
    if not model.built:
        raise KerasFormatError("lazy loading needs a model whose config fixes its input shape (the model was not built)")
    stored = [layer for layer in meta["layers"] if layer["weights"]]
    targets = [(layer, keras_weight_order(layer)) for layer in model.layers]
    targets = [(layer, recs) for layer, recs in targets if recs]
    if len(stored) != len(targets):
        raise KerasFormatError(
            f"the container has weights for {len(stored)} layers, the model has {len(targets)} layers with weights"
        )
    lazy_layers = []
    for layer_meta, (layer, recs) in zip(stored, targets):
        weights = layer_meta["weights"]
        if len(recs) != len(weights):
            raise KerasFormatError(f"layer {layer.name!r} expects {len(recs)} weights, the container has {len(weights)}")
        tensors = [w["tensor"] for w in weights]
        for rec, tensor in zip(recs, tensors):
            if tensor in f:  # derived keys (TT cores) are checked when decoded
                shape = tuple(f.info(tensor).shape)
                if shape != rec.shape:
                    raise KerasFormatError(
                        f"weight {tensor!r} has shape {shape}, layer {layer.name!r} expects {rec.shape}")
            rec.slot = _find_slot(rec)
        lazy = LazyLayer(layer, recs, tensors, cache)
        lazy.unbind()
        lazy.wrap_call()
        lazy_layers.append(lazy)
    return lazy_layers
