"""Keras layers squeezefmt provides, and the custom-object table used when rebuilding models.

Codec-specific layers (EPR training layers, the Tensor-Train Dense layer) register themselves here
through :func:`register_layer`; :func:`custom_objects` hands them to Keras when a stored model config
names them.
"""
from __future__ import annotations

from typing import Any, Callable

# name -> zero-argument factory returning the class (so TensorFlow is imported only when needed)
_LAYER_FACTORIES: dict[str, Callable[[], Any]] = {}


def register_layer(name: str, factory: Callable[[], Any]) -> None:
    """Make the Keras class returned by ``factory()`` available under ``name`` when loading."""
    _LAYER_FACTORIES[name] = factory


def custom_objects() -> dict[str, Any]:
    return {name: factory() for name, factory in _LAYER_FACTORIES.items()}


def _tt_dense():
    from .tt_layer import TTDense  # noqa: PLC0415 - imports TensorFlow

    return TTDense


# Tensor-Train Dense layer; also stands in for t3f's KerasDense, so t3f models load without t3f.
register_layer("TTDense", _tt_dense)
register_layer("KerasDense", _tt_dense)
