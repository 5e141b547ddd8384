"""Tensor-Train layers in Keras containers (h5py/numpy only; TensorFlow is not imported).

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

Loading (:func:`resolve_weights`, used by ``squeezefmt.keras.load`` / ``load_weights`` / ``unpack``)
    * ``"stored"``: the architecture as packed: TT layers get their cores, TT-coded Dense kernels their
      dense matrix (unpack, load_weights).
    * ``"tt"`` (``load`` default): as stored, and every ``Dense`` whose kernel is a ``tt`` tensor
      becomes a ``TTDense`` running on the cores (runtime memory of the cores, not the matrix).
    * ``"dense"`` (``load(densify=True)``): every TT matrix becomes a plain ``Dense`` kernel, TT layers
      included, so the model has only standard layers.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import tt_math
from ..codecs import Codec
from ..codecs.tt import TT, is_tt, read_tt
from ..dtypes import dtype_name
from ..errors import CodecError, KerasFormatError
from ..planner import TensorContext, preset as get_preset
from ..tt_math import TTMatrix
from .h5 import KerasArchive

#: Keras class names of TT layers whose cores are grouped into one ``tt`` tensor.
TT_LAYER_CLASSES = ("KerasDense", "TTDense", "squeezefmt>TTDense")
#: Suffix of the tensor holding a grouped layer's cores.
TT_TENSOR_SUFFIX = "tt_matrix"
MODES = ("stored", "tt", "dense")


def weight_role(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


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
    """Replace every TT layer's core tensors by one :class:`TTMatrix` tensor (see the module doc).

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
        new_layers.append({**layer, "weights": [record] + list(weights[d:])})
    if not groups:
        return archive
    skip = {t for _, cores in groups.values() for t in cores}
    out: dict[str, Any] = {}
    for tensor, value in arrays.items():
        if tensor in groups:
            name, cores = groups[tensor]
            out[name] = TTMatrix(tuple(arrays[t] for t in cores))
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


def pack_tt(h5_path, target=None, *, max_rank=None, tol=None, layers=None, dims=None, d=None,
            preset: str = "lossless", include_optimizer: bool = False, progress=None):
    """``squeezefmt.keras.pack`` with TT-SVD of the Dense kernels; returns ``(result, report)``.

    ``result`` is what ``pack`` returns (bytes when ``target`` is None); ``report`` lists a
    :class:`TTChoice` per Dense kernel considered.
    """
    import os

    from .h5 import read_h5
    from .pack import pack_archive

    archive = read_h5(h5_path, include_optimizer=include_optimizer)
    codecs, report = tt_svd_codecs(archive, max_rank=max_rank, tol=tol, layers=layers, dims=dims, d=d, preset=preset)
    options = {"preset": preset, "include_optimizer": include_optimizer,
               "tt": {"max_rank": max_rank, "tol": tol, "layers": sorted(codecs)}}
    name = os.path.basename(os.fspath(h5_path)) if isinstance(h5_path, (str, os.PathLike)) else None
    result = pack_archive(archive, target, preset=preset, codecs=codecs, options=options, progress=progress,
                          source_name=name)
    return result, report


# -- loading --------------------------------------------------------------------------------------------

def _layer_entries(config: Any) -> dict[str, list[dict]]:
    """Layer name -> the config entries (``{"class_name", "config", ...}``) with that name."""
    found: dict[str, list[dict]] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            inner = item.get("config")
            if "class_name" in item and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                found.setdefault(inner["name"], []).append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


_BASE_KEYS = ("name", "trainable", "dtype", "batch_input_shape")


def dense_to_tt_config(cfg: Mapping[str, Any], tt: TTMatrix) -> dict[str, Any]:
    out = {k: cfg[k] for k in _BASE_KEYS if k in cfg}
    out.update({"input_dims": tt.input_dims, "output_dims": tt.output_dims, "tt_rank": tt.ranks,
                "activation": cfg.get("activation"), "use_bias": bool(cfg.get("use_bias", True)),
                "bias_initializer": 0.0})
    return out


def tt_to_dense_config(cfg: Mapping[str, Any], tt_shape: tuple[int, int]) -> dict[str, Any]:
    out = {k: cfg[k] for k in _BASE_KEYS if k in cfg}
    out.update({"units": int(tt_shape[1]), "activation": cfg.get("activation") or "linear",
                "use_bias": bool(cfg.get("use_bias", True))})
    return out


def _set_class(entry: dict, class_name: str, config: dict) -> None:
    entry["class_name"] = class_name
    entry["config"] = config
    entry.pop("module", None)
    entry.pop("registered_name", None)


