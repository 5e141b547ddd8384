"""Layer-major ``predict`` for lazy models: each layer decoded once per call, not once per batch.

A lazy model (``squeezefmt.keras.load(path, lazy=True)``) decodes a layer every time the layer runs,
so Keras's ``predict`` loop (one graph run per batch) decodes the whole model once per batch. This
module replaces the lazy model's ``predict`` with FlexGen's block schedule: the graph is run *stage
by stage over all rows*, so a stage's weights are decoded once and used for every row.

* **Stages.** The model's functional graph (Sequential models included) is cut, in topological order,
  just before each layer that holds weights and starts a fused kernel (Dense, Conv*, LSTM, Embedding,
  a nested model ...). Normalisation layers and weightless layers (activations, pooling, adds ...)
  stay in the stage of the layer before them, and a zero-padding layer joins the stage of the layer
  after it: Grappler fuses Conv2D + BatchNorm + ReLU, MatMul + BiasAdd + activation or Pad + Conv2D
  into one kernel whose rounding differs from the separate ops, so the cuts never split such a
  pattern. Each stage is one ``tf.function`` with a fixed signature that takes its input activations
  and its layers' decoded weights as arguments: one graph, traced once, whose concrete function is
  called with the flat tensors (``_FlatCall``): the polymorphic call's per-call argument binding and
  casting cost more than a 32-row stage's computation.
* **Same arithmetic as the eager model.** Each stage runs on slices of exactly ``batch_size`` rows,
  the slices Keras's ``predict`` would use, inside a graph optimised by Grappler as Keras's predict
  function is. Every row therefore sees the same kernels, shapes and fusions as in ``predict`` of the
  eager model: outputs are identical bit for bit (tests/test_lazy_schedule.py). The whole batches
  of a chunk go through a stage in *one* graph call, a ``tf.while_loop`` that runs the stage on one
  slice per iteration (a graph call costs far more than a loop step: one call per batch and stage
  made layer-major predict 2x slower than eager, one per stage runs at eager speed); a last partial
  batch gets a call of its own. The loop reads each slice from the chunk's numpy arrays and writes
  the slice's outputs into numpy arrays (``tf.numpy_function``), so TensorFlow only ever holds one
  slice's tensors: its CPU allocator (oneDNN builds: a BFC allocator) keeps every region it grows,
  and chunk-sized tensors there (a copy of the inputs, a TensorArray and its stacked result) made the
  resident set grow a chunk's worth of activations past the estimate.
* **Chunks of rows.** The activations crossing stage boundaries are kept for all rows of a *chunk*;
  a chunk is as many batches as fit the activation budget (``activation_bytes``, default 32 MiB). The
  budget bounds the estimate of :mod:`.lazy_memory`, which is what the call's "activations" are: for
  each stage, the numpy activations alive while it runs (chunk rows) plus what TensorFlow holds for
  one slice (``batch`` rows, followed step by step, with per-layer-kind temporaries), the largest
  over stages; ``last_call["activation_bytes"]`` reports it. A call whose activations fit in one
  chunk decodes every layer exactly once; otherwise once per chunk.
* **Overlap** (on by default; ``configure(model, overlap=False)``). A worker thread decodes stage
  *i+1* while stage *i* computes (the decoders release the GIL in their C loops); at most two stages'
  weights are alive, so peak memory is about the compressed file + the two largest stages + the
  chunk's activations. Whether it pays depends on how long a stage computes against its decode and
  on what else wants the two cores: ``tools/bench_overlap.py`` (calls interleaved in one process)
  shows each model both ways; see the README for this session's figures.
  A layer used by several stages (a shared layer) stays decoded until its last stage of the chunk.
* **Fallback.** A model that cannot run this way (stateful RNNs, masking, activations whose shape is
  not static beyond the batch axis, a graph this module cannot
  read) and calls this schedule does not cover (``steps``, ``callbacks``, datasets and generators)
  use the per-batch lazy path; the first time for a given model it says why (``RuntimeWarning``).

Keras-version-specific graph access is confined to :func:`_keras_graph` and ``lazy_graph_keras3.py``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import inspect
import itertools
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from . import lazy_memory
from .compat import is_keras3, keras_module, numpy_dtype

#: Default bound on the activations kept between stages (bytes).
DEFAULT_ACTIVATION_BYTES = 32 << 20

# Layer classes that join the stage before them / after them (see the module doc).
_JOIN_PREVIOUS = {"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization"}
_JOIN_NEXT = {"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"}


class Unsupported(Exception):
    """The model cannot run layer-major; the message says why."""


@dataclasses.dataclass(eq=False)
class Step:
    """One call of a layer in the graph: input tensor ids -> output tensor ids."""

    layer: Any
    in_ids: list[str]
    out_ids: list[str]
    run: Callable[[dict], list]   # values by id -> flat outputs


@dataclasses.dataclass(eq=False)
class Graph:
    """A model's graph as steps in topological order (see :func:`_keras_graph`)."""

    input_ids: list[str]
    input_dtypes: list[Any]
    input_names: list[str]
    output_ids: list[str]
    shapes: dict[str, tuple]       # static shape per tensor id (batch dim first, None when unknown)
    dtypes: dict[str, Any]
    steps: list[Step]
    pack_outputs: Callable[[list], Any]


