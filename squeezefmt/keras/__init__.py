"""Keras adapter: pack .h5 files, rebuild models from .sqz, save models into .sqz.

``pack``/``unpack`` need only h5py; ``load``/``save``/``load_weights`` import TensorFlow on first use.
Importing this package imports neither.

    import squeezefmt.keras
    squeezefmt.keras.pack("model.h5", "model.sqz")
    model = squeezefmt.keras.load("model.sqz")        # a tf.keras.Model, weights set
"""
from .pack import pack, pack_tt, unpack
from .transforms.tt import TTOptions

__all__ = ["pack", "pack_tt", "unpack", "TTOptions", "load", "load_weights", "save"]


def __getattr__(name):
    if name in ("load", "load_weights", "save", "build_model", "assign_weights"):
        import squeezefmt.keras.model as model  # noqa: PLC0415 - imports TensorFlow lazily

        return getattr(model, name)
    if name == "TTDense":  # Tensor-Train Dense layer (t3f KerasDense compatible); imports TensorFlow
        from .tt_layer import TTDense  # noqa: PLC0415

        return TTDense
    raise AttributeError(f"module 'squeezefmt.keras' has no attribute {name!r}")
