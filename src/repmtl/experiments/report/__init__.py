"""Plots and a Markdown summary of one training run (``repmtl report``).

Reads a run folder as the trainer writes it (keys: :mod:`repmtl.logkeys`):

* ``config.json``: the resolved config (``benchmark``, ``method``, ``tasks``, ...);
* ``steps.jsonl``: one object per logged step (``epoch``, ``step``, ``loss/<task>``,
  ``weight/<task>``, ``penalty/<name>``, ``diag/...`` from
  :func:`repmtl.diagnostics.step_diagnostics`); keys may be missing on some lines;
* ``epochs.jsonl``: one object per epoch (``epoch``, ``train/loss/<task>``,
  ``val/<task>/<metric>``, ``alpha/...`` from :func:`repmtl.diagnostics.layer_alphas`, ``lr``).

and writes PNGs plus ``report.md`` into ``run_dir/report/``. One module per job:
:mod:`~repmtl.experiments.report.logs` reads the folder, :mod:`~repmtl.experiments.report.figures`
draws (a plot whose data are absent is skipped and the Markdown says so),
:mod:`~repmtl.experiments.report.markdown` writes the summary.
"""

from __future__ import annotations

from pathlib import Path

from repmtl.experiments.figstyle import style
from repmtl.experiments.report.figures import RunFigures
from repmtl.experiments.report.logs import load_run
from repmtl.experiments.report.markdown import markdown

__all__ = ["write_report"]


def write_report(run_dir: str | Path) -> Path:
    """Write PNG plots and ``report.md`` into ``run_dir/report/``; return the Markdown's path."""
    run = load_run(Path(run_dir))
    out_dir = run.run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = RunFigures(run, out_dir)
    with style():
        figures.build()
    path = out_dir / "report.md"
    path.write_text(markdown(run, figures.figures, figures.skipped))
    return path