def _keras_graph(model) -> Graph:
    """The functional graph of a Keras model (with lazy_graph_keras3, the one place that reads Keras internals)."""
    if is_keras3():
        from .lazy_graph_keras3 import read_graph  # noqa: PLC0415

        return read_graph(model, Graph, Step, Unsupported)
    tf = _tf()
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if not getattr(model, "_is_graph_network", False) or nodes_by_depth is None:
        raise Unsupported("the model is not a functional/Sequential graph")
    shapes, dtypes = {}, {}

    def note(kt):
        key = str(id(kt))
        shapes[key] = tuple(kt.shape.as_list()) if kt.shape.rank is not None else None
        dtypes[key] = kt.dtype
        return key

    input_ids = [note(x) for x in model.inputs]
    steps = []
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input:
                continue
            for kt in tf.nest.flatten(node.outputs):
                note(kt)
            steps.append(Step(node.layer, list(node.flat_input_ids), list(node.flat_output_ids),
                              _node_runner(node, tf)))
    output_ids = [str(id(x)) for x in model.outputs]
    nested = model._nested_outputs  # noqa: SLF001 - Keras 2 output structure
    return Graph(input_ids, [x.dtype for x in model.inputs], list(model.input_names), output_ids, shapes, dtypes,
                 steps, lambda flat: tf.nest.pack_sequence_as(nested, flat))


def _node_runner(node, tf) -> Callable[[dict], list]:
    layer = node.layer
    takes_training = "training" in inspect.signature(layer.call).parameters

    def run(values: dict) -> list:
        uses = {}
        for i in node.flat_input_ids:
            uses.setdefault(i, []).append(values[i])
        args, kwargs = node.map_arguments(uses)
        if takes_training:
            kwargs = {**kwargs, "training": False}
        return tf.nest.flatten(layer(*args, **kwargs))

    return run


def _tf():
    import tensorflow as tf  # noqa: PLC0415

    return tf


def _sublayers(layer) -> list:
    flatten = getattr(layer, "_flatten_layers", None)  # Keras 2 and 3: nested layers, an RNN's cell ...
    nested = list(flatten(include_self=False, recursive=True)) if flatten is not None else []
    return nested + [m for m in getattr(layer, "submodules", ()) if hasattr(m, "call")] + [layer]


