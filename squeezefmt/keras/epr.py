"""EPR training layers: train Keras models whose weights pack into tiny ``epr`` streams.

Entropy Penalized Reparameterization, as in the TFC tutorial "Scalable model compression"
(Oktay et al. 2020): every weight is a *latent* with a trainable quantization *log-step*; the
forward pass uses ``round(latent / exp(log_step)) * exp(log_step)`` (straight-through rounding),
and a :class:`PowerLawRegularizer` penalises ``log((|latent / step| + alpha) / alpha)``, which
matches the length of the run-length Elias gamma code the latents are stored with. Conv kernels
are reparameterised as their orthonormal real DFT (``(I, O, H, W // 2 + 1, 2)``) with one log-step
per frequency. The maths, weight names and initial values are the tutorial's::

    import tensorflow as tf
    from squeezefmt.keras.epr import EPRConv2D, EPRDense, PowerLawRegularizer

    reg = PowerLawRegularizer(lmbda=2.0 / 1_256_080)   # lambda normalised by the parameter count
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        EPRConv2D(20, 5, strides=2, padding="same", activation="leaky_relu", regularizer=reg),
        EPRConv2D(50, 5, strides=2, padding="same", activation="leaky_relu", regularizer=reg),
        tf.keras.layers.Flatten(),
        EPRDense(500, activation="leaky_relu", regularizer=reg),
        EPRDense(10, regularizer=reg),
    ])
    model.compile(...); model.fit(...)            # model.losses carries the penalty
    model.save("epr.h5")                          # an ordinary Keras .h5 (custom layer classes)

    squeezefmt.keras.pack("epr.h5", "epr.sqz")    # latents stored exactly as epr streams
    plain = squeezefmt.keras.load("epr.sqz")      # ordinary Dense / Conv2D layers, decoded weights

:class:`EPRDense` and :class:`EPRConv2D` subclass ``Dense`` and ``Conv2D`` (same arguments, same
``call``), with the weights ``kernel_latent``, ``kernel_log_step``, ``bias_latent`` and
``bias_log_step``; ``layer.kernel`` / ``layer.bias`` are the quantized values. ``squeezefmt pack``
recognises these layers (and any layer with the tutorial's weight names) and stores the integer
latents and float16 log-steps; for these two classes it rewrites the stored model config to
plain ``Dense`` / ``Conv2D`` so that the packed model (and ``squeezefmt unpack``'s .h5) loads
without squeezefmt. :func:`make_compressible` turns an ordinary model into an EPR one (to
fine-tune it with the penalty, like the tutorial's ``decompress_layer_with_penalty``).
"""
from __future__ import annotations

import math

import tensorflow as tf

from .layers import register_layer

__all__ = [
    "PowerLawRegularizer", "EPRDense", "EPRConv2D", "round_st", "quantize", "to_rdft", "from_rdft",
    "make_compressible", "penalty_scale", "EPR_LAYER_CLASSES",
]

PACKAGE = "squeezefmt"
DEFAULT_LOG_STEP = -4.0  # the tutorial's initial log-step (step ~ 0.018)


@tf.custom_gradient
def round_st(x):
    """``tf.round`` with a straight-through (identity) gradient, like ``tfc.round_st``."""
    return tf.round(x), lambda dy: dy


def quantize(latent, log_step):
    """``round_st(latent / exp(log_step)) * exp(log_step)``: the tutorial's ``quantize``."""
    step = tf.exp(log_step)
    return round_st(latent / step) * step


def to_rdft(kernel):
    """``(H, W, I, O)`` kernel -> orthonormal RDFT latent ``(I, O, H, W // 2 + 1, 2)`` (float)."""
    h, w = int(kernel.shape[0]), int(kernel.shape[1])
    k = tf.transpose(kernel, (2, 3, 0, 1))
    f = tf.signal.rfft2d(k)
    return tf.stack([tf.math.real(f), tf.math.imag(f)], axis=-1) / math.sqrt(h * w)