def resolve_weights(meta: Mapping[str, Any], f, mode: str = "stored") -> tuple[dict[str, Any], Callable[[str], np.ndarray]]:
    """Expand TT records of the Keras metadata into one record per Keras weight.

    Returns ``(meta, fetch)``: a copy of ``meta`` in which every weight record names a key that
    ``fetch(key)`` decodes (TT cores, dense matrices or plain tensors), and in which the model config
    is rewritten for ``mode`` (see the module doc). Containers without TT tensors come back unchanged
    with ``fetch = f.tensor``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    layers = meta.get("layers") or []
    has_groups = any(isinstance(w, dict) and "tt_cores" in w for layer in layers for w in layer.get("weights", []))
    has_tt = has_groups or any(isinstance(w, dict) and is_tt(f, w.get("tensor"))
                               for layer in layers for w in layer.get("weights", []))
    if not has_tt:
        return dict(meta), f.tensor
    meta = copy.deepcopy(dict(meta))
    config = None
    if mode != "stored" and meta.get("kind") == "model" and meta.get("model_config"):
        try:
            config = json.loads(meta["model_config"])
        except json.JSONDecodeError as exc:
            raise KerasFormatError(f"stored model_config is not valid JSON: {exc}") from None
    entries = _layer_entries(config) if config is not None else {}
    cache: dict[str, TTMatrix] = {}
    getters: dict[str, Callable[[], np.ndarray]] = {}
    changed = False

    def tt_of(tensor: str) -> TTMatrix:
        if tensor not in cache:
            cache[tensor] = read_tt(f, tensor)
        return cache[tensor]

    def new_key(base: str) -> str:
        key, i = base, 0
        while key in getters or key in f:
            i += 1
            key = f"{base}#{i}"
        return key

    def core_records(tensor: str, names: Sequence[str]) -> list[dict]:
        tt = tt_of(tensor)
        if len(names) != len(tt.cores):
            raise KerasFormatError(f"tensor {tensor!r} has {len(tt.cores)} TT cores, its layer lists {len(names)}")
        out = []
        for k, wname in enumerate(names):
            key = new_key(f"{tensor}#core_{k}")
            getters[key] = (lambda t=tensor, k=k: tt_of(t).cores[k])
            out.append({"name": wname, "tensor": key})
        return out

    def dense_record(tensor: str, wname: str) -> dict:
        key = new_key(f"{tensor}#dense")
        getters[key] = lambda t=tensor: tt_of(t).full()
        return {"name": wname, "tensor": key}

    for layer in meta["layers"]:
        weights = layer.get("weights", [])
        found = entries.get(layer["name"], [])
        entry = found[0] if len(found) == 1 else None
        grouped = [w for w in weights if isinstance(w, dict) and "tt_cores" in w]
        if grouped:
            if len(grouped) != 1 or weights[0] is not grouped[0] or not isinstance(grouped[0]["tt_cores"], list) \
                    or not all(isinstance(n, str) for n in grouped[0]["tt_cores"]) or not is_tt(f, grouped[0].get("tensor")):
                raise KerasFormatError(f"layer {layer['name']!r}: malformed TT weight record in the Keras metadata")
            rec = grouped[0]
            if mode == "dense" and entry is not None and entry.get("class_name") in TT_LAYER_CLASSES:
                tt = tt_of(rec["tensor"])
                _set_class(entry, "Dense", tt_to_dense_config(entry["config"], tt.shape))
                layer["class_name"] = "Dense"
                layer["weights"] = [dense_record(rec["tensor"], "kernel:0")] + weights[1:]
                changed = True
            else:
                layer["weights"] = core_records(rec["tensor"], rec["tt_cores"]) + weights[1:]
            continue
        if mode == "tt" and entry is not None and entry.get("class_name") == "Dense" and weights \
                and weight_role(weights[0]["name"]) == "kernel" and is_tt(f, weights[0]["tensor"]):
            kernel = weights[0]
            tt = tt_of(kernel["tensor"])
            _set_class(entry, "TTDense", dense_to_tt_config(entry["config"], tt))
            layer["class_name"] = "TTDense"
            prefix = kernel["name"].rpartition("/")[0]
            names = [f"{prefix + '/' if prefix else ''}core_{k}:0" for k in range(len(tt.cores))]
            layer["weights"] = core_records(kernel["tensor"], names) + weights[1:]
            changed = True
    if changed:
        meta["model_config"] = json.dumps(config)

    def fetch(key: str) -> np.ndarray:
        getter = getters.get(key)
        return getter() if getter is not None else f.tensor(key)

    return meta, fetch


def weight_arrays(meta: Mapping[str, Any], fetch) -> dict[str, np.ndarray]:
    """Every weight (and optimizer) array the expanded ``meta`` names, keyed by its ``tensor``."""
    names = [w["tensor"] for layer in meta["layers"] for w in layer["weights"]]
    names += [w["tensor"] for w in meta.get("optimizer") or []]
    return {n: fetch(n) for n in names}
