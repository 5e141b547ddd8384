"""``squeezefmt pack MODEL OUT --eval DATA.npz --max-drop POINTS``: the command-line side of accuracy-aware packing.

Checks the option combination (usage errors exit with status 2), runs
:func:`squeezefmt.keras.eval_pack.pack_with_eval` and prints its report: the per-tensor steps and
bits per weight, the accuracy on the search data and on the held-out data, the size and the search
time. Problems with the data file or the model (shapes, labels, not a classifier) are usage errors
of ``--eval`` (status 2); a budget no lossy packing meets prints the best result found and exits
with status 1 without writing OUT.
"""
from __future__ import annotations

import sys

import click

from .errors import SqueezeError

#: Options of ``pack`` that choose a codec policy themselves and so cannot be combined with --eval.
CONFLICTING = ("prune", "cluster", "quantize", "per_channel", "epr_max_rel_rms", "epr_bits", "tt_rank", "tt_tol")


def check_usage(eval_path, max_drop, holdout, confidence, preset: str, others: dict, rounding=None) -> None:
    """Usage errors of the --eval options (click exits with status 2)."""
    if eval_path is None:
        if max_drop is not None or holdout is not None or confidence is not None or rounding is not None:
            raise click.UsageError("--max-drop, --holdout, --confidence and --rounding need --eval DATA.npz")
        return
    used = [f"--{k.replace('_', '-')}" for k in CONFLICTING if others.get(k) not in (None, False)]
    if used or preset != "lossless":
        raise click.UsageError(f"--eval chooses the codecs itself; drop {', '.join(used) or '--preset ' + preset}")


def run(model, output, eval_path, max_drop, holdout, confidence, include_optimizer: bool, quiet: bool,
        rounding=None) -> None:
    """Search, pack, verify and report; exits 2 for bad data/model, 1 when the budget is not met."""
    from .keras.eval_pack import BudgetNotMet, pack_with_eval  # noqa: PLC0415 - imports TensorFlow
    from .keras.evaluate import DEFAULT_CONFIDENCE  # noqa: PLC0415
    from .search.data import EvalDataError  # noqa: PLC0415
    from .errors import KerasFormatError  # noqa: PLC0415

    say = None if quiet else (lambda message: click.echo(f"  {message}", err=True))
    try:
        report = pack_with_eval(model, output, eval_path, max_drop=0.1 if max_drop is None else max_drop,
                                holdout=0.5 if holdout is None else holdout,
                                confidence=DEFAULT_CONFIDENCE if confidence is None else confidence, include_optimizer=include_optimizer,
                                rounding=rounding or "gptq", progress=say)
    except BudgetNotMet as exc:
        click.echo(exc.report.text())
        click.echo(f"squeezefmt: error: {exc}", err=True)
        sys.exit(1)
    except (EvalDataError, KerasFormatError) as exc:
        click.echo(f"squeezefmt: error: --eval {eval_path}: {exc}", err=True)
        sys.exit(2)
    except (SqueezeError, OSError) as exc:
        click.echo(f"squeezefmt: error: {exc}", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(report.text())
        click.echo(f"wrote {output}")
