"""``TTDense``: a Dense layer whose kernel is a Tensor-Train matrix, computed on the cores.

The maths is t3f's ``t3f.nn.KerasDense`` (Novikov et al., "Tensorizing Neural Networks", 2015):
the ``(N, M)`` kernel is ``d`` trainable cores ``(r_{k-1}, n_k, m_k, r_k)`` with
``N = prod(input_dims)``, ``M = prod(output_dims)``; ``y = activation(x @ W + b)`` is evaluated
core by core (never forming ``W``), in the same sequence of operations as t3f's
``t3f.matmul(x, W)``, so a t3f model loaded into this layer predicts bit for bit the same.

The constructor takes t3f's arguments (``input_dims``, ``output_dims``, ``tt_rank``,
``activation``, ``use_bias``, ``kernel_initializer`` in {'glorot', 'he', 'lecun'},
``bias_initializer`` as a number), so the ``KerasDense`` config t3f writes into an .h5 rebuilds
into this class: it is registered under both names, and ``squeezefmt.keras.load`` needs no t3f.
(t3f 1.2.0 itself cannot load those files under TF 2.x: its constructor passes ``name`` twice.)

    layer = TTDense(input_dims=[7, 4, 7, 4], output_dims=[5, 5, 5, 5], tt_rank=4, activation="relu")

Unlike t3f's layer, inputs may have any number of leading dimensions (like ``Dense``).
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

import squeezefmt.tt_math as tt_math


def tt_matmul(x, cores, input_dims, output_dims, ranks):
    """``x @ W`` for a 2-D ``x`` of shape ``(B, N)`` and a TT-matrix ``W`` given by ``cores``.

    Operation for operation what t3f's ``dense_tt_matmul`` does (transposed cores, then one einsum
    per core from the last to the first), so the floating-point results agree exactly.
    """
    d = len(cores)
    data = tf.reshape(x, (-1, input_dims[-1], 1))
    for k in reversed(range(d)):
        core_t = tf.transpose(cores[k], (0, 2, 1, 3))        # (r_{k-1}, m_k, n_k, r_k)
        data = tf.einsum("aijb,rjb->ira", core_t, data)       # (m_k, rest, r_{k-1})
        if k > 0:
            data = tf.reshape(data, (-1, input_dims[k - 1], ranks[k]))
    data = tf.reshape(data, (math.prod(output_dims), -1))     # (M, B)
    return tf.transpose(data)


@tf.keras.utils.register_keras_serializable(package="squeezefmt")
class TTDense(tf.keras.layers.Layer):
    """A fully connected layer with a TT-matrix kernel (t3f ``KerasDense`` compatible)."""

    def __init__(self, input_dims, output_dims, tt_rank=2, activation=None, use_bias=True,
                 kernel_initializer="glorot", bias_initializer=0.1, **kwargs):
        super().__init__(**kwargs)
        self.input_dims = [int(v) for v in input_dims]
        self.output_dims = [int(v) for v in output_dims]
        tt_math.check_dims(self.input_dims, self.output_dims)
        self.tt_rank = tt_rank if isinstance(tt_rank, (int, np.integer)) else [int(r) for r in tt_rank]
        self.ranks = tt_math.normalize_ranks(tt_rank, len(self.input_dims))
        if kernel_initializer not in ("glorot", "he", "lecun"):
            raise ValueError(f'Unknown kernel_initializer "{kernel_initializer}", only "glorot", "he", and "lecun" '
                             "are supported")
        self.activation_name = activation
        self.activation = tf.keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = 0.0 if bias_initializer is None else float(bias_initializer)
        self.units = math.prod(self.output_dims)
        self.cores = []
        self.bias = None

    @property
    def core_shapes(self):
        return tt_math.core_shapes(self.input_dims, self.output_dims, self.ranks)

    def build(self, input_shape):
        n_in = math.prod(self.input_dims)
        last = tf.TensorShape(input_shape)[-1]
        if last is not None and last != n_in:
            raise ValueError(f"{self.name}: input has {last} features, input_dims {self.input_dims} multiply to {n_in}")
        std = tt_math.glorot_core_stddev(self.input_dims, self.output_dims, self.ranks, self.kernel_initializer)
        self.cores = [
            self.add_weight(name=f"core_{k}", shape=shape, dtype=self.dtype, trainable=True,
                            initializer=tf.keras.initializers.RandomNormal(stddev=std))
            for k, shape in enumerate(self.core_shapes)
        ]
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), dtype=self.dtype, trainable=True,
                                        initializer=tf.keras.initializers.Constant(self.bias_initializer))
        super().build(input_shape)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        lead = None
        if x.shape.rank is not None and x.shape.rank != 2:
            lead = tf.shape(x)[:-1]
            x = tf.reshape(x, (-1, math.prod(self.input_dims)))
        y = tt_matmul(x, self.cores, self.input_dims, self.output_dims, self.ranks)
        if self.use_bias:
            y += self.bias
        if lead is not None:
            y = tf.reshape(y, tf.concat([lead, [self.units]], axis=0))
        if self.activation is not None:
            y = self.activation(y)
        return y

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dims": [int(v) for v in self.input_dims], "output_dims": [int(v) for v in self.output_dims],
            "tt_rank": int(self.tt_rank) if isinstance(self.tt_rank, (int, np.integer)) else [int(r) for r in self.tt_rank],
            "activation": tf.keras.activations.serialize(self.activation) if self.activation_name is not None else None,
            "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
        })
        return config

    # -- conveniences ------------------------------------------------------------------------------
    def tt_matrix(self) -> tt_math.TTMatrix:
        """The current kernel as a numpy TTMatrix (cores copied)."""
        return tt_math.TTMatrix(tuple(np.asarray(c.numpy()) for c in self.cores))

    def dense_kernel(self) -> np.ndarray:
        """The ``(N, M)`` kernel as a dense numpy array (formed on demand, e.g. to build a Dense layer)."""
        return self.tt_matrix().full()

    @classmethod
    def from_dense(cls, dense_layer, *, input_dims=None, output_dims=None, max_rank=None, tol=None, name=None):
        """A TTDense whose cores are the TT-SVD of a built Keras ``Dense`` layer's kernel (bias copied).

        Returns ``(layer, svd)``; ``svd.rel_error`` is the relative Frobenius error of the kernel.
        The layer is built for the Dense layer's input size and can be fine-tuned.
        """
        kernel = dense_layer.kernel.numpy()
        if input_dims is None:
            input_dims, output_dims = tt_math.auto_dims(*kernel.shape)
        svd = tt_math.tt_svd(kernel, input_dims, output_dims, max_rank=max_rank, tol=tol)
        cfg = dense_layer.get_config()
        layer = cls(input_dims=svd.tt.input_dims, output_dims=svd.tt.output_dims, tt_rank=svd.tt.ranks,
                    activation=cfg.get("activation"), use_bias=cfg.get("use_bias", True),
                    name=name or dense_layer.name, dtype=cfg.get("dtype"))
        layer.build((None, kernel.shape[0]))
        layer.set_weights(list(svd.tt.cores) + ([dense_layer.bias.numpy()] if layer.use_bias else []))
        return layer, svd
