"""Keras 3's functional graph for layer-major predict (keras/lazy_schedule.py), read from Keras 3 internals.

A Keras 3 ``Functional`` model (a ``Sequential`` one keeps one in ``_functional``) lists its nodes by
depth like tf.keras 2 does; a node knows its operation, its input and output ``KerasTensor``s and
its call arguments (``node.arguments.fill_in``). Each node becomes one step that calls the layer as
``Functional.call`` does, with ``training=False`` where the layer takes it (``predict_step``).
"""
from __future__ import annotations


def functional_of(model):
    """The Functional object whose graph ``model`` runs, or None (a subclassed or unbuilt model)."""
    from keras.src.models.functional import Functional  # noqa: PLC0415
    from keras.src.models.sequential import Sequential  # noqa: PLC0415

    if isinstance(model, Sequential):
        model = getattr(model, "_functional", None)
    if isinstance(model, Functional) and getattr(model, "_nodes_by_depth", None) is not None:
        return model
    return None


def read_graph(model, graph_cls, step_cls, unsupported):
    """``graph_cls`` (lazy_schedule.Graph) of a Keras 3 model; raises ``unsupported`` if it has none."""
    from keras.src import tree  # noqa: PLC0415

    fn = functional_of(model)
    if fn is None:
        raise unsupported("the model is not a functional/Sequential graph")
    shapes, dtypes = {}, {}

    def note(kt):
        key = str(id(kt))
        shapes[key] = tuple(kt.shape) if kt.shape is not None else None
        dtypes[key] = kt.dtype
        return key

    input_ids = [note(x) for x in fn.inputs]
    steps = []
    for depth in sorted(fn._nodes_by_depth, reverse=True):  # noqa: SLF001 - Keras 3 graph order
        for node in fn._nodes_by_depth[depth]:  # noqa: SLF001
            if not node.operation or node.is_input:
                continue
            out_ids = [note(kt) for kt in node.outputs]
            steps.append(step_cls(node.operation, [str(id(x)) for x in node.input_tensors], out_ids,
                                  _node_runner(node, tree)))
    output_ids = [str(id(x)) for x in fn.outputs]
    struct = fn._outputs_struct  # noqa: SLF001

    def pack(flat):
        out = tree.pack_sequence_as(struct, flat)
        return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out  # as Functional.call

    return graph_cls(input_ids, [x.dtype for x in fn.inputs], [x.name for x in fn.inputs], output_ids,
                     shapes, dtypes, steps, pack)


def _node_runner(node, tree):
    op = node.operation
    takes_training = "training" in getattr(op, "_call_context_args", {})

    def run(values: dict) -> list:
        args, kwargs = node.arguments.fill_in({id(x): values[str(id(x))] for x in node.input_tensors})
        if takes_training:
            kwargs = {**kwargs, "training": False}
        return tree.flatten(op(*args, **kwargs))

    return run
