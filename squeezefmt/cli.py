"""The ``squeezefmt`` command line: pack, unpack, info, verify.

Every command is a thin shell over the library API; errors from squeezefmt are printed as one
clear line on stderr with a non-zero exit status (1 for bad input, 2 for usage errors).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import click

from ._version import __version__
from .api import open as open_sqz
from .container.limits import DEFAULT_LIMITS, Limits, parse_size
from .errors import SqueezeError
from . import presets as preset_registry


class PresetName(click.ParamType):
    """A preset name, checked against the registry when the command runs (never a list frozen at import)."""

    name = "preset"

    def get_metavar(self, param, *args, **kwargs) -> str:
        return "[" + "|".join(preset_registry.names()) + "]"

    def convert(self, value, param, ctx):
        try:
            preset_registry.get(value)
        except SqueezeError as exc:
            self.fail(str(exc), param, ctx)
        return value


class PresetOption(click.Option):
    """``--preset``, whose help lists the presets registered when the help is shown."""

    def get_help_record(self, ctx):
        self.help = "Codec policy: " + "; ".join(f"{k}: {v}" for k, v in preset_registry.help_texts().items())
        return super().get_help_record(ctx)


def _fail(exc: Exception) -> None:
    click.echo(f"squeezefmt: error: {exc}", err=True)
    sys.exit(1)


def _parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_max_decoded = click.option(
    "--max-decoded-bytes", callback=_parse_size, default=None, metavar="SIZE",
    help="Refuse containers whose tensors decode to more than SIZE bytes in total (e.g. 512M, 8G; "
         "default 4G, spec/format.md section 8).")


def _limits(max_decoded_bytes) -> Limits:
    if max_decoded_bytes is None:
        return DEFAULT_LIMITS
    return dataclasses.replace(DEFAULT_LIMITS, max_decoded_bytes=max_decoded_bytes,
                               max_tensor_bytes=max(DEFAULT_LIMITS.max_tensor_bytes, max_decoded_bytes))


def _usage_conflicts(**given) -> None:
    """Options that cannot go together are usage errors (exit 2), like unknown options."""
    pairs = [("cluster", "quantize"), ("epr_max_rel_rms", "epr_bits"), ("epr_max_rel_rms", "cluster"),
             ("epr_max_rel_rms", "quantize"), ("epr_bits", "cluster"), ("epr_bits", "quantize")]
    for a, b in pairs:
        if given.get(a) is not None and given.get(b) is not None:
            raise click.UsageError(f"--{a.replace('_', '-')} and --{b.replace('_', '-')} cannot be combined")
    if given.get("per_channel") and given.get("quantize") is None:
        raise click.UsageError("--per-channel needs --quantize")
    if (given.get("tt_layers") or given.get("tt_dims")) and given.get("tt_rank") is None and given.get("tt_tol") is None:
        raise click.UsageError("--tt-layers/--tt-dims need --tt-rank or --tt-tol")


class _Progress:
    """A click progress bar on a terminal (unless --quiet); silent otherwise."""

    def __init__(self, total: int, label: str, quiet: bool):
        show = not quiet and sys.stderr.isatty() and total > 0
        self._bar = click.progressbar(length=total, label=label, file=sys.stderr) if show else None

    def __enter__(self):
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def step(self, _name=None):
        if self._bar is not None:
            self._bar.update(1)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="squeezefmt")
def main():
    """squeezefmt: compressed containers for neural-network weights."""


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--preset", cls=PresetOption, type=PresetName(), default="lossless", show_default=True)
@click.option("--include-optimizer", is_flag=True,
              help="Keep the optimizer state and the training config (loss, metrics; left out by default).")
@click.option("--prune", type=click.FloatRange(0.0, 1.0, max_open=True), default=None, metavar="SPARSITY",
              help="Magnitude-prune every kernel to this sparsity (no retraining; lossy) and store it as CSR.")
@click.option("--cluster", type=click.IntRange(1, 16), default=None, metavar="BITS",
              help="k-means codebook of 2**BITS shared values per kernel (lossy), Huffman-coded indices.")
@click.option("--quantize", type=click.IntRange(1, 16), default=None, metavar="BITS",
              help="Uniform quantization of kernels to BITS (1..8 or 16; lossy), Huffman-coded.")
@click.option("--per-channel", is_flag=True, help="With --quantize: one scale per output channel.")
@click.option("--epr-max-rel-rms", type=click.FloatRange(0.0, min_open=True), default=None, metavar="ERR",
              help="Post-training EPR (lossy): per tensor the largest step with relative RMS error <= ERR.")
@click.option("--epr-bits", type=click.FloatRange(0.0, min_open=True), default=None, metavar="BITS",
              help="Post-training EPR (lossy): per tensor the smallest step that fits BITS bits per weight.")
@click.option("--tt-rank", type=click.IntRange(1), default=None, metavar="R",
              help="TT-SVD of Dense kernels with bond ranks <= R (lossy); they load as TTDense layers "
                   "(squeezefmt.keras.load(..., densify=True) for plain Dense).")
@click.option("--tt-tol", type=click.FloatRange(0.0, 1.0, max_open=True), default=None, metavar="EPS",
              help="TT-SVD of Dense kernels at relative Frobenius error <= EPS (lossy; with --tt-rank: both).")
@click.option("--tt-layers", default=None, metavar="NAMES",
              help="Comma-separated layer names for --tt-rank/--tt-tol (default: every Dense where TT is smaller).")
@click.option("--tt-dims", multiple=True, metavar="IN:OUT",
              help="TT factorisation for kernels of that shape, e.g. 7,4,7,4:5,5,5,5 (default automatic; repeatable).")
@click.option("--canonical-zeros/--keep-zero-signs", default=None,
              help="Turn -0.0 into +0.0 (pruned weights; predictions do not change) and record it. "
                   "Default: on for the lossy presets, off for lossless ones.")
@click.option("--epr-float16-steps", is_flag=True,
              help="EPR-trained layers: round log-steps to float16 as the TFC tutorial stores them (default: "
                   "float16 where exact, else kept as float32 with a warning).")
@click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="DATA.npz",
              help="Accuracy-aware packing (lossy): choose per-tensor steps for the smallest file whose top-1 accuracy "
                   "on DATA.npz ('x' or 'x0','x1',..., and 'y') drops by at most --max-drop; verified on held-out rows.")
@click.option("--max-drop", type=click.FloatRange(-100.0, 100.0), default=None, metavar="POINTS",
              help="With --eval: accuracy budget in percentage points (default 0.1).")
@click.option("--holdout", type=click.FloatRange(0.0, 1.0, max_open=True), default=None, metavar="FRACTION",
              help="With --eval: fraction of DATA.npz rows held out of the search to verify on (default 0.5).")
@click.option("--confidence", type=click.FloatRange(0.0, 10.0), default=None, metavar="Z",
              help="With --eval: the budget applies to the accuracy minus Z standard errors of its change "
                   "(default 0.5; 0 trusts the search data as they are).")
@click.option("--rounding", type=click.Choice(["gptq", "rdo"]), default=None,
              help="With --eval: how kernels are rounded. gptq (default): compensates rounding errors through the "
                   "layer inputs of the search data (Dense, Conv2D, pointwise kernels); rdo: as --preset compact.")
@click.option("--record-source", is_flag=True,
              help="Store MODEL's file name and SHA-256 in the metadata (provenance; about 90 header bytes).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def pack(model, output, preset, include_optimizer, prune, cluster, quantize, per_channel, quiet,
         epr_max_rel_rms=None, epr_bits=None, tt_rank=None, tt_tol=None, tt_layers=None, tt_dims=(),
         eval_path=None, max_drop=None, holdout=None, confidence=None, canonical_zeros=None,
         epr_float16_steps=False, rounding=None, record_source=False):
    """Pack a Keras file MODEL (.h5, .keras or .weights.h5) into the .sqz container OUTPUT."""
    from .keras.formats import read_archive
    from .keras.pack import pack_archive
    from .keras.transforms.tt import TTOptions, parse_dims

    from . import cli_eval  # accuracy-aware packing (--eval)
    cli_eval.check_usage(eval_path, max_drop, holdout, confidence, preset, dict(
        prune=prune, cluster=cluster, quantize=quantize, per_channel=per_channel, epr_max_rel_rms=epr_max_rel_rms,
        epr_bits=epr_bits, tt_rank=tt_rank, tt_tol=tt_tol), rounding)
    if eval_path is not None:
        return cli_eval.run(model, output, eval_path, max_drop, holdout, confidence, include_optimizer, quiet,
                            rounding)
    _usage_conflicts(cluster=cluster, quantize=quantize, per_channel=per_channel, epr_max_rel_rms=epr_max_rel_rms,
                     epr_bits=epr_bits, tt_rank=tt_rank, tt_tol=tt_tol, tt_layers=tt_layers, tt_dims=tt_dims)
    try:
        if epr_max_rel_rms is not None or epr_bits is not None:  # EPR-trained layers need no option
            preset = preset_registry.epr_preset_name(max_rel_rms=epr_max_rel_rms, bits_per_weight=epr_bits)
        if prune is not None or cluster is not None or quantize is not None:
            preset = preset_registry.custom_preset(prune=prune, cluster=cluster, quantize=quantize,
                                                   per_channel=per_channel, base=preset)
        elif per_channel:
            raise SqueezeError("--per-channel needs --quantize")
        tt, tt_report = None, []
        if tt_rank is not None or tt_tol is not None:  # TT-SVD of Dense kernels (keras/transforms/tt.py)
            tt = TTOptions(max_rank=tt_rank, tol=tt_tol, dims=[parse_dims(t) for t in tt_dims],
                           layers=[n.strip() for n in tt_layers.split(",") if n.strip()] if tt_layers else None)
        elif tt_layers or tt_dims:
            raise SqueezeError("--tt-layers/--tt-dims need --tt-rank or --tt-tol")
        archive = read_archive(model, include_optimizer=include_optimizer)
        with _Progress(len(archive.arrays), "packing", quiet) as bar:
            pack_archive(archive, output, preset=preset, progress=bar.step, tt=tt, tt_report=tt_report,
                         options={"preset": preset, "include_optimizer": include_optimizer},
                         source_name=os.path.basename(model), canonical_zeros=canonical_zeros,
                         epr_float16_steps=epr_float16_steps, record_source=record_source)
    except (SqueezeError, OSError) as exc:
        _fail(exc)
    if tt is not None and not tt_report:
        click.echo("squeezefmt: warning: --tt-rank/--tt-tol did nothing: the model has no Dense kernels "
                   "(2-D layer kernels) to decompose", err=True)
    if not quiet:
        for c in tt_report:
            click.echo(f"tt {c.layer}: {c.shape[0]}x{c.shape[1]} as {c.input_dims}x{c.output_dims} ranks {c.ranks}, "
                       f"{c.params} params, rel. error {c.rel_error:.4f}" + ("" if c.used else f" - kept dense: {c.reason}"))
        before, after = os.path.getsize(model), os.path.getsize(output)
        raw = sum(a.nbytes for a in archive.arrays.values())
        click.echo(f"{model}: {before} bytes -> {output}: {after} bytes ({before / max(after, 1):.2f}x the .h5 file, "
                   "which also holds HDF5 overhead" + ("" if include_optimizer else " and any optimizer state") +
                   f"; {raw / max(after, 1):.2f}x the {raw} bytes of packed tensors, the ratio `squeezefmt info` "
                   "shows)")


@main.command()
@click.argument("container", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True)
@_max_decoded
def unpack(container, output, quiet, max_decoded_bytes=None):
    """Write the Keras file stored in CONTAINER to OUTPUT (loads with keras.models.load_model).

    OUTPUT's extension picks the format: .keras (packed from a .keras), .weights.h5 (packed from a
    Keras 3 file), else a legacy .h5.
    """
    from .keras.pack import unpack as do_unpack

    try:
        do_unpack(container, output, limits=_limits(max_decoded_bytes))
    except (SqueezeError, OSError) as exc:
        _fail(exc)
    if not quiet:
        click.echo(f"wrote {output} ({os.path.getsize(output)} bytes)")


def _refuse_keras_file(path) -> None:
    """A Keras file given where a container is expected: say what it is and how to pack it."""
    from .keras.formats.keras_v3 import describe

    what = describe(path)
    if what is not None:
        _fail(SqueezeError(f"{path}: {what}"))


def _bits_per_weight(nbytes: int, *shapes) -> float | None:
    """Stored bits per element (streams + side information) over the elements of ``shapes``."""
    n = sum(math.prod(s) for s in shapes)
    return round(8 * nbytes / n, 3) if n else None


def info_dict(path, limits: Limits = DEFAULT_LIMITS) -> dict:
    """What ``squeezefmt info --json`` prints: per-tensor and total sizes from the header.

    ``totals.ratio`` is the raw bytes of the stored tensors over the container's file size (the pack
    summary also shows the .h5 file size over it, which counts HDF5 overhead and optimizer state).
    """
    from .container.breakdown import file_breakdown
    with open_sqz(path, limits=limits) as f:
        rows = []
        for name in f.keys():
            i = f.info(name)
            rows.append({
                "name": i.name, "codec": i.codec, "config": i.codec_config, "dtype": i.dtype, "shape": list(i.shape),
                "raw_bytes": i.nbytes, "stored_bytes": i.stored_bytes, "side_bytes": i.side_bytes,
                "ratio": round(i.ratio, 4) if i.ratio != float("inf") else None, "stats": i.stats,
                "bits_per_weight": _bits_per_weight(i.stored_bytes + i.side_bytes, i.shape),
            })
        raw = sum(r["raw_bytes"] for r in rows)
        meta = f.metadata()
        return {
            "file": os.fspath(path), "format_version": list(f.format_version), "file_bytes": f.file_size,
            "header_bytes": f.header_size, "padding_bytes": file_breakdown(f)["padding"], "tensors": rows,
            "totals": {"tensors": len(rows), "raw_bytes": raw,
                       "stored_bytes": sum(r["stored_bytes"] for r in rows),
                       "side_bytes": sum(r["side_bytes"] for r in rows),
                       "ratio": round(raw / f.file_size, 4) if f.file_size else None,
                       "bits_per_weight": _bits_per_weight(f.file_size, *[r["shape"] for r in rows])},
            "writer": meta.get("writer"), "packing": meta.get("packing"), "source": meta.get("source"),
        }


@main.command()
@click.argument("container", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_max_decoded
def info(container, as_json, max_decoded_bytes=None):
    """Show per-tensor codec, shape, sizes and ratio of CONTAINER (ratio: raw tensor bytes / stored)."""
    _refuse_keras_file(container)
    try:
        d = info_dict(container, _limits(max_decoded_bytes))
    except (SqueezeError, OSError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['file']}: squeezefmt container v{d['format_version'][0]}.{d['format_version'][1]}, "
               f"{d['file_bytes']} bytes (header {d['header_bytes']}, padding {d['padding_bytes']}), "
               f"written by {d['writer']}")
    width = max([len(r["name"]) for r in d["tensors"]] + [6])
    click.echo(f"{'tensor':<{width}}  {'codec':<10} {'dtype':<8} {'shape':<18} {'raw':>10} {'stored':>10} {'side':>6} "
               f"{'ratio':>7} {'bits/w':>7}")
    for r in d["tensors"]:
        shape = "x".join(str(s) for s in r["shape"]) or "scalar"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        bpw = f"{r['bits_per_weight']:.3f}" if r["bits_per_weight"] is not None else "-"
        click.echo(f"{r['name']:<{width}}  {r['codec']:<10} {r['dtype']:<8} {shape:<18} {r['raw_bytes']:>10} "
                   f"{r['stored_bytes']:>10} {r['side_bytes']:>6} {ratio:>7} {bpw:>7}")
    t = d["totals"]
    click.echo(f"{'total':<{width}}  {t['tensors']} tensors{'':<29} {t['raw_bytes']:>10} {t['stored_bytes']:>10} "
               f"{t['side_bytes']:>6} {t['ratio'] or 0:>6.2f}x {t['bits_per_weight'] or 0:>7.3f} (ratio: raw tensors / file)")


@main.command()
@click.argument("container", type=click.Path(exists=True, dir_okay=False))
@click.option("--quiet", "-q", is_flag=True)
@_max_decoded
def verify(container, quiet, max_decoded_bytes=None):
    """Check every checksum and decode every tensor of CONTAINER (exit 0 when intact)."""
    _refuse_keras_file(container)
    try:
        with open_sqz(container, limits=_limits(max_decoded_bytes)) as f:
            with _Progress(len(f), "verifying", quiet) as bar:
                checked = f.verify(progress=bar.step)
    except (SqueezeError, OSError) as exc:
        _fail(exc)
    if not quiet:
        click.echo(f"{container}: OK ({len(checked)} tensors, all checksums and decodes verified)")


if __name__ == "__main__":  # pragma: no cover
    main()
