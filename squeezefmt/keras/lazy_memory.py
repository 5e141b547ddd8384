"""What layer-major ``predict`` holds in memory: the activation estimate that sizes its chunks.

Pure functions of a model graph's static shapes (``lazy_schedule.Graph`` / ``Stage``); no TensorFlow.
Layer-major predict (lazy_schedule.py) runs a stage over the rows of a chunk in a graph loop that
reads one slice of ``batch`` rows at a time from numpy and writes the slice's outputs into numpy
arrays of the chunk. What it holds while stage *s* runs is two parts:

* **Chunk activations** (numpy, ``chunk rows`` x bytes per row): every stage output produced so
  far and still to be read by a later stage or returned, plus stage *s*'s own outputs (allocated
  when it starts). The model inputs are the caller's arrays (sliced, not copied): not counted.
* **Slice working set** (TensorFlow's allocator, ``min(batch, chunk rows)`` x bytes per row): what
  the stage body allocates for one slice. The body's tensors are followed step by step in graph
  order: a tensor lives from the step that makes it until the last step of the stage that reads it
  (the stage's inputs from the start, its outputs until they are written out), and at each step
  the live tensors, the step's outputs and the step's internal temporaries (per layer kind, below)
  are summed; the working set is the largest such sum.

Internal temporaries per layer kind, measured on TensorFlow 2.14's CPU kernels (oneDNN) with
TensorFlow's allocator statistics (``tools/bench_stage_memory.py``): a separable convolution holds
its depthwise result (input channels x depth multiplier at the output's spatial size) while the
pointwise convolution runs. Conv1D/2D/3D, depthwise convolutions, Dense, batch normalisation,
activations and pooling allocate nothing beyond their output at these shapes (no im2col buffer: a
3x3 32->64 convolution on 28x28 peaked at its input + output). Keeping each step's input alive
until the step is done also covers the kernels that cannot reuse their input buffer; where Grappler
fuses steps into one kernel (Conv2D + BatchNorm + ReLU) the intermediate outputs never exist, so
the walk is an upper bound there (mnist_cnn's first stage: 4 MiB per 32-row slice in TensorFlow's
statistics, 6.1 MiB counted).

The estimate for a chunk is the largest, over stages, of the two parts' sum; the schedule takes the
largest whole number of batches whose estimate fits the activation budget (at least one batch).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .compat import numpy_dtype

_SEPARABLE = {"SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"}


def row_bytes(graph: Any, key: str) -> int:
    """Bytes of one row of tensor ``key`` (its static shape beyond the batch axis)."""
    shape = graph.shapes[key]
    dtype = graph.dtypes[key]  # a tf.DType (tf.keras 2) or a dtype name (Keras 3)
    return int(np.prod(shape[1:], dtype=np.int64)) * numpy_dtype(dtype).itemsize


def internal_bytes_per_row(step: Any, graph: Any) -> int:
    """Temporaries a layer allocates per row besides its outputs (see the module doc)."""
    layer = step.layer
    if type(layer).__name__ in _SEPARABLE and step.in_ids and step.out_ids:
        in_shape, out_shape = graph.shapes[step.in_ids[0]], graph.shapes[step.out_ids[0]]
        first = getattr(layer, "data_format", "channels_last") == "channels_first"
        channels = in_shape[1] if first else in_shape[-1]
        spatial = out_shape[2:] if first else out_shape[1:-1]
        itemsize = numpy_dtype(graph.dtypes[step.out_ids[0]]).itemsize
        depth = int(getattr(layer, "depth_multiplier", 1) or 1)
        return int(np.prod(spatial, dtype=np.int64)) * int(channels) * depth * itemsize
    return 0


def slice_bytes_per_row(stage: Any, graph: Any) -> int:
    """Per-row peak of the tensors the stage body holds for one slice (module doc)."""
    steps = stage.steps
    last = {i: -1 for i in stage.in_ids}
    for k, step in enumerate(steps):
        for i in step.in_ids:
            last[i] = k
    for i in stage.out_ids:
        last[i] = len(steps)
    live = {i: row_bytes(graph, i) for i in stage.in_ids}
    peak = sum(live.values())
    for k, step in enumerate(steps):
        outs = {i: row_bytes(graph, i) for i in step.out_ids if i not in live}
        peak = max(peak, sum(live.values()) + sum(outs.values()) + internal_bytes_per_row(step, graph))
        live.update(outs)
        for i in [i for i in live if last.get(i, -1) <= k]:
            del live[i]
    return max(peak, 1)


def chunk_bytes_per_row(stages: Sequence[Any], graph: Any, last_uses: dict) -> list[int]:
    """Per stage: bytes per chunk row of the numpy activations alive while it runs (module doc)."""
    alive, out = {}, []
    for s, stage in enumerate(stages):
        for i in stage.out_ids:
            alive[i] = row_bytes(graph, i)
        out.append(sum(alive.values()))
        for i in stage.in_ids:
            if last_uses.get(i) == s:
                alive.pop(i, None)
    return out


def profile(stages: Sequence[Any], graph: Any, last_uses: dict) -> list[tuple[int, int]]:
    """Per stage: (chunk bytes per row, slice bytes per row)."""
    return list(zip(chunk_bytes_per_row(stages, graph, last_uses), (slice_bytes_per_row(s, graph) for s in stages)))


def estimate(prof: Sequence[tuple[int, int]], chunk_rows: int, batch: int) -> int:
    """Bytes layer-major predict holds for a chunk of ``chunk_rows`` in slices of ``batch`` rows."""
    rows = min(batch, chunk_rows)
    return max((chunk_rows * c + rows * w for c, w in prof), default=0)


def chunk_rows(prof: Sequence[tuple[int, int]], budget: int, batch: int) -> int:
    """The most rows, a whole number of batches (at least one), whose :func:`estimate` fits ``budget``."""
    batches = math.inf
    for c, w in prof:
        room = budget - batch * w
        batches = min(batches, room // (c * batch) if c else math.inf)
    return batch * int(max(1, batches if batches != math.inf else 1))
