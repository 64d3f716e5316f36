"""The Markdown of ``repmtl report``: a run's settings, per-task and diagnostics summaries
(read through the run-log schema, :mod:`repmtl.logkeys`), notes, and the figures with their
captions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from repmtl.experiments.figstyle import Figure
from repmtl.experiments.report.logs import Row, RunLogs, as_float, keys_of
from repmtl.experiments.tables import markdown_table
from repmtl.logkeys import (
    ALPHA_ENCODER_MEAN,
    ALPHA_HEAD_MEAN,
    DIAG_COND,
    DIAG_COS,
    DIAG_FD,
    DIAG_GDS,
    DIAG_GMS,
    DIAG_NORM,
    STEP,
    TRAIN_LOSS,
    VAL_METRIC,
    WEIGHT,
)

__all__ = ["markdown"]

_LAST_FRACTION = 0.1  # summary statistics: mean over the last 10% of logged steps


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _last(rows: Sequence[Row], key: str) -> Any:
    for row in reversed(rows):
        if key in row:
            return row[key]
    return None


def _tail_mean(rows: Sequence[Row], key: str) -> float | None:
    """Mean over the last 10% of the lines holding ``key`` (inf if any of them is inf)."""
    vals = [v for r in rows if (v := as_float(r.get(key))) is not None and not math.isnan(v)]
    if not vals:
        return None
    tail = vals[-max(1, math.ceil(len(vals) * _LAST_FRACTION)):]
    return float(np.mean(tail))


def _first(rows: Sequence[Row], key: str) -> float | None:
    for row in rows:
        if (v := as_float(row.get(key))) is not None:
            return v
    return None


def markdown(run: RunLogs, figures: Sequence[Figure], skipped: Sequence[str]) -> str:
    """``report.md`` for ``run``: ``figures`` are linked by file name (they sit next to it),
    ``skipped`` lists the figures not drawn and why."""
    cfg = run.config
    title = " / ".join(str(cfg[k]) for k in ("benchmark", "method") if k in cfg) or run.run_dir.name
    out = [f"# Run report: {title}", "", f"Run folder: `{run.run_dir}`", ""]

    settings = [(k, cfg[k]) for k in ("benchmark", "method", "level", "regularizer", "loss_transform", "seed",
                                      "epochs", "batch_size", "lr", "diagnostics_every") if cfg.get(k) is not None]
    if run.tasks:
        settings.insert(min(2, len(settings)), ("tasks", ", ".join(run.tasks)))
    step_numbers = [s for r in run.steps if (s := as_float(r.get(STEP.key()))) is not None]
    logged = f"{len(run.steps)} step lines"
    if step_numbers:
        logged += f" (steps {min(step_numbers):g}–{max(step_numbers):g})"
    settings.append(("logged", f"{logged}, {len(run.epochs)} epochs"))
    levels = run.diagnostics_levels()
    if levels:
        settings.append(("diagnostics level", ", ".join(levels)))
    out += ["## Summary", ""] + markdown_table(["setting", "value"], [[k, _fmt(v)] for k, v in settings]) + [""]

    frac = f"mean over the last {int(_LAST_FRACTION * 100)}% of logged steps"
    if run.tasks:
        body = []
        val_keys = keys_of(run.epochs, VAL_METRIC)
        for t in run.tasks:
            vals = ", ".join(f"{fields['metric']} {_fmt(_last(run.epochs, k))}"
                             for k, fields in val_keys if fields["task"] == t) or "–"
            body.append([t, _fmt(_last(run.epochs, TRAIN_LOSS.key(t))), _fmt(_tail_mean(run.steps, WEIGHT.key(t))),
                         _fmt(_tail_mean(run.steps, DIAG_NORM.key(t))), _fmt(_tail_mean(run.steps, DIAG_COS.key(t))),
                         _fmt(_last(run.epochs, ALPHA_HEAD_MEAN.key(t))), vals])
        out += [f"Per task (last epoch; weight, gradient norm and cosine: {frac}):", ""]
        out += markdown_table(["task", "train loss", "weight", "grad norm", "cos to update", "head mean α", "validation"], body)
        out.append("")

    measures = [("GDS", DIAG_GDS.key()), ("GMS", DIAG_GMS.key()), ("FD", DIAG_FD.key()), ("κ(J)", DIAG_COND.key())]
    body = [[name, _fmt(_first(run.steps, key)), _fmt(_tail_mean(run.steps, key))]
            for name, key in measures if any(key in r for r in run.steps)]
    encoder_mean = ALPHA_ENCODER_MEAN.key()
    if any(encoder_mean in r for r in run.epochs):
        body.append(["encoder mean α (per epoch)", _fmt(_first(run.epochs, encoder_mean)),
                     _fmt(_last(run.epochs, encoder_mean))])
    if body:
        out += ["Diagnostics (first logged value; end of training: " + frac + ", or last epoch for α):", ""]
        out += markdown_table(["measure", "first", "end"], body) + [""]

    if run.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in run.notes] + [""]
    out += ["## Plots", ""]
    for fig in figures:
        out += [f"### {fig.title}", "", f"![{fig.title}]({fig.png.name})", "", f"*{fig.caption}*", ""]
    if skipped:
        out += ["### Not plotted", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(out)
