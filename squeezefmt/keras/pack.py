"""Keras file <-> .sqz conversion (h5py/numpy only; TensorFlow is not imported).

``pack`` reads the file (:func:`.formats.read_archive`; never ``load_model``: an .h5 can carry
Lambda bytecode), applies the transforms (EPR-trained layers -> ``epr`` latents, TT layers -> one
``tt`` tensor each, optionally TT-SVD of Dense kernels), lets the presets choose a codec per weight
(knowing each weight's layer class and role), and stores the model config and the layer -> weight
order in the container metadata under ``"keras"`` (:mod:`.archive`). ``unpack`` writes a Keras .h5
back that ``tf.keras.models.load_model`` opens.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..api import open as open_sqz
from ..api import save
from ..codecs import Codec
from ..container.limits import DEFAULT_LIMITS, Limits
from .archive import KerasArchive, keras_metadata
from .formats import read_archive
from .formats.h5 import write_h5
from .resolve import resolve_weights, weight_arrays
from .transforms.epr import rewrite_epr
from .transforms.tt import TTChoice, TTOptions, group_tt_layers


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
    tt: TTOptions | None = None,
    tt_report: list[TTChoice] | None = None,
    canonical_zeros: bool | None = None,
    epr_float16_steps: bool = False,
    record_source: bool = False,
):
    """Write an already-read Keras archive as a .sqz container.

    ``tt``: TT-SVD of the Dense kernels (its choices are appended to ``tt_report`` when given, and
    recorded under ``"tt"`` in the packing options). ``canonical_zeros``: -0.0 -> +0.0 first (None:
    the preset's default; see ``squeezefmt.save``). ``epr_float16_steps``: round EPR log-steps to
    float16 even where that changes them (the tutorial's storage; by default they are float16 only
    where that is exact, else kept as float32 with a warning). ``record_source``: store the source
    file's name and SHA-256 under ``metadata["source"]`` (off by default: about 90 header bytes that
    nothing needs to decode, a large share of a tiny model's file).
    """
    options = dict(options or {})
    if tt is not None:
        tt_codecs, report, options["tt"] = tt.plan(archive, preset)
        codecs = {**dict(codecs or {}), **tt_codecs}
        if tt_report is not None:
            tt_report.extend(report)
    archive = rewrite_epr(archive, float16_steps=epr_float16_steps)  # EPR-trained layers -> epr latents
    archive = group_tt_layers(archive, codecs)     # t3f/TTDense cores -> one pre-encoded tt tensor per layer
    extra = {"keras": archive.metadata(), "packing": options}
    if record_source and (archive.source_sha256 or source_name):
        extra["source"] = {"sha256": archive.source_sha256, "file": source_name}
    return save(
        archive.arrays, target, preset=preset, codecs=codecs, metadata=metadata,
        contexts=archive.contexts(), progress=progress, _extra_metadata=extra, canonical_zeros=canonical_zeros,
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
    tt: TTOptions | None = None,
    tt_report: list[TTChoice] | None = None,
    canonical_zeros: bool | None = None,
    epr_float16_steps: bool = False,
    record_source: bool = False,
):
    """Convert a Keras file into a .sqz container: a legacy .h5 (full model or weights only, Keras 2
    or 3), a Keras 3 ``.keras`` archive or a Keras 3 ``.weights.h5`` (see keras/formats/).

    Returns the container bytes when ``target`` is None. Optimizer state is left out unless
    ``include_optimizer`` is set. ``tt=TTOptions(max_rank=8)``: TT-SVD of the Dense kernels (lossy;
    what ``squeezefmt pack --tt-rank`` does). ``canonical_zeros``, ``epr_float16_steps``,
    ``record_source``: see :func:`pack_archive`.
    """
    archive = read_archive(h5_path, include_optimizer=include_optimizer)
    options = {"preset": preset, "include_optimizer": include_optimizer}
    name = os.path.basename(os.fspath(h5_path)) if isinstance(h5_path, (str, os.PathLike)) else None
    return pack_archive(archive, target, preset=preset, codecs=codecs, metadata=metadata, options=options,
                        progress=progress, source_name=name, tt=tt, tt_report=tt_report,
                        canonical_zeros=canonical_zeros, epr_float16_steps=epr_float16_steps,
                        record_source=record_source)


def pack_tt(h5_path, target=None, *, max_rank=None, tol=None, layers=None, dims=None, d=None,
            preset: str = "lossless", include_optimizer: bool = False, progress=None):
    """``pack(..., tt=TTOptions(...))``, returning ``(result, report)`` (kept for squeezefmt 0.1 callers)."""
    report: list[TTChoice] = []
    result = pack(h5_path, target, preset=preset, include_optimizer=include_optimizer, progress=progress,
                  tt=TTOptions(max_rank=max_rank, tol=tol, layers=layers, dims=dims, d=d), tt_report=report)
    return result, report


def _writer(target: str, meta: Mapping[str, Any]):
    """The writer for ``target``'s extension: ``.keras`` and ``.weights.h5`` (from Keras 3 files), else .h5."""
    if target.endswith(".keras"):
        from .formats.keras_v3_write import write_keras_zip  # noqa: PLC0415

        return write_keras_zip
    if target.endswith(".weights.h5") and meta.get("keras_v3"):
        from .formats.keras_v3_write import write_weights  # noqa: PLC0415

        return write_weights
    return write_h5


def unpack(sqz_source, h5_target, *, limits: Limits = DEFAULT_LIMITS) -> None:
    """Write the Keras file a container was packed from (weights as decoded).

    The target's extension picks the format: ``.keras`` (a container packed from a Keras 3 ``.keras``),
    ``.weights.h5`` (packed from a Keras 3 ``.keras`` or ``.weights.h5``), anything else a legacy .h5.
    ``limits``: the reader's limits (``max_decoded_bytes`` caps what an untrusted container may decode
    to; over it, :class:`~squeezefmt.errors.LimitError` before anything is decoded or written).
    """
    with open_sqz(sqz_source, limits=limits) as f:
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