def from_rdft(latent, kernel_size):
    """Inverse of :func:`to_rdft` for a kernel of spatial size ``kernel_size = (H, W)``."""
    h, w = (int(d) for d in kernel_size)
    latent = latent * math.sqrt(h * w)
    c = tf.dtypes.complex(latent[..., 0], latent[..., 1])
    k = tf.signal.irfft2d(c, fft_length=(h, w))
    return tf.transpose(k, (2, 3, 0, 1))


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class PowerLawRegularizer(tf.keras.regularizers.Regularizer):
    """``lmbda * sum(log((|x| + alpha) / alpha))``: tfc's ``PowerLawEntropyModel.penalty``, summed.

    Applied to ``latent / exp(log_step)``, it approximates the code length of the gamma-coded
    integer latents (in nats, up to a constant), so ``lmbda`` trades size against accuracy. The
    tutorial normalises it by the model's parameter count: ``PowerLawRegularizer(2 / n_params)``;
    :func:`penalty_scale` does that.
    """

    def __init__(self, lmbda: float, alpha: float = 1e-2):
        if not alpha > 0:
            raise ValueError("alpha must be greater than 0")
        self.lmbda = float(lmbda)
        self.alpha = float(alpha)

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        return self.lmbda * tf.reduce_sum(tf.math.log((tf.abs(x) + self.alpha) / self.alpha))

    def get_config(self):
        return {"lmbda": self.lmbda, "alpha": self.alpha}


def penalty_scale(lmbda: float, model_or_count, alpha: float = 1e-2) -> PowerLawRegularizer:
    """``PowerLawRegularizer(lmbda / n)``, n the parameter count of a model (or an int)."""
    n = model_or_count if isinstance(model_or_count, int) else model_or_count.count_params()
    return PowerLawRegularizer(lmbda / n, alpha=alpha)


def _get_regularizer(value):
    if value is None or isinstance(value, PowerLawRegularizer):
        return value
    if isinstance(value, (int, float)):
        return PowerLawRegularizer(float(value))
    if isinstance(value, dict):
        return tf.keras.regularizers.deserialize(value, custom_objects={
            "PowerLawRegularizer": PowerLawRegularizer, f"{PACKAGE}>PowerLawRegularizer": PowerLawRegularizer})
    if callable(value):
        return value
    raise ValueError(f"regularizer must be a PowerLawRegularizer, a float lambda or None, got {value!r}")


