"""Transform: Tensor-Train layers and TT-SVD of Dense kernels (archive -> archive + codecs; numpy only).

Packing
    * **TT layers** (t3f ``KerasDense``, our ``TTDense``) in a full-model .h5: the layer's cores
      become ONE ``tt`` tensor named ``<layer>/tt_matrix`` (declared as the dense ``(N, M)`` matrix,
      stored as cores; see spec/codecs.md "tt"), coded losslessly by the default preset, so
      ``unpack`` gives back the cores bit for bit. :func:`group_tt_layers` does this for every pack.
    * **TT-SVD of Dense kernels** after training: :func:`tt_svd_codecs` picks a ``tt`` codec (rank
      and/or relative-error tolerance, automatic or chosen factorisation) for ``Dense`` kernels where
      the TT form is smaller; ``squeezefmt pack --tt-rank R`` / ``--tt-tol EPS`` use it.

Metadata
    A grouped layer's weight list has one record for the TT tensor, naming the Keras weights it
    covers in order: ``{"name": "matrix/core_0:0", "tensor": "tt_dense_0/tt_matrix",
    "tt_cores": ["matrix/core_0:0", ..., "matrix/core_3:0"]}``, followed by the bias record.
    Loading such containers is :mod:`squeezefmt.keras.resolve`'s job.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

import squeezefmt.tt_math as tt_math
from ...codecs import Codec
from ...codecs.tt import TT, TTCores
from ...dtypes import dtype_name
from ...errors import CodecError, KerasFormatError
from ...presets import TensorContext, get as get_preset
from ...tt_math import TTMatrix
from ..archive import KerasArchive, weight_role

#: Keras class names of TT layers whose cores are grouped into one ``tt`` tensor.
TT_LAYER_CLASSES = ("KerasDense", "TTDense", "squeezefmt>TTDense")
#: Suffix of the tensor holding a grouped layer's cores.
TT_TENSOR_SUFFIX = "tt_matrix"

# -- packing: group TT layers' cores ------------------------------------------------------------------

def tt_chain(arrays: Sequence[np.ndarray]) -> int:
    """How many leading arrays form TT-matrix cores ``(r_{k-1}, n_k, m_k, r_k)``, ``r_0 = r_d = 1`` (0 if none)."""
    prev, d = 1, 0
    for k, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.ndim != 4 or a.shape[0] != prev or a.dtype != arrays[0].dtype:
            break
        prev = a.shape[3]
        if prev == 1:
            d = k + 1  # a valid chain ends at any core with right rank 1; take the longest
    if d and (arrays[0].dtype.kind != "f" or dtype_name(arrays[0].dtype) not in ("float16", "float32", "float64")):
        return 0
    return d


def group_tt_layers(archive: KerasArchive, codecs: Mapping[str, Codec] | None = None) -> KerasArchive:
    """Replace every TT layer's core tensors by one pre-encoded :class:`~squeezefmt.codecs.tt.TTCores` tensor.

    Layers are left alone when their cores are not a valid chain, when the cores would be larger than
    the dense matrix, or when ``codecs`` names one of their tensors explicitly.
    """
    codecs = codecs or {}
    arrays = archive.arrays
    groups: dict[str, tuple[str, list[str]]] = {}  # first core tensor -> (group tensor, core tensors)
    new_layers = []
    for layer in archive.layers:
        weights = layer["weights"]
        d = 0
        if layer.get("class_name") in TT_LAYER_CLASSES and weights:
            d = tt_chain([arrays.get(w["tensor"]) for w in weights])
        core_ws = weights[:d]
        if d == 0 or any(w["tensor"] in codecs for w in core_ws):
            new_layers.append(layer)
            continue
        tt = TTMatrix(tuple(arrays[w["tensor"]] for w in core_ws))
        if tt.params > tt.size:
            new_layers.append(layer)
            continue
        name, i = f"{layer['name']}/{TT_TENSOR_SUFFIX}", 1
        while name in arrays or any(name == g for g, _ in groups.values()):
            name, i = f"{layer['name']}/{TT_TENSOR_SUFFIX}_{i}", i + 1
        groups[core_ws[0]["tensor"]] = (name, [w["tensor"] for w in core_ws])
        record = {"name": core_ws[0]["name"], "tensor": name, "tt_cores": [w["name"] for w in core_ws]}
        if all("path" in w for w in core_ws):  # from a Keras 3 file: where each core goes back
            record["tt_paths"] = [w["path"] for w in core_ws]
        new_layers.append({**layer, "weights": [record] + list(weights[d:])})
    if not groups:
        return archive
    skip = {t for _, cores in groups.values() for t in cores}
    out: dict[str, Any] = {}
    for tensor, value in arrays.items():
        if tensor in groups:
            name, cores = groups[tensor]
            out[name] = TTCores(TTMatrix(tuple(arrays[t] for t in cores)))
        elif tensor not in skip:
            out[tensor] = value
    return dataclasses.replace(archive, arrays=out, layers=new_layers)


# -- packing: TT-SVD of Dense kernels -----------------------------------------------------------------

def parse_dims(text: str) -> tuple[list[int], list[int]]:
    """``"7,4,7,4:5,5,5,5"`` -> ``([7, 4, 7, 4], [5, 5, 5, 5])`` (the ``--tt-dims`` syntax)."""
    try:
        left, right = text.split(":")
        dims = [int(v) for v in left.split(",")], [int(v) for v in right.split(",")]
    except ValueError:
        raise CodecError(f"TT dims must look like '7,4,7,4:5,5,5,5' (input dims : output dims), got {text!r}") from None
    tt_math.check_dims(*dims)
    return dims


@dataclasses.dataclass
class TTChoice:
    """What :func:`tt_svd_codecs` decided for one Dense kernel."""

    layer: str
    tensor: str
    shape: tuple[int, int]
    input_dims: list[int]
    output_dims: list[int]
    ranks: list[int]
    params: int
    rel_error: float
    used: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tt_svd_codecs(
    archive: KerasArchive,
    *,
    max_rank: int | None = None,
    tol: float | None = None,
    layers: Iterable[str] | None = None,
    dims: Iterable[tuple[Sequence[int], Sequence[int]]] | None = None,
    d: int | None = None,
    preset: str = "lossless",
    min_ratio: float = 1.0,
) -> tuple[dict[str, Codec], list[TTChoice]]:
    """``tt`` codecs (TT-SVD) for the Dense kernels of ``archive``.

    ``layers`` restricts to those layer names (and then also accepts 2-D ``kernel`` weights of other
    or unknown classes, e.g. weights-only files); ``dims`` gives factorisations to use for kernels of
    matching shape (else :func:`~squeezefmt.tt_math.auto_dims` with ``d`` cores). A kernel is TT-coded
    when its cores are at least ``min_ratio`` times smaller than it. The cores are coded as ``preset``
    would code them (lossless by default). Returns the codecs and one :class:`TTChoice` per candidate.
    """
    if max_rank is None and tol is None:
        raise CodecError("TT-SVD needs a rank (max_rank / --tt-rank) or a tolerance (tol / --tt-tol)")
    wanted = set(layers) if layers is not None else None
    by_shape = {}
    for din, dout in dims or ():
        by_shape[(math.prod(din), math.prod(dout))] = (list(din), list(dout))
    choose = get_preset(preset)
    codecs: dict[str, Codec] = {}
    report: list[TTChoice] = []
    for layer in archive.layers:
        if wanted is not None and layer["name"] not in wanted:
            continue
        if wanted is None and layer.get("class_name") != "Dense":
            continue
        for w in layer["weights"]:
            value = archive.arrays.get(w["tensor"])
            if weight_role(w["name"]) != "kernel" or not isinstance(value, np.ndarray) or value.ndim != 2 \
                    or dtype_name(value.dtype) not in ("float16", "float32", "float64") or value.size == 0:
                continue
            din, dout = by_shape.get(value.shape, (None, None))
            if din is None:
                din, dout = tt_math.auto_dims(*value.shape, d=d)
            probe = TT(max_rank=max_rank, tol=tol, input_dims=din, output_dims=dout)
            svd = probe.decompose(value)
            tt = svd.tt
            used = tt.params * min_ratio <= tt.size
            report.append(TTChoice(layer["name"], w["tensor"], tuple(value.shape), tt.input_dims, tt.output_dims,
                                   tt.ranks, tt.params, svd.rel_error, used,
                                   "" if used else f"cores ({tt.params}) not {min_ratio}x smaller than {tt.size}"))
            if used:
                ctx = TensorContext(layer_class=layer.get("class_name"), role="kernel")
                inner = choose(w["tensor"], max(tt.cores, key=lambda c: c.size), ctx)
                codecs[w["tensor"]] = TT(inner=inner, max_rank=max_rank, tol=tol, input_dims=din, output_dims=dout)
    if wanted is not None:
        missing = wanted - {layer["name"] for layer in archive.layers}
        if missing:
            raise KerasFormatError(f"no layer named {', '.join(sorted(missing))} in this model")
    return codecs, report


@dataclasses.dataclass(frozen=True)
class TTOptions:
    """TT-SVD of Dense kernels as an option of :func:`squeezefmt.keras.pack` (see :func:`tt_svd_codecs`)."""

    max_rank: int | None = None
    tol: float | None = None
    layers: Sequence[str] | None = None
    dims: Sequence[tuple[Sequence[int], Sequence[int]]] | None = None
    d: int | None = None

    def plan(self, archive: KerasArchive, preset: str) -> tuple[dict[str, Codec], list[TTChoice], dict[str, Any]]:
        """The codecs, the per-kernel report and the ``"tt"`` packing options the container records."""
        codecs, report = tt_svd_codecs(archive, max_rank=self.max_rank, tol=self.tol, layers=self.layers,
                                       dims=self.dims, d=self.d, preset=preset)
        return codecs, report, {"max_rank": self.max_rank, "tol": self.tol, "tensors": sorted(codecs)}
