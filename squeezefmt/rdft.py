"""The real DFT (RDFT) reparameterisation of convolution kernels used by EPR (numpy only).

The TFC tutorial "Scalable model compression" stores a Keras conv kernel of shape ``(H, W, I, O)``
as its 2-D real DFT over the spatial dimensions, with the real and imaginary parts as a last axis
of two, scaled to be orthonormal::

    latent = rfft2(kernel.transpose(2, 3, 0, 1)) / sqrt(H * W)      # (I, O, H, W // 2 + 1) complex
    latent = stack([latent.real, latent.imag], axis=-1)             # (I, O, H, W // 2 + 1, 2)

and back with ``irfft2(complex(latent) * sqrt(H * W), s=(H, W)).transpose(2, 3, 0, 1)``. (The
tutorial divides by ``kernel_size``, which is ``sqrt(H * W)`` for its square kernels.) The latent
has slightly more numbers than the kernel (30 for 25 at 5x5): the inverse ignores the parts that a
real kernel's transform cannot have (the imaginary part of the DC bin, the second half of the
conjugate-symmetric column 0), exactly as ``tf.signal.irfft2d`` does, so any latent decodes.

Everything is computed in float64 and returned as float32 by default; TensorFlow's float32 FFT
agrees to about 1e-7 relative.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["rdft_shape", "kernel_shape_from_rdft", "to_rdft", "from_rdft"]

#: (I, O) pairs transformed per numpy call in :func:`from_rdft` (bounds the temporary memory).
_CHUNK = 1 << 14


def rdft_shape(kernel_shape) -> tuple[int, ...]:
    """Latent shape ``(I, O, H, W // 2 + 1, 2)`` of a kernel of shape ``(H, W, I, O)``."""
    h, w, i, o = (int(d) for d in kernel_shape)
    return (i, o, h, w // 2 + 1, 2)


def kernel_shape_from_rdft(latent_shape, width: int) -> tuple[int, ...]:
    """Kernel shape ``(H, W, I, O)`` of an RDFT latent; ``width`` (W) is needed as ``W // 2 + 1`` loses it."""
    i, o, h, half, two = (int(d) for d in latent_shape)
    if two != 2 or half != width // 2 + 1:
        raise ValueError(f"latent shape {tuple(latent_shape)} is not the RDFT of a kernel of width {width}")
    return (h, int(width), i, o)


def _scale(h: int, w: int) -> float:
    return math.sqrt(h * w)


def to_rdft(kernel: np.ndarray, dtype=np.float32) -> np.ndarray:
    """The orthonormal RDFT latent of a ``(H, W, I, O)`` kernel."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"RDFT needs a rank-4 (H, W, I, O) kernel, got shape {kernel.shape}")
    h, w = kernel.shape[:2]
    f = np.fft.rfft2(np.transpose(kernel.astype(np.float64), (2, 3, 0, 1)), axes=(-2, -1))
    out = np.stack([f.real, f.imag], axis=-1) / _scale(h, w)
    return out.astype(dtype, copy=False)


def from_rdft(latent: np.ndarray, width: int, dtype=np.float32) -> np.ndarray:
    """The ``(H, W, I, O)`` kernel of an RDFT latent ``(I, O, H, W // 2 + 1, 2)`` (any values)."""
    latent = np.asarray(latent)
    h, w, i, o = kernel_shape_from_rdft(latent.shape, width)
    flat = latent.reshape(i * o, h, w // 2 + 1, 2)
    out = np.empty((h, w, i * o), dtype=dtype)
    scale = _scale(h, w)
    for start in range(0, i * o, _CHUNK):
        part = flat[start:start + _CHUNK].astype(np.float64)
        c = (part[..., 0] + 1j * part[..., 1]) * scale
        spatial = np.fft.irfft2(c, s=(h, w), axes=(-2, -1))  # (n, H, W)
        out[:, :, start:start + _CHUNK] = np.transpose(spatial, (1, 2, 0))
    return out.reshape(h, w, i, o)
