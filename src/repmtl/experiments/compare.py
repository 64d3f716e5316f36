"""``repmtl compare``: finished runs (or sweep folders) to tables and figures on disk.

:func:`write_comparison` writes, into the folder the user chose::

    compare.md      every benchmark's table, notes and figures
    compare.csv     the tables as data (mean and std columns)
    compare.tex     booktabs tables
    plots/<benchmark>/<figure>.png and .pdf   (with the ``[plots]`` extra)

Without matplotlib the tables are still written and ``compare.md`` says how to get the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from repmtl.experiments.aggregate import Comparison
from repmtl.experiments.extras import missing_plots
from repmtl.experiments.tables import csv_text, latex, markdown

__all__ = ["write_comparison"]


def _figures_markdown(figures: Sequence, skipped: Sequence[str], root: Path) -> list[str]:
    out = []
    for figure in figures:
        rel = figure.png.relative_to(root).as_posix()
        out += [f"### {figure.title}", "", f"![{figure.title}]({rel})", "",
                f"*{figure.caption}* ([PDF]({figure.pdf.relative_to(root).as_posix()}))", ""]
    if skipped:
        out += ["### Not plotted", "", *(f"- {reason}" for reason in skipped), ""]
    return out


def write_comparison(comparisons: Sequence[Comparison], out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write the files listed in the module doc; returns their paths (figures included)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sections = ["# Comparison", ""]
    plot_comparison = None
    if plots:
        try:  # the [plots] extra
            from repmtl.experiments.plots import plot_comparison
        except ImportError as exc:
            reason = missing_plots(exc)
            if reason is None:
                raise
            sections += [f"No figures: {reason}", ""]
    for comparison in comparisons:
        sections.append(markdown([comparison]))
        if plot_comparison is not None:
            figures, skipped = plot_comparison(comparison, out / "plots" / comparison.benchmark)
            sections += _figures_markdown(figures, skipped, out)
            written += [p for f in figures for p in (f.png, f.pdf)]
    for name, text in (("compare.md", "\n".join(sections)), ("compare.csv", csv_text(comparisons)),
                       ("compare.tex", latex(comparisons))):
        (out / name).write_text(text)
        written.append(out / name)
    return written