def check_supported(model, graph: Graph) -> None:
    """Raise :class:`Unsupported` for what layer-major predict cannot run exactly."""
    for step in graph.steps:
        for sub in _sublayers(step.layer):
            if getattr(sub, "stateful", False) is True:
                raise Unsupported(f"layer {sub.name!r} is stateful")
            if type(sub).__name__ == "Masking" or getattr(sub, "mask_zero", False):
                raise Unsupported(f"layer {sub.name!r} produces a mask")
    for key in graph.input_ids + [i for s in graph.steps for i in s.out_ids]:
        shape = graph.shapes.get(key)
        if shape is None or not shape or any(d is None for d in shape[1:]):
            raise Unsupported("a tensor of the graph has no static shape beyond the batch axis")


# -- stages ---------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Stage:
    steps: list[Step]
    lazy: list[Any]              # LazyLayer objects whose layer runs in this stage (first use order)
    in_ids: list[str] = dataclasses.field(default_factory=list)    # produced before, used here
    out_ids: list[str] = dataclasses.field(default_factory=list)   # produced here, used later / outputs
    fns: dict = dataclasses.field(default_factory=dict)       # input dtypes -> one batch (any rows)
    loop_fns: dict = dataclasses.field(default_factory=dict)  # (batch, input dtypes) -> batch loop


def split_stages(graph: Graph, lazy_by_layer: dict) -> list[Stage]:
    """Cut the steps into stages (module doc) and work out what crosses each cut."""
    cuts = set()
    steps = graph.steps
    for k, step in enumerate(steps):
        if id(step.layer) in lazy_by_layer and type(step.layer).__name__ not in _JOIN_PREVIOUS:
            j = k
            while j > 0 and type(steps[j - 1].layer).__name__ in _JOIN_NEXT:
                j -= 1
            cuts.add(j)
    cuts.discard(0)
    stages, current = [], []
    for k, step in enumerate(steps):
        if k in cuts and current:
            stages.append(current)
            current = []
        current.append(step)
    if current:
        stages.append(current)
    out = []
    for group in stages:
        lazy = []
        for step in group:
            lz = lazy_by_layer.get(id(step.layer))
            if lz is not None and lz not in lazy:
                lazy.append(lz)
        out.append(Stage(group, lazy))
    _wire(out, graph)
    return out


def _wire(stages: list[Stage], graph: Graph) -> None:
    producer = {i: -1 for i in graph.input_ids}
    for s, stage in enumerate(stages):
        for step in stage.steps:
            for i in step.out_ids:
                producer[i] = s
    for s, stage in enumerate(stages):
        for step in stage.steps:
            for i in step.in_ids:
                if producer[i] != s and i not in stage.in_ids:
                    stage.in_ids.append(i)
                    if producer[i] >= 0 and i not in stages[producer[i]].out_ids:
                        stages[producer[i]].out_ids.append(i)
    for i in graph.output_ids:
        if producer[i] >= 0 and i not in stages[producer[i]].out_ids:
            stages[producer[i]].out_ids.append(i)


def last_uses(stages: list[Stage], graph: Graph) -> dict[str, int]:
    """Tensor id -> index of the last stage reading it (model outputs: never released)."""
    last = {}
    for s, stage in enumerate(stages):
        for i in stage.in_ids:
            last[i] = s
    for i in graph.output_ids:
        last[i] = len(stages)
    return last


def activation_profile(stages: list[Stage], graph: Graph) -> list[tuple[int, int]]:
    """Per stage: (chunk bytes per row, slice bytes per row) of what it holds (``lazy_memory``)."""
    return lazy_memory.profile(stages, graph, last_uses(stages, graph))


# -- the schedule ---------------------------------------------------------------------------------

