"""Input second moments of a Keras classifier's linear layers, for data-aware rounding (GPTQ).

For every kernel that acts as a matrix on its layer's inputs, :func:`input_moments` returns
``H = X.T @ X`` over the evaluation data, ``X`` being what the kernel multiplies, one row per use:

- ``Dense``: the layer's input (any leading axes flattened);
- ``Conv2D`` (``channels_last``, ``groups == 1``): the input's ``kh x kw x cin`` patches at every output
  position, in the kernel's ``(kh, kw, cin)`` order;
- ``SeparableConv2D``: its ``pointwise_kernel`` on the depthwise convolution's output.

Layers used more than once (shared layers), other kinds and ``channels_first`` data are left out:
the search quantizes their tensors with plain rate-distortion rounding. The exact weights produce
the inputs (every matrix is independent of how the other tensors are quantized). Imports TensorFlow.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..search.data import EvalData
from .compat import numpy_dtype
from .rebuild import import_tf

#: Images per forward pass when collecting moments (patches can be large).
CHUNK = 250


def _kind(layer) -> str:
    return type(layer).__name__


def _matrix_kernel(layer):
    """``(variable, input transform)`` of a layer whose kernel GPTQ can round, else None."""
    kind = _kind(layer)
    if kind == "Dense":
        return layer.kernel, "flat"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    if kind == "Conv2D" and getattr(layer, "groups", 1) == 1:
        return layer.kernel, "patches"
    if kind == "SeparableConv2D":
        return layer.pointwise_kernel, "depthwise"
    return None


def _single_use(layer) -> bool:
    nodes = getattr(layer, "_inbound_nodes", None)
    return nodes is None or len(nodes) <= 1


def _rows(tf, layer, how: str, x):
    """The rows ``X`` the kernel multiplies, for the layer inputs ``x`` (a tensor)."""
    if how == "flat":
        return tf.reshape(x, (-1, x.shape[-1]))
    if how == "patches":
        kh, kw = layer.kernel_size
        sh, sw = layer.strides
        dh, dw = layer.dilation_rate
        p = tf.image.extract_patches(x, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1], rates=[1, dh, dw, 1],
                                     padding=layer.padding.upper())
        return tf.reshape(p, (-1, p.shape[-1]))
    sh, sw = layer.strides
    y = tf.nn.depthwise_conv2d(x, tf.convert_to_tensor(layer.depthwise_kernel), strides=[1, sh, sw, 1],
                               padding=layer.padding.upper(), dilations=layer.dilation_rate)
    return tf.reshape(y, (-1, y.shape[-1]))


def input_moments(clf, data: EvalData, arrays: Mapping[str, np.ndarray] | None = None) -> dict:
    """``{tensor name: H}`` for the kernels of ``clf`` (a :class:`~.evaluate.KerasClassifier`) GPTQ can round."""
    tf = import_tf()
    by_var = {id(v): name for name, v in clf.variables}
    targets = []
    for layer in clf.model.layers:
        found = _matrix_kernel(layer) if _single_use(layer) else None
        if found is not None and id(found[0]) in by_var:
            targets.append((layer, found[1], by_var[id(found[0])]))
    if not targets:
        return {}
    for name, v in clf.variables:  # the exact weights produce the inputs
        v.assign(np.asarray((arrays or clf.exact)[name], dtype=numpy_dtype(v.dtype)))
    probe = tf.keras.Model(clf.model.inputs, [layer.input for layer, _, _ in targets])
    sums = [None] * len(targets)
    for start in range(0, len(data), CHUNK):
        xs = [a[start:start + CHUNK].astype(np.float32) for a in data.x]
        outs = probe(xs if len(xs) > 1 else xs[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, ((layer, how, _), x) in enumerate(zip(targets, outs)):
            rows = _rows(tf, layer, how, x)
            m = tf.matmul(rows, rows, transpose_a=True).numpy().astype(np.float64)
            sums[i] = m if sums[i] is None else sums[i] + m
    return {name: h for (_, _, name), h in zip(targets, sums)}
