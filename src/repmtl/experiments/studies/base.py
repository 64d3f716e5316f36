"""What every study shares: its recipe (a sweep file), its output (tables, figure data) and the
writer of ``<out>/<study>.md`` / ``.csv`` / figures.

A study is a named sweep recipe plus an analysis of the finished runs. The recipe is TOML
text built for the benchmarks, seeds and budget the user asks for (``repmtl study recipe``),
so ``repmtl sweep`` trains it; the analysis (``repmtl study analyse``) reads the run folders
only (:mod:`repmtl.experiments.runs`) and returns :class:`StudyOutput`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.experiments.extras import missing_plots
from repmtl.experiments.runs import RunRecord, finite, read_jsonl
from repmtl.experiments.tables import markdown_table

__all__ = ["Budget", "Study", "StudyOutput", "StudyTable", "tail_mean", "task_names", "toml_value", "write_study"]

#: the fraction of logged steps whose mean stands for a diagnostic's "final value"
TAIL_FRACTION = 0.1


@dataclass(frozen=True)
class Budget:
    """The training budget a recipe writes into its ``[train]`` table (``None``: benchmark default)."""

    epochs: int | None = 2
    max_steps: int | None = 30
    batch_size: int | None = None
    diagnostics_every: int | None = 5

    def train_table(self, **extra: Any) -> str:
        fields = {"epochs": self.epochs, "max_steps": self.max_steps, "batch_size": self.batch_size,
                  "diagnostics_every": self.diagnostics_every, **extra}
        return "[train]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items() if v is not None)


@dataclass(frozen=True)
class StudyTable:
    """One table: formatted ``rows`` under ``header`` and the same numbers unformatted in
    ``data`` (one dict per row, for the CSV)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    data: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class StudyOutput:
    """The analysis of one study: its tables, what its figure draws, and warnings."""

    tables: list[StudyTable] = field(default_factory=list)
    plot_data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: further files to write beside the tables (name -> text), e.g. a follow-up sweep
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A named study: ``recipe(benchmarks, seeds, budget)`` returns sweep-file text,
    ``analyse(records)`` the tables, ``plot`` the name of its figure function in
    :mod:`repmtl.experiments.studies.figures`."""

    name: str
    title: str
    reference: str
    recipe: Callable[[Sequence[str], Sequence[int], Budget], str]
    analyse: Callable[[Sequence[RunRecord]], StudyOutput]
    plot: str


# ---- helpers for recipes ---------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML literal for the plain values recipes write (numbers, strings, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"TOML recipes take finite numbers, got {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} into a TOML recipe")


def task_names(benchmark: str) -> list[str]:
    """The task names of a benchmark preset (its defaults; no data is read)."""
    return [t.name for t in get_benchmark(benchmark).tasks(BuildOptions())]


def header(name: str, title: str, reference: str, benchmarks: Sequence[str], seeds: Sequence[int]) -> str:
    return (f"# {title}\n# {reference}\n# Train: repmtl sweep <this file> --workers 2; analyse: "
            f"repmtl study analyse {name} <sweep folder>\n"
            f"name = {toml_value(name)}\nbenchmarks = {toml_value(list(benchmarks))}\nseeds = {toml_value(list(seeds))}\n")


# ---- helpers for analyses --------------------------------------------------------------------


def tail_mean(run_dir: Path, key: str, *, log: str = "steps.jsonl", fraction: float = TAIL_FRACTION) -> float | None:
    """Mean of the last ``fraction`` of the finite values logged under ``key`` (at least one)."""
    rows, _ = read_jsonl(run_dir / log)
    values = [v for row in rows if (v := finite(row.get(key))) is not None]
    if not values:
        return None
    return statistics.fmean(values[-max(1, math.ceil(fraction * len(values))):])


def mean_logged(run_dir: Path, key: str, *, log: str = "steps.jsonl") -> float | None:
    """Mean of every finite value logged under ``key``."""
    rows, _ = read_jsonl(run_dir / log)
    values = [v for row in rows if (v := finite(row.get(key))) is not None]
    return statistics.fmean(values) if values else None


def fmt(value: float | None, decimals: int = 2, *, signed: bool = False, std: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    return text + (f" ± {std:.{decimals}f}" if std is not None else "")


# ---- writing ---------------------------------------------------------------------------------


def _csv(output: StudyOutput) -> str:
    keys: list[str] = []
    for table in output.tables:
        for row in table.data:
            keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["table", *keys], lineterminator="\n")
    writer.writeheader()
    for table in output.tables:
        for row in table.data:
            writer.writerow({"table": table.title, **{k: "" if v is None else v for k, v in row.items()}})
    return buffer.getvalue()


def write_study(study: Study, output: StudyOutput, out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write ``<out>/<study>.md`` (tables, notes, figure), ``<study>.csv`` and the figure as
    PNG and PDF; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {study.title}", "", f"Reference: {study.reference}", ""]
    for table in output.tables:
        lines += [f"## {table.title}", "", *markdown_table(table.header, table.rows, numeric_from=1), ""]
        lines += [f"- {note}" for note in table.notes] + ([""] if table.notes else [])
    written: list[Path] = []
    if plots:
        try:  # the [plots] extra
            from repmtl.experiments.studies import figures
        except ImportError as exc:
            reason = missing_plots(exc)
            if reason is None:
                raise
            output.warnings.append(f"no figure: {reason}")
        else:
            for figure in getattr(figures, study.plot)(output.plot_data, out):
                lines += [f"## {figure.title}", "", f"![{figure.title}]({figure.png.name})", "",
                          f"*{figure.caption}* ([PDF]({figure.pdf.name}))", ""]
                written += [figure.png, figure.pdf]
    if output.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in output.warnings), ""]
    if output.files:
        lines += ["## Follow-up sweeps", "", *(f"- `{name}`" for name in output.files), ""]
    texts = {f"{study.name}.md": "\n".join(lines), f"{study.name}.csv": _csv(output), **output.files}
    for name, text in texts.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