class LayerMajor:
    """The layer-major predict of one lazy model (installed by :func:`install`)."""

    def __init__(self, model, lazy_layers: Sequence[Any], original_predict: Callable,
                 to_tensor: Callable[[np.ndarray], Any]):
        self.model = model
        self.to_tensor = to_tensor
        self.lazy_layers = list(lazy_layers)
        self.original_predict = original_predict
        self.enabled = True
        self.overlap = True  # measured to pay (module doc)
        self.activation_bytes = DEFAULT_ACTIVATION_BYTES
        self._plan = None           # (graph, stages) once built, or an Unsupported
        self._warned = False
        self._proven = False
        self._counter = None
        self.last_call: dict[str, Any] = {}

    # -- entry point --------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
        reason = self._why_not(x, steps, callbacks, kwargs)
        if reason is not None:
            return self.original_predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                                         callbacks=callbacks, **kwargs)
        graph, stages = self._plan
        inputs = self._inputs(graph, x)
        if self._proven:
            return self._run(graph, stages, inputs, int(batch_size or 32))
        try:  # first call: a graph this module misreads must not cost the user their predictions
            out = self._run(graph, stages, inputs, int(batch_size or 32))
        except Exception as exc:  # noqa: BLE001 - if Keras's own predict works, use it from now on
            out = self.original_predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                                        callbacks=callbacks, **kwargs)  # a user error raises here
            self._plan = Unsupported(f"its first run failed: {type(exc).__name__}: {exc}")
            self._why_not(x, steps, callbacks, kwargs)  # warns once
            return out
        self._proven = True
        return out

    def _why_not(self, x, steps, callbacks, kwargs) -> str | None:
        if not self.enabled:
            return "disabled"
        if steps is not None or callbacks or kwargs.get("use_multiprocessing"):
            return "steps/callbacks/multiprocessing"
        if self._plan is None:
            self._plan = self._build()
        if isinstance(self._plan, Unsupported):
            if not self._warned:
                self._warned = True
                warnings.warn(f"squeezefmt lazy model: layer-major predict is not available ({self._plan}); "
                              "predict decodes every layer once per batch instead", RuntimeWarning, stacklevel=4)
            return str(self._plan)
        if not _is_array_input(x):
            return "input is not arrays"
        return None

    def _build(self):
        try:
            graph = _keras_graph(self.model)
            check_supported(self.model, graph)
        except Unsupported as exc:
            return exc
        lazy_by_layer = {id(lz.layer): lz for lz in self.lazy_layers}
        return graph, split_stages(graph, lazy_by_layer)

    def _inputs(self, graph: Graph, x) -> list[np.ndarray]:
        tf = _tf()
        if isinstance(x, dict):
            x = [x[name] for name in graph.input_names]
        flat = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(flat) != len(graph.input_ids):
            raise ValueError(f"the model has {len(graph.input_ids)} inputs, predict got {len(flat)}")
        arrays = []
        for a in flat:
            a = a.numpy() if tf.is_tensor(a) else np.asarray(a)
            if np.issubdtype(a.dtype, np.floating):  # as Keras's data adapter does
                a = a.astype(keras_module().backend.floatx(), copy=False)
            arrays.append(a)
        rows = {a.shape[0] if a.ndim else -1 for a in arrays}
        if len(rows) != 1 or -1 in rows:
            raise ValueError("predict inputs must have the same number of rows")
        return arrays

    # -- running ------------------------------------------------------------------------------
    def _run(self, graph: Graph, stages: list[Stage], inputs: list[np.ndarray], batch: int):
        n = inputs[0].shape[0]
        prof = activation_profile(stages, graph)
        chunk = lazy_memory.chunk_rows(prof, self.activation_bytes, batch)
        outputs: dict[str, np.ndarray] = {}
        self.last_call = {"rows": n, "batch_size": batch, "chunk_rows": chunk, "stages": len(stages), "chunks": 0,
                          "activation_bytes": lazy_memory.estimate(prof, min(chunk, max(n, 1)), batch)}
        if n == 0:
            return self.original_predict([a for a in inputs] if len(inputs) > 1 else inputs[0],
                                         batch_size=batch, verbose=0)
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            values = {i: a[rows] for i, a in zip(graph.input_ids, inputs)}
            self._run_chunk(graph, stages, values, batch)
            self.last_call["chunks"] += 1
            for i in graph.output_ids:
                part = values[i]
                if i not in outputs:
                    outputs[i] = np.empty((n,) + part.shape[1:], part.dtype)
                outputs[i][rows] = part
        flat = [outputs[i] for i in graph.output_ids]
        return graph.pack_outputs(flat)

    def _run_chunk(self, graph: Graph, stages: list[Stage], values: dict, batch: int) -> None:
        """Run every stage over the chunk's rows (``values``: activations by tensor id, updated)."""
        last_stage = {}
        for s, stage in enumerate(stages):
            for lz in stage.lazy:
                last_stage[id(lz)] = s
        last = last_uses(stages, graph)
        decoded: dict[int, list] = {}
        pool = concurrent.futures.ThreadPoolExecutor(1, "squeezefmt-decode") if self.overlap else None
        try:
            pending = pool.submit(self._decode_missing, stages[0], {}) if pool else None
            for s, stage in enumerate(stages):
                decoded.update(pending.result() if pool else self._decode_missing(stage, decoded))
                if pool and s + 1 < len(stages):  # decode the next stage while this one computes
                    pending = pool.submit(self._decode_missing, stages[s + 1], dict(decoded))
                self._run_stage(stage, values, [decoded[id(lz)] for lz in stage.lazy], batch, graph)
                for lz in stage.lazy:
                    if last_stage[id(lz)] == s:
                        del decoded[id(lz)]
                for i in stage.in_ids:
                    if last.get(i) == s and i not in graph.input_ids:
                        del values[i]
        finally:
            if pool:
                pool.shutdown(wait=True)

    def _decode_missing(self, stage: Stage, decoded: dict) -> dict:
        return {id(lz): [self.to_tensor(a) for a in lz.decode()] for lz in stage.lazy if id(lz) not in decoded}

    def _run_stage(self, stage: Stage, values: dict, weights: list, batch: int, graph: Graph) -> None:
        """Run ``stage`` over all rows of ``values``; its outputs go into new numpy arrays (in ``values``).

        The whole batches run in one call of the stage's batch loop, which reads each slice of ``batch``
        rows from the input arrays and writes the slice's outputs into the output arrays (module doc);
        the last partial batch runs in one call of the one-batch function. Either way every slice is
        computed alone, as Keras's predict computes it."""
        tf = _tf()
        flat_w = [w for ws in weights for w in ws]
        ins = [values[i] for i in stage.in_ids]
        n = ins[0].shape[0] if ins else 0
        outs = [np.empty((n,) + tuple(graph.shapes[i][1:]), numpy_dtype(graph.dtypes[i])) for i in stage.out_ids]
        whole = (n // batch) * batch if n // batch >= 2 else 0
        dtypes = tuple(a.dtype.str for a in ins)  # the first stage's raw inputs may differ from the Input's
        if whole:
            if (batch, dtypes) not in stage.loop_fns:
                stage.loop_fns[batch, dtypes] = self._stage_function(stage, graph, weights, ins, loop=batch)
            with _slice_io(ins, outs) as token:
                stage.loop_fns[batch, dtypes](tf.constant(token, tf.int64), tf.constant(whole // batch, tf.int32),
                                              flat_w)
        if whole < n and dtypes not in stage.fns:
            stage.fns[dtypes] = self._stage_function(stage, graph, weights, ins)
        for start in range(whole, n, batch):
            part = slice(start, min(n, start + batch))
            res = stage.fns[dtypes]([tf.convert_to_tensor(a[part]) for a in ins], flat_w)
            for dst, t in zip(outs, res):
                _put(dst, part, t.numpy())
        values.update(zip(stage.out_ids, outs))

    def _stage_function(self, stage: Stage, graph: Graph, weights: list, ins: list, loop: int = 0):
        """The stage as a ``tf.function(inputs, flat weights) -> outputs`` for inputs of the dtypes of
        ``ins`` and any number of rows; with ``loop`` = a batch size, ``tf.function(token, slices, flat
        weights)``: a graph loop running the stage on each slice of ``loop`` rows in turn, reading and
        writing numpy arrays (:func:`_batch_loop`)."""
        tf = _tf()
        counts = [len(ws) for ws in weights]
        in_spec = [tf.TensorSpec((None,) + tuple(graph.shapes[i][1:]), tf.as_dtype(a.dtype))
                   for i, a in zip(stage.in_ids, ins)]
        w_spec = [tf.TensorSpec(w.shape, w.dtype) for ws in weights for w in ws]
        cast = {i: d for i, d in zip(graph.input_ids, graph.input_dtypes)}
        # Keras 2's predict step counts steps (below); Keras 3's has no counter
        first_output = graph.output_ids[0] if graph.output_ids[0] in stage.out_ids and not is_keras3() else None
        if first_output is not None and self._counter is None:
            self._counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="squeezefmt_predict_counter")
        counter = self._counter

        def body(ins, flat_w):
            values = {}
            for i, t in zip(stage.in_ids, ins):
                values[i] = tf.cast(t, cast[i]) if i in cast and t.dtype != cast[i] else t
            for step in stage.steps:
                values.update(zip(step.out_ids, step.run(values)))
            if first_output is not None:
                # Keras's predict step counts steps with an op that depends on the first output; Grappler
                # then leaves that output's op unfused (MatMul+BiasAdd without the Tanh ...). Same here.
                with tf.control_dependencies([values[first_output]]):
                    counter.assign_add(1)
            return [values[i] for i in stage.out_ids]

        def provided(flat_w, fn):
            pos = 0
            for lz, k in zip(stage.lazy, counts):
                lz.provided = list(flat_w[pos:pos + k])
                pos += k
            try:
                return fn()
            finally:
                for lz in stage.lazy:
                    lz.provided = None

        if loop:
            def looped(token, slices, flat_w):
                return provided(flat_w, lambda: _batch_loop(tf, body, token, slices, flat_w, loop, in_spec))

            function = tf.function(looped, autograph=False, input_signature=[
                tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int32), w_spec])
        else:  # a fixed signature: 1 row or 32, no retracing (nor its memory) per number of rows
            function = tf.function(lambda ins, flat_w: provided(flat_w, lambda: body(ins, flat_w)),
                                   input_signature=[in_spec, w_spec], autograph=False)
        # every stage's function has the same Python code, by which TensorFlow counts "retracing": each
        # is traced once (once per input dtype for the first stage), so that warning would be wrong
        function._omit_frequent_tracing_warning = True  # noqa: SLF001
        # the signature is fixed, so there is exactly one graph: calling it directly skips the
        # polymorphic function's per-call signature matching and argument casting, which cost more
        # than the computation itself in a 32-row call of 24 Dense stages (cProfile: 86 of 190 ms per
        # call in the tf.function call, 32 of them executing)
        return _FlatCall(function.get_concrete_function())