class _EPRMixin:
    """Shared parts of the EPR layers: log-step variables, penalties, config."""

    def _epr_init(self, regularizer, log_step_init):
        self.regularizer = _get_regularizer(regularizer)
        self.log_step_init = float(log_step_init)

    def _epr_weights(self, kernel_latent_shape, kernel_step_shape, kernel_init, bias_shape):
        self.kernel_latent = self.add_weight(
            "kernel_latent", shape=kernel_latent_shape, initializer=kernel_init, dtype=self.dtype, trainable=True)
        self.kernel_log_step = self.add_weight(
            "kernel_log_step", shape=kernel_step_shape,
            initializer=tf.keras.initializers.Constant(self.log_step_init), dtype=self.dtype, trainable=True)
        if self.use_bias:
            self.bias_latent = self.add_weight(
                "bias_latent", shape=bias_shape, initializer=self.bias_initializer, dtype=self.dtype, trainable=True)
            self.bias_log_step = self.add_weight(
                "bias_log_step", shape=(),
                initializer=tf.keras.initializers.Constant(self.log_step_init), dtype=self.dtype, trainable=True)
        if self.regularizer is not None:
            self.add_loss(lambda: self.regularizer(self.kernel_latent / tf.exp(self.kernel_log_step)))
            if self.use_bias:
                self.add_loss(lambda: self.regularizer(self.bias_latent / tf.exp(self.bias_log_step)))
        if self.kernel_regularizer is not None:
            self.add_loss(lambda: self.kernel_regularizer(self.kernel))
        if self.use_bias and self.bias_regularizer is not None:
            self.add_loss(lambda: self.bias_regularizer(self.bias))

    @property
    def bias(self):
        if not self.use_bias:
            return None
        return quantize(self.bias_latent, self.bias_log_step)

    def _epr_config(self, config):
        config.update({
            "regularizer": tf.keras.regularizers.serialize(self.regularizer) if self.regularizer is not None else None,
            "log_step_init": self.log_step_init,
        })
        return config


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class EPRDense(_EPRMixin, tf.keras.layers.Dense):
    """``Dense`` with a quantized, entropy-penalised kernel and bias (one log-step each).

    Extra arguments: ``regularizer`` (a :class:`PowerLawRegularizer`, a float lambda, or None for
    no penalty) and ``log_step_init`` (initial log-step, -4 as in the tutorial).
    """

    def __init__(self, units, regularizer=None, log_step_init=DEFAULT_LOG_STEP, **kwargs):
        super().__init__(units, **kwargs)
        self._epr_init(regularizer, log_step_init)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        last_dim = tf.compat.dimension_value(input_shape[-1])
        if last_dim is None:
            raise ValueError(f"the last dimension of the inputs to {self.name} must be defined, got {input_shape}")
        self.input_spec = tf.keras.layers.InputSpec(min_ndim=2, axes={-1: last_dim})
        self._epr_weights((last_dim, self.units), (), self.kernel_initializer, (self.units,))
        self.built = True

    @property
    def kernel(self):
        return quantize(self.kernel_latent, self.kernel_log_step)

    def get_config(self):
        return self._epr_config(super().get_config())


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class EPRConv2D(_EPRMixin, tf.keras.layers.Conv2D):
    """``Conv2D`` whose kernel is an RDFT latent with per-frequency log-steps (the tutorial's layer).

    The latent has shape ``(I, O, H, W // 2 + 1, 2)``; ``kernel_log_step`` has shape
    ``(H, W // 2 + 1, 2)`` (``per_frequency_steps=False``: one scalar). The bias has one log-step.
    """

    def __init__(self, filters, kernel_size, regularizer=None, log_step_init=DEFAULT_LOG_STEP,
                 per_frequency_steps=True, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._epr_init(regularizer, log_step_init)
        self.per_frequency_steps = bool(per_frequency_steps)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        input_channel = self._get_input_channel(input_shape)
        if input_channel % self.groups != 0:
            raise ValueError(f"{self.name}: input channels {input_channel} not divisible by groups={self.groups}")
        kh, kw = self.kernel_size
        kernel_shape = (kh, kw, input_channel // self.groups, self.filters)
        self.compute_output_shape(input_shape)  # validates the input shape
        latent_shape = (input_channel // self.groups, self.filters, kh, kw // 2 + 1, 2)
        step_shape = (kh, kw // 2 + 1, 2) if self.per_frequency_steps else ()
        base_init = self.kernel_initializer

        def kernel_init(shape, dtype=None):
            return to_rdft(base_init(kernel_shape, dtype=dtype))

        self._epr_weights(latent_shape, step_shape, kernel_init, (self.filters,))
        self.input_spec = tf.keras.layers.InputSpec(min_ndim=self.rank + 2,
                                                    axes={self._get_channel_axis(): input_channel})
        self.built = True

    @property
    def kernel(self):
        return from_rdft(quantize(self.kernel_latent, self.kernel_log_step), self.kernel_size)

    def get_config(self):
        config = self._epr_config(super().get_config())
        config["per_frequency_steps"] = self.per_frequency_steps
        return config


#: The EPR layer classes and the plain Keras classes they pack to.
EPR_LAYER_CLASSES = {"EPRDense": "Dense", "EPRConv2D": "Conv2D"}

register_layer("EPRDense", lambda: EPRDense)
register_layer("EPRConv2D", lambda: EPRConv2D)
register_layer("PowerLawRegularizer", lambda: PowerLawRegularizer)
register_layer(f"{PACKAGE}>EPRDense", lambda: EPRDense)
register_layer(f"{PACKAGE}>EPRConv2D", lambda: EPRConv2D)
register_layer(f"{PACKAGE}>PowerLawRegularizer", lambda: PowerLawRegularizer)


def make_compressible(model, regularizer=None, log_step_init: float = DEFAULT_LOG_STEP, source=None):
    """A copy of ``model`` with every top-level ``Dense`` / ``Conv2D`` replaced by its EPR layer.

    The latents start at the layer's current weights (the RDFT of conv kernels); the log-steps at
    ``log_step_init``. Use it to fine-tune an ordinary model with the penalty. Other layers are
    cloned with their weights.

    ``source``: the .sqz container (path, bytes, file object) ``model`` was loaded from. Weights
    stored there as ``epr`` streams then start at their exact stored latents and log-steps (the
    tutorial's "decompress with penalty" path: training resumes where it stopped, up to the
    float16 rounding of the steps); the others as above.
    """
    def clone(layer):
        cls = type(layer)
        if cls is tf.keras.layers.Dense:
            return EPRDense.from_config({**layer.get_config(), "regularizer": regularizer,
                                         "log_step_init": log_step_init})
        if cls is tf.keras.layers.Conv2D:
            return EPRConv2D.from_config({**layer.get_config(), "regularizer": regularizer,
                                          "log_step_init": log_step_init})
        return cls.from_config(layer.get_config())

    new = tf.keras.models.clone_model(model, clone_function=clone)
    for old_layer, new_layer in zip(model.layers, new.layers):
        if isinstance(new_layer, EPRConv2D) and not isinstance(old_layer, EPRConv2D):
            new_layer.kernel_latent.assign(to_rdft(old_layer.kernel))
            if new_layer.use_bias:
                new_layer.bias_latent.assign(old_layer.bias)
        elif isinstance(new_layer, EPRDense) and not isinstance(old_layer, EPRDense):
            new_layer.kernel_latent.assign(old_layer.kernel)
            if new_layer.use_bias:
                new_layer.bias_latent.assign(old_layer.bias)
        else:
            new_layer.set_weights(old_layer.get_weights())
    if source is not None:
        _restore_latents(new, source)
    return new


def _restore_latents(model, source) -> None:
    """Set EPR layers' latents / log-steps from the ``epr`` streams of a container (see make_compressible)."""
    import numpy as np  # noqa: PLC0415

    from ..api import open as open_sqz  # noqa: PLC0415
    from ..codecs import TensorSpec  # noqa: PLC0415
    from ..codecs.epr import read_latents  # noqa: PLC0415
    from .archive import keras_metadata, weight_role  # noqa: PLC0415

    with open_sqz(source) as f:
        stored = {layer["name"]: layer for layer in keras_metadata(f)["layers"]}
        for layer in model.layers:
            if not isinstance(layer, (EPRDense, EPRConv2D)) or layer.name not in stored:
                continue
            for w in stored[layer.name]["weights"]:
                part = weight_role(w["name"])
                if part not in ("kernel", "bias") or f.info(w["tensor"]).codec != "epr":
                    continue
                if part == "bias" and not layer.use_bias:
                    continue
                e = f.entry(w["tensor"])
                q, log_steps, transform = read_latents(f.streams(w["tensor"])[0], e.side or {},
                                                       TensorSpec(e.dtype, tuple(e.shape)))
                latent_var = getattr(layer, f"{part}_latent")
                step_var = getattr(layer, f"{part}_log_step")
                want_rdft = isinstance(layer, EPRConv2D) and part == "kernel"
                if want_rdft != (transform == "rdft") or tuple(q.shape) != tuple(latent_var.shape):
                    continue  # stored in another representation: keep the latent made from the weights
                steps = log_steps.astype(np.float32)
                latent = q.astype(np.float32) * np.exp(steps)
                target_steps = np.broadcast_to(steps, tuple(step_var.shape)) if steps.ndim <= step_var.shape.rank \
                    else None
                if target_steps is None:
                    continue
                latent_var.assign(latent)
                step_var.assign(np.array(target_steps))
