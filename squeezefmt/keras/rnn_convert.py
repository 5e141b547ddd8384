"""CuDNN-layout RNN weights -> the layout of Keras's LSTM/GRU layers (numpy only).

Weights of a GPU-trained ``CuDNNLSTM``/``CuDNNGRU`` (or of a file written in that layout) differ from
those of a Keras ``LSTM``/``GRU(reset_after=True)``: each gate's input kernel is stored in Fortran
order, each gate's recurrent kernel transposed, and the bias holds separate input and recurrent
halves (``2 * units * gates`` long). Keras's legacy .h5 loader converts such weights when it sets them
(tf.keras 2.14 ``saving/legacy/hdf5_format.py``, ``_convert_rnn_weights``); :func:`convert_layer_weights`
does the same for squeezefmt's ``load``/``load_weights``, recursing through ``Bidirectional``,
``TimeDistributed`` and nested models as Keras does. It never converts Keras-layout weights, so
calling it on ordinary weights changes nothing.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import KerasFormatError


def _per_gate(kernel: np.ndarray, func, gates: int) -> np.ndarray:
    return np.hstack([func(k) for k in np.hsplit(kernel, gates)])


def _from_fortran(kernel: np.ndarray) -> np.ndarray:
    """One gate's input kernel, stored by cuDNN in Fortran order, in Keras's C order (same shape)."""
    return kernel.T.reshape(kernel.shape, order="F")


def lstm_from_cudnn(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> list[np.ndarray]:
    """CuDNNLSTM ``(kernel, recurrent_kernel, bias[8u])`` -> LSTM ``(kernel, recurrent_kernel, bias[4u])``."""
    return [
        _per_gate(kernel, _from_fortran, 4),
        _per_gate(recurrent, lambda k: k.T, 4),
        np.sum(np.split(bias, 2, axis=0), axis=0),  # input + recurrent bias
    ]


def gru_from_cudnn(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> list[np.ndarray]:
    """CuDNNGRU ``(kernel, recurrent_kernel, bias[6u])`` -> GRU(reset_after=True) ``(..., bias[2, 3u])``."""
    return [
        _per_gate(kernel, _from_fortran, 3),
        _per_gate(recurrent, lambda k: k.T, 3),
        np.asarray(bias).reshape(2, -1),
    ]


def _rnn(class_name: str, layer, weights: list[np.ndarray]) -> list[np.ndarray]:
    if len(weights) != 3:  # no bias: nothing tells the layouts apart, Keras converts nothing either
        return weights
    units = weights[1].shape[0]
    if class_name in ("LSTM", "CuDNNLSTM"):
        if weights[2].shape == (8 * units,) and class_name == "LSTM":
            return lstm_from_cudnn(*weights)
        return weights
    if weights[2].shape != (6 * units,) or class_name == "CuDNNGRU":
        return weights  # already GRU layout (bias (2, 3u) or (3u,))
    if not getattr(layer, "reset_after", True):
        raise KerasFormatError(
            f"GRU layer {layer.name!r} has reset_after=False; CuDNNGRU weights need GRU(reset_after=True)")
    return gru_from_cudnn(*weights)


def convert_layer_weights(layer, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``weights`` (a layer's values in Keras order) with CuDNN-layout RNN weights converted for ``layer``."""
    weights = list(weights)
    name = type(layer).__name__
    if name == "Bidirectional":
        half = len(weights) // 2
        return (convert_layer_weights(layer.forward_layer, weights[:half])
                + convert_layer_weights(layer.backward_layer, weights[half:]))
    if name == "TimeDistributed":
        return convert_layer_weights(layer.layer, weights)
    if name in ("LSTM", "GRU", "CuDNNLSTM", "CuDNNGRU"):
        return _rnn(name, layer, weights)
    if name in ("Model", "Sequential", "Functional"):
        return _nested_model(layer, weights)
    return weights


def _nested_model(model, weights: list[np.ndarray]) -> list[np.ndarray]:
    """Split a nested model's trainable-then-non-trainable list per sublayer, convert each, rejoin."""
    n_train = len(model.trainable_weights)
    train, frozen = weights[:n_train], weights[n_train:]
    new_train: list[np.ndarray] = []
    new_frozen: list[np.ndarray] = []
    for sub in model.layers:
        nt, nn = len(sub.trainable_weights), len(sub.non_trainable_weights)
        if not nt + nn:
            continue
        done = convert_layer_weights(sub, train[:nt] + frozen[:nn])
        new_train += done[:nt]
        new_frozen += done[nt:]
        train, frozen = train[nt:], frozen[nn:]
    return new_train + train + new_frozen + frozen