class _FlatCall:
    """A stage's concrete function, called with its arguments already flat and of the traced dtypes.

    ``ConcreteFunction.__call__`` binds and casts the structured arguments on every call; the stage
    passes exactly the tensors it was traced for, so where TensorFlow has ``_call_flat`` (TF 2.14 to
    2.21, the versions tested) the tensors go straight to it; elsewhere the public call is used.
    """

    def __init__(self, concrete):
        self.concrete = concrete
        self._flat = getattr(concrete, "_call_flat", None)

    def __call__(self, *args):
        if self._flat is None:
            return self.concrete(*args)
        flat = []
        for a in args:  # (inputs, weights) or (token, slices, weights): the traced order
            if isinstance(a, (list, tuple)):
                flat.extend(a)
            else:
                flat.append(a)
        return self._flat(flat, self.concrete.captured_inputs)


# numpy arrays of the running batch loops: token -> (input arrays, output arrays)
_SLICE_IO: dict[int, tuple[list, list]] = {}
_TOKENS = itertools.count(1)


@contextlib.contextmanager
def _slice_io(ins: list, outs: list):
    token = next(_TOKENS)
    _SLICE_IO[token] = (ins, outs)
    try:
        yield token
    finally:
        del _SLICE_IO[token]


def _put(dst: np.ndarray, rows: slice, src: np.ndarray) -> None:
    if src.dtype != dst.dtype or src.shape[1:] != dst.shape[1:]:
        raise TypeError(f"a stage output is {src.dtype}{list(src.shape)}, the graph says {dst.dtype}{list(dst.shape)}")
    dst[rows] = src


