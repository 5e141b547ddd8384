"""Keras .h5 <-> .sqz conversion (h5py only; TensorFlow is not imported).

``pack`` reads the .h5 with h5py (never ``load_model``: an .h5 can carry Lambda bytecode), lets the
planner choose a codec per weight (knowing each weight's layer class and role), and stores the model
config and the layer -> weight order in the container metadata under ``"keras"``. ``unpack`` writes a
Keras .h5 back that ``tf.keras.models.load_model`` opens.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..api import open as open_sqz
from ..api import save
from ..codecs import Codec
from ..errors import KerasFormatError
from ..planner import TensorContext
from .h5 import KerasArchive, write_h5


def weight_role(weight_name: str) -> str:
    """``"dense/kernel:0"`` -> ``"kernel"``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def contexts_for(archive: KerasArchive) -> dict[str, TensorContext]:
    out = {}
    for layer in archive.layers:
        for w in layer["weights"]:
            role = w["role"] if "role" in w else weight_role(w["name"])  # Keras 3 files: role None when unknown
            out[w["tensor"]] = TensorContext(layer_class=layer.get("class_name"), role=role)
    for w in archive.optimizer or []:
        out[w["tensor"]] = TensorContext(layer_class=None, role="optimizer")
    return out


def pack_archive(
    archive: KerasArchive,
    target=None,
    *,
    preset: str = "lossless",
    codecs: Mapping[str, Codec] | None = None,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    progress=None,
    source_name: str | None = None,
):
    """Write an already-read Keras archive as a .sqz container."""
    from .epr_pack import rewrite_epr  # noqa: PLC0415 - EPR-trained layers -> epr streams

    archive, epr_codecs = rewrite_epr(archive)
    if epr_codecs:
        codecs = {**epr_codecs, **dict(codecs or {})}
    from .tt_pack import group_tt_layers  # noqa: PLC0415 - t3f/TTDense cores -> one tt tensor per layer

    archive = group_tt_layers(archive, codecs)
    extra = {"keras": archive.metadata(), "packing": dict(options or {})}
    if archive.source_sha256 or source_name:
        extra["source"] = {"sha256": archive.source_sha256, "file": source_name}
    return save(
        archive.arrays, target, preset=preset, codecs=codecs, metadata=metadata,
        contexts=contexts_for(archive), progress=progress, _extra_metadata=extra,
    )


def pack(
    h5_path,
    target=None,
    *,
    preset: str = "lossless",
    include_optimizer: bool = False,
    codecs: Mapping[str, Codec] | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress=None,
):
    """Convert a Keras file into a .sqz container: a legacy .h5 (full model or weights only, Keras 2
    or 3), a Keras 3 ``.keras`` archive or a Keras 3 ``.weights.h5`` (see keras/formats/).

    Returns the container bytes when ``target`` is None. Optimizer state is left out unless
    ``include_optimizer`` is set.
    """
    from .formats.source import read_source  # noqa: PLC0415 - .h5, .keras or Keras 3 .weights.h5

    archive = read_source(h5_path, include_optimizer=include_optimizer)
    options = {"preset": preset, "include_optimizer": include_optimizer}
    name = os.path.basename(os.fspath(h5_path)) if isinstance(h5_path, (str, os.PathLike)) else None
    return pack_archive(archive, target, preset=preset, codecs=codecs, metadata=metadata,
                        options=options, progress=progress, source_name=name)


def keras_metadata(f) -> dict[str, Any]:
    """The ``"keras"`` metadata of an open container, or a clear error when it has none."""
    meta = f.metadata().get("keras")
    if not isinstance(meta, dict) or not isinstance(meta.get("layers"), list):
        raise KerasFormatError("this container holds no Keras model (no 'keras' metadata); use squeezefmt.open()")
    return meta


def _writer(target: str, meta: Mapping[str, Any]):
    """The writer for ``target``'s extension: ``.keras`` and ``.weights.h5`` (from Keras 3 files), else .h5."""
    if target.endswith(".keras"):
        from .formats.keras_v3_write import write_keras_zip  # noqa: PLC0415

        return write_keras_zip
    if target.endswith(".weights.h5") and meta.get("keras_v3"):
        from .formats.keras_v3_write import write_weights  # noqa: PLC0415

        return write_weights
    return write_h5


def unpack(sqz_source, h5_target) -> None:
    """Write the Keras file a container was packed from (weights as decoded).

    The target's extension picks the format: ``.keras`` (a container packed from a Keras 3 ``.keras``),
    ``.weights.h5`` (packed from a Keras 3 ``.keras`` or ``.weights.h5``), anything else a legacy .h5.
    """
    with open_sqz(sqz_source) as f:
        from .tt_pack import resolve_weights, weight_arrays  # noqa: PLC0415

        meta, fetch = resolve_weights(keras_metadata(f), f, "stored")  # a TT tensor -> its layer's cores
        arrays = weight_arrays(meta, fetch)
    write = _writer(os.fspath(h5_target), meta)
    tmp = f"{os.fspath(h5_target)}.tmp-{os.getpid()}"
    try:
        write(tmp, meta, arrays)
        os.replace(tmp, h5_target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
