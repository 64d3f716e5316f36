"""Comparison tables (:class:`~repmtl.experiments.aggregate.Comparison`) for the terminal,
Markdown, CSV and LaTeX.

Rows: the single-task baselines (STL), our settings (mean ± sample std over seeds), then any
published numbers (marked, with their source). Bold: the best of our rows in each column at
the printed precision (ties are all bold); published rows and STL are not ranked. A Δp that
is undefined prints as "n/a" and the table's notes say why.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from rich.table import Table

from repmtl.experiments.aggregate import Column, Comparison, Setting, Stat

__all__ = ["csv_text", "latex", "markdown", "markdown_table", "rich_tables"]

_DASH = "—"


def _format(stat: Stat | None, column: Column, *, pm: str = " ± ") -> str:
    if stat is None:
        return "n/a"
    signed = column.task is None
    text = f"{stat.mean:+.{column.decimals}f}" if signed else f"{stat.mean:.{column.decimals}f}"
    if stat.std is not None:
        text += f"{pm}{stat.std:.{column.decimals}f}"
    return text


def _published_text(value: float | None, column: Column) -> str:
    if value is None:
        return _DASH
    return f"{value:+.{column.decimals}f}" if column.task is None else f"{value:.{column.decimals}f}"


def _baseline_cell(row: Setting, column: Column, pm: str = " ± ") -> str:
    return _DASH if column.task is None else _format(column.value(row), column, pm=pm)


def _seeds(row: Setting) -> str:
    seeds = sorted({r.seed for r in row.runs})
    return str(len(seeds))


def _notes(comparison: Comparison) -> list[str]:
    notes = [("Test metrics at the epoch selected on validation; mean ± sample std (n − 1) over the seeds "
              "counted in `seeds`. Δp in %, per seed against the single-task baselines of the same seed and "
              "budget, then averaged; bold: best of our rows.")]
    for i, entry in enumerate(comparison.published, 1):
        notes.append(f"[{i}] {entry.method}: {entry.source}")
    if comparison.agreement is not None:
        notes.append(comparison.agreement.describe())
    return notes + comparison.warnings


def rich_tables(comparisons: Sequence[Comparison]) -> list[Table]:
    """One terminal table per benchmark (notes and warnings as its caption)."""
    tables = []
    for comparison in comparisons:
        table = Table(title=f"{comparison.benchmark}: test metrics", caption_justify="left")
        table.add_column("method")
        table.add_column("seeds", justify="right")
        for column in comparison.columns:
            table.add_column(column.header, justify="right")
        for row in comparison.baselines:
            table.add_row(row.label, _seeds(row), *(_baseline_cell(row, c) for c in comparison.columns), style="dim")
        if comparison.baselines:
            table.add_section()
        best = {c.key: comparison.best(c) for c in comparison.columns}
        for i, row in enumerate(comparison.settings):
            cells = []
            for column in comparison.columns:
                text = _format(column.value(row), column)
                cells.append(f"[bold]{text}[/]" if i in best[column.key] else text)
            table.add_row(row.label, _seeds(row), *cells)
        if comparison.published:
            table.add_section()
            for i, entry in enumerate(comparison.published, 1):
                table.add_row(f"{entry.method} [{i}]", _DASH,
                              *(_published_text(entry.value(c.key), c) for c in comparison.columns), style="italic")
        table.caption = "\n".join(_notes(comparison))
        tables.append(table)
    return tables


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int | None = None) -> list[str]:
    """A Markdown table as lines (``|`` in cells escaped); columns from ``numeric_from`` on are
    right-aligned. The one Markdown table writer of ``repmtl report``, ``compare`` and the studies."""
    align = [":---" if numeric_from is None or i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(_md_escape(str(h)) for h in header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_md_escape(str(c)) for c in row) + " |" for row in rows]
    return lines


def markdown(comparisons: Sequence[Comparison]) -> str:
    """Markdown tables, one section per benchmark, with their notes."""
    out: list[str] = []
    for comparison in comparisons:
        header = ["method", "seeds", *(c.header for c in comparison.columns)]
        rows = [[row.label, _seeds(row), *(_baseline_cell(row, c) for c in comparison.columns)]
                for row in comparison.baselines]
        best = {c.key: comparison.best(c) for c in comparison.columns}
        for i, row in enumerate(comparison.settings):
            cells = [row.label, _seeds(row)]
            for column in comparison.columns:
                text = _format(column.value(row), column)
                cells.append(f"**{text}**" if i in best[column.key] else text)
            rows.append(cells)
        for i, entry in enumerate(comparison.published, 1):
            rows.append([f"*{entry.method} (published [{i}])*", _DASH,
                         *(_published_text(entry.value(c.key), c) for c in comparison.columns)])
        lines = markdown_table(header, rows, numeric_from=1)
        out += [f"## {comparison.benchmark}", "", *lines, ""]
        out += [f"- {_md_escape(note)}" for note in _notes(comparison)] + [""]
    return "\n".join(out)


def csv_text(comparisons: Sequence[Comparison]) -> str:
    """One CSV row per table row: ``benchmark, row, kind, seeds, source``, then for every
    column ``<key>`` (mean or published value) and ``<key>_std``; empty where not defined."""
    keys: list[str] = []
    for comparison in comparisons:
        keys += [c.key for c in comparison.columns if c.key not in keys]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["benchmark", "row", "kind", "seeds", "source", *(f for k in keys for f in (k, f"{k}_std"))])
    for comparison in comparisons:
        columns = {c.key: c for c in comparison.columns}

        def stats(row: Setting, baseline: bool, columns: dict[str, Column] = columns) -> list[str]:
            cells = []
            for key in keys:
                column = columns.get(key)
                stat = None if column is None or (baseline and column.task is None) else column.value(row)
                cells += ["" if stat is None else repr(stat.mean), "" if stat is None or stat.std is None
                          else repr(stat.std)]
            return cells

        for row in comparison.baselines:
            writer.writerow([comparison.benchmark, row.label, "stl", _seeds(row), "", *stats(row, True)])
        for row in comparison.settings:
            writer.writerow([comparison.benchmark, row.label, "ours", _seeds(row), "", *stats(row, False)])
        for entry in comparison.published:
            values = []
            for key in keys:
                value = entry.value(key) if key in columns else None
                values += ["" if value is None else repr(value), ""]
            writer.writerow([comparison.benchmark, entry.method, "published", "", entry.source, *values])
    return buffer.getvalue()


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", "Δ": r"$\Delta$", "α": r"$\alpha$",
                  "—": "--", "−": "-"}


def _tex(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def _tex_header(column: Column) -> str:
    headers = {"delta_p_task": r"$\Delta p_{\mathrm{task}}$ (\%) $\uparrow$",
               "delta_p_metric": r"$\Delta p_{\mathrm{metric}}$ (\%) $\uparrow$",
               "delta_m": r"$\Delta_m$ (\%) $\downarrow$"}
    return headers.get(column.key) or _tex(column.header)


def latex(comparisons: Sequence[Comparison]) -> str:
    """A booktabs ``table`` per benchmark (needs ``\\usepackage{booktabs}``)."""
    out: list[str] = []
    for comparison in comparisons:
        spec = "lr" + "r" * len(comparison.columns)
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 (rf"\caption{{{_tex(comparison.benchmark)}: test metrics, mean $\pm$ sample std over seeds; "
                  r"bold: best of our rows.}"),
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(["Method", "Seeds", *(_tex_header(c) for c in comparison.columns)]) + r" \\",
                 r"\midrule"]
        for row in comparison.baselines:
            cells = [_tex(row.label), _seeds(row), *(_tex(_baseline_cell(row, c, pm="±")) for c in comparison.columns)]
            lines.append(" & ".join(cells) + r" \\")
        if comparison.baselines:
            lines.append(r"\midrule")
        best = {c.key: comparison.best(c) for c in comparison.columns}
        for i, row in enumerate(comparison.settings):
            cells = [_tex(row.label), _seeds(row)]
            for column in comparison.columns:
                text = _tex(_format(column.value(row), column, pm="±"))
                cells.append(rf"\textbf{{{text}}}" if i in best[column.key] else text)
            lines.append(" & ".join(cells) + r" \\")
        if comparison.published:
            lines.append(r"\midrule")
            for i, entry in enumerate(comparison.published, 1):
                cells = [rf"\textit{{{_tex(entry.method)}}} [{i}]", "--",
                         *(_tex(_published_text(entry.value(c.key), c)) for c in comparison.columns)]
                lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if comparison.published:
            sources = "; ".join(f"[{i}] {_tex(e.source)}" for i, e in enumerate(comparison.published, 1))
            lines.append(rf"\par\smallskip\footnotesize Published: {sources}")
        lines.append(r"\end{table}")
        out += lines + [""]
    return "\n".join(out)