def _batch_loop(tf, body, token, slices, flat_w, batch: int, in_spec: list):
    """``body`` on each slice of ``batch`` rows in a graph while-loop of ``slices`` iterations.

    One graph call per stage instead of one per batch (a call costs far more than the loop step);
    each iteration computes one slice alone with the same kernels as a one-batch call. Iteration
    *j* reads rows ``j*batch ...`` of the numpy input arrays registered under ``token`` and writes
    its outputs into the same rows of the output arrays (``tf.numpy_function``, in order: the next
    slice is read after the write), so the chunk's activations never pass through TensorFlow's
    allocator, which keeps what it once held (lazy_memory.py)."""

    def reader(index):
        def read(tok, j):
            j = int(j)
            return _SLICE_IO[int(tok)][0][index][j * batch:(j + 1) * batch]
        return read

    def write(tok, j, *outs):
        j = int(j)
        for dst, src in zip(_SLICE_IO[int(tok)][1], outs):
            _put(dst, slice(j * batch, (j + 1) * batch), src)
        return np.int32(j + 1)

    def step(j):
        ins = []
        for index, spec in enumerate(in_spec):
            t = tf.numpy_function(reader(index), [token, j], spec.dtype, stateful=True)
            t.set_shape(spec.shape)
            ins.append(t)
        nxt = tf.numpy_function(write, [token, j] + body(ins, flat_w), tf.int32, stateful=True)
        nxt.set_shape(())
        return [nxt]

    return tf.while_loop(lambda j: j < slices, step, [tf.constant(0)], parallel_iterations=1)


