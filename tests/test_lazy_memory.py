"""The activation estimate of layer-major predict (squeezefmt/keras/lazy_memory.py): pure functions of shapes.

The graphs here are built by hand (no TensorFlow): each expected figure is worked out from the
module's rules (chunk activations in numpy; a slice's working set followed step by step; a
separable convolution's depthwise temporary), independently of the code's loops.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from squeezefmt.keras import lazy_memory as mem
from squeezefmt.keras.lazy_schedule import Graph, Stage, Step, last_uses


def layer(kind: str, **attrs):
    return type(kind, (), attrs)()


def graph(shapes: dict, dtypes: dict | None = None, inputs=("x",), outputs=("y",)) -> Graph:
    dtypes = {k: (dtypes or {}).get(k, "float32") for k in shapes}
    return Graph(list(inputs), ["float32"] * len(inputs), list(inputs), list(outputs), shapes, dtypes, [], None)


def step(kind: str, ins, outs, **attrs) -> Step:
    return Step(layer(kind, **attrs), list(ins), list(outs), run=None)


def test_row_bytes_uses_the_shape_beyond_the_batch_axis_and_the_dtype():
    g = graph({"a": (None, 28, 28, 32), "b": (None, 10), "c": (None, 7)}, {"b": "float16", "c": "int64"})
    assert mem.row_bytes(g, "a") == 28 * 28 * 32 * 4
    assert mem.row_bytes(g, "b") == 20
    assert mem.row_bytes(g, "c") == 56


def test_separable_convolution_holds_its_depthwise_result():
    g = graph({"x": (None, 28, 28, 32), "y": (None, 14, 14, 64)})
    sep = step("SeparableConv2D", ["x"], ["y"], depth_multiplier=2, data_format="channels_last")
    assert mem.internal_bytes_per_row(sep, g) == 14 * 14 * 32 * 2 * 4      # strided: the output's 14x14
    g1 = graph({"x": (None, 32, 28, 28), "y": (None, 64, 28, 28)})
    sep1 = step("SeparableConv2D", ["x"], ["y"], depth_multiplier=1, data_format="channels_first")
    assert mem.internal_bytes_per_row(sep1, g1) == 28 * 28 * 32 * 4
    g2 = graph({"x": (None, 100, 8), "y": (None, 100, 16)})
    assert mem.internal_bytes_per_row(step("SeparableConv1D", ["x"], ["y"], depth_multiplier=3), g2) == 100 * 24 * 4
    for kind in ("Conv2D", "DepthwiseConv2D", "Dense", "BatchNormalization", "MaxPooling2D", "Activation"):
        assert mem.internal_bytes_per_row(step(kind, ["x"], ["y"]), g) == 0, kind


def cnn_stage():
    """sepconv (28x28x32 -> 28x28x64) -> bn -> relu -> pool (14x14x64), as mnist_cnn's second stage."""
    shapes = {"x": (None, 28, 28, 32), "s": (None, 28, 28, 64), "b": (None, 28, 28, 64),
              "r": (None, 28, 28, 64), "y": (None, 14, 14, 64)}
    steps = [step("SeparableConv2D", ["x"], ["s"], depth_multiplier=1, data_format="channels_last"),
             step("BatchNormalization", ["s"], ["b"]), step("Activation", ["b"], ["r"]),
             step("MaxPooling2D", ["r"], ["y"])]
    return graph(shapes), Stage(steps, [], in_ids=["x"], out_ids=["y"])


def test_slice_working_set_follows_tensors_step_by_step():
    g, stage = cnn_stage()
    x, big, y = 28 * 28 * 32 * 4, 28 * 28 * 64 * 4, 14 * 14 * 64 * 4
    # sepconv: its input + the depthwise result (x's size) + its output; bn, relu: input + output;
    # pool: input + output. The largest: x + x + big == big + big
    assert mem.slice_bytes_per_row(stage, g) == max(x + x + big, 2 * big, big + y)


def test_a_tensor_read_later_stays_alive_across_steps():
    # residual: h = dense(x); z = dense(h); y = add(x, z): x stays alive until the add
    g = graph({"x": (None, 100), "h": (None, 300), "z": (None, 100), "y": (None, 100)})
    steps = [step("Dense", ["x"], ["h"]), step("Dense", ["h"], ["z"]), step("Add", ["x", "z"], ["y"])]
    stage = Stage(steps, [], in_ids=["x"], out_ids=["y"])
    assert mem.slice_bytes_per_row(stage, g) == 4 * max(100 + 300, 100 + 300 + 100, 100 + 100 + 100)


def chain(widths):
    """A chain of Dense stages, one per width (input width first); tensors t0 (input) .. tn (output)."""
    shapes = {f"t{k}": (None, w) for k, w in enumerate(widths)}
    g = graph(shapes, inputs=("t0",), outputs=(f"t{len(widths) - 1}",))
    stages = [Stage([step("Dense", [f"t{k}"], [f"t{k + 1}"])], [], in_ids=[f"t{k}"], out_ids=[f"t{k + 1}"])
              for k in range(len(widths) - 1)]
    return g, stages


def test_chunk_activations_count_live_stage_outputs_not_the_callers_inputs():
    g, stages = chain([1000, 10, 20, 30])
    # stage 0: its output t1 (the input t0 is the caller's); stage 1: t1 + t2; stage 2: t2 + t3
    assert mem.chunk_bytes_per_row(stages, g, last_uses(stages, g)) == [40, 120, 200]
    prof = mem.profile(stages, g, last_uses(stages, g))
    assert prof == [(40, 4040), (120, 120), (200, 200)]
    assert mem.estimate(prof, chunk_rows=64, batch=32) == max(64 * 40 + 32 * 4040, 64 * 120 + 32 * 120,
                                                              64 * 200 + 32 * 200)
    assert mem.estimate(prof, chunk_rows=5, batch=32) == max(5 * 40 + 5 * 4040, 5 * 200 + 5 * 200)


def test_chunk_rows_is_the_most_whole_batches_that_fit():
    prof = [(40, 400), (120, 120), (200, 200)]
    budget = 10 * 32 * 200 + 32 * 200        # stage 2 bounds it (stage 0: 45 batches, stage 1: 17)
    assert mem.chunk_rows(prof, budget, 32) == 320
    assert mem.chunk_rows(prof, budget - 1, 32) == 288
    assert mem.chunk_rows(prof, 1, 32) == 32  # at least one batch, whatever the budget
    assert mem.chunk_rows([(40, 4040)] + prof[1:], budget, 32) == 32  # one slice of stage 0 alone is over it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)), min_size=1, max_size=8),
       st.integers(1, 1 << 30), st.integers(1, 256))
def test_chosen_chunk_fits_the_budget_and_one_more_batch_would_not(prof, budget, batch):
    rows = mem.chunk_rows(prof, budget, batch)
    assert rows % batch == 0 and rows >= batch
    if rows > batch:
        assert mem.estimate(prof, rows, batch) <= budget
    assert mem.estimate(prof, rows + batch, batch) > budget


@given(st.lists(st.integers(1, 4096), min_size=2, max_size=10))
def test_estimate_grows_with_the_chunk(widths):
    g, stages = chain(widths)
    prof = mem.profile(stages, g, last_uses(stages, g))
    sizes = [mem.estimate(prof, rows, 8) for rows in (1, 4, 8, 16, 64)]
    assert sizes == sorted(sizes) and all(np.diff(sizes[2:]) > 0)