def _is_array_input(x) -> bool:
    tf = _tf()
    if isinstance(x, dict):
        return all(isinstance(v, np.ndarray) or tf.is_tensor(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and all(isinstance(v, np.ndarray) or tf.is_tensor(v) for v in x)
    return isinstance(x, np.ndarray) or (tf.is_tensor(x) and not isinstance(x, tf.SparseTensor))


SCHEDULE_ATTR = "_squeezefmt_schedule"


def install(model, lazy_layers: Sequence[Any], to_tensor: Callable[[np.ndarray], Any]) -> LayerMajor:
    """Give the lazy ``model`` a layer-major ``predict`` (the original stays as the fallback).

    ``lazy_layers``: objects with ``layer``, ``decode()`` (the layer's arrays) and a ``provided``
    attribute (weight tensors the layer's call uses instead of decoding); ``to_tensor(array)``.
    """
    schedule = LayerMajor(model, lazy_layers, model.predict, to_tensor)
    object.__setattr__(model, "predict", schedule.predict)
    object.__setattr__(model, SCHEDULE_ATTR, schedule)
    return schedule


def configure(model, *, enabled: bool | None = None, overlap: bool | None = None,
              activation_bytes: int | None = None) -> LayerMajor:
    """Switch layer-major predict on/off, the decode overlap, or set the activation budget (bytes)."""
    schedule = getattr(model, SCHEDULE_ATTR, None)
    if schedule is None:
        raise ValueError("this model was not loaded with squeezefmt.keras.load(..., lazy=True)")
    if enabled is not None:
        schedule.enabled = bool(enabled)
    if overlap is not None:
        schedule.overlap = bool(overlap)
    if activation_bytes is not None:
        if not isinstance(activation_bytes, int) or activation_bytes <= 0:
            raise ValueError(f"activation_bytes must be a positive integer, got {activation_bytes!r}")
        schedule.activation_bytes = activation_bytes
    return schedule
