"""The ``repmtl sweep``, ``compare``, ``report`` and ``study`` commands (registered in :mod:`repmtl.cli`).

Only typer and rich are imported here; the modules that train or plot load when a command
runs, so ``repmtl --help`` stays fast.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True, soft_wrap=True)


def sweep(
    config: Annotated[Path, typer.Argument(help="Sweep file (.toml, .yaml or .yml); see docs/sweeps.md.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Sweep folder (default: the file's `out`, else "
                                                                  "sweeps/<file name>).")] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes (1: run in this process, one by one); "
                                              "with --cluster, the most jobs submitted at once.")] = 1,
    cluster: Annotated[str | None, typer.Option(help="Run the jobs through submitit: slurm, or local "
                                                        "(needs the \\[cluster] extra).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per job (default: cores / workers).")]
    = None,
    dry_run: Annotated[bool, typer.Option(help="Only list the jobs and whether each is new, resumed or "
                                               "finished.")] = False,
) -> None:
    """Train a grid of runs from one sweep file; rerun the same command to resume it."""
    from repmtl.experiments.sweep import run_sweep
    from repmtl.experiments.sweepfile import SweepError

    try:
        outcome = run_sweep(config, out=out_dir, workers=workers, cluster=cluster, threads=threads,
                            dry_run=dry_run, console=err)
    except SweepError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if outcome.interrupted:
        raise typer.Exit(130)
    if outcome.failed:
        err.print(f"[red]{len(outcome.failed)} job(s) failed[/]; fix the cause and rerun the same command")
        raise typer.Exit(1)


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, sweep folders or any folders above finished runs.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write compare.md/.csv/.tex and plots here "
                                                                  "(default for one sweep folder: <sweep>/compare).")]
    = None,
    published: Annotated[list[Path] | None, typer.Option("--published", help="TOML file of published numbers "
                                                                                "to show beside ours (repeatable).")]
    = None,
    plots: Annotated[bool, typer.Option(help="Draw the figures when writing files.")] = True,
) -> None:
    """Tables (mean ± std over seeds, Δp, best in bold) and figures of finished runs."""
    from repmtl.experiments.aggregate import summarize
    from repmtl.experiments.compare import write_comparison
    from repmtl.experiments.published import load_published
    from repmtl.experiments.runs import RunFolderError, find_runs
    from repmtl.experiments.sweepfile import SweepError
    from repmtl.experiments.tables import rich_tables

    try:
        records, problems = find_runs(runs)
        entries = [e for path in published or [] for e in load_published(path)]
        comparisons = summarize(records, entries)
    except (RunFolderError, SweepError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    for problem in problems:
        err.print(f"[yellow]warning:[/] skipped: {problem}")
    if not comparisons:
        found = "only single-task runs" if records else "no results.json"
        err.print(f"[red]error:[/] {found} under {', '.join(map(str, runs))}: are these finished multi-task runs?")
        raise typer.Exit(2)
    for table in rich_tables(comparisons):
        out.print(table)
    target = out_dir
    if target is None and len(runs) == 1 and (runs[0] / "sweep.json").exists():
        target = runs[0] / "compare"
    if target is None:
        err.print("pass --out DIR to write Markdown, CSV, LaTeX and the plots")
        return
    if plots and importlib.util.find_spec("matplotlib") is None:
        err.print("[yellow]warning:[/] no figures: matplotlib is missing; pip install 'repmtl\\[plots]'")
    written = write_comparison(comparisons, target, plots=plots)
    out.print(f"wrote {len(written)} files to {target} (start with {target / 'compare.md'})")


def report(run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<benchmark>/<run>).")]) -> None:
    """Write plots (training dynamics, diagnostics, power-law α) and a Markdown summary of a run."""
    from repmtl.experiments.extras import missing_plots

    if not (run_dir / "steps.jsonl").exists() and not (run_dir / "epochs.jsonl").exists():
        err.print(f"[red]error:[/] {run_dir} holds no run logs (steps.jsonl / epochs.jsonl)")
        raise typer.Exit(2)
    try:
        from repmtl.experiments.report import write_report
    except ImportError as exc:
        reason = missing_plots(exc)
        if reason is None:
            raise
        err.print(f"[red]error:[/] {reason}")
        raise typer.Exit(2) from exc
    path = write_report(run_dir)
    out.print(f"report written to {path}")


study_app = typer.Typer(no_args_is_help=True, help="The imbalance papers' studies: a sweep recipe, then an analysis.")


@study_app.command("list")
def study_list() -> None:
    """The studies, with the paper tables and figures each one reproduces."""
    from rich.table import Table

    from repmtl.experiments.studies import STUDIES

    table = Table(title="studies")
    for column in ("name", "study", "reference"):
        table.add_column(column)
    for study in STUDIES.values():
        table.add_row(study.name, study.title, study.reference)
    out.print(table)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--seeds takes integers separated by commas, got {text!r}") from exc
    if not seeds:
        raise typer.BadParameter("--seeds needs at least one seed")
    return seeds


def study_recipe(
    name: Annotated[str, typer.Argument(help="Study name (repmtl study list).")],
    benchmark: Annotated[list[str], typer.Option("--benchmark", "-b", help="Benchmark (repeatable).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Sweep file to write (.toml).")],
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated.")] = "0,1",
    epochs: Annotated[int | None, typer.Option(help="Epochs per run (default: 2; 0: the benchmark's).")] = 2,
    max_steps: Annotated[int | None, typer.Option(help="Steps per epoch (default: 30; 0: all).")] = 30,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the benchmark's).")] = None,
    diagnostics_every: Annotated[int, typer.Option(help="Diagnostics every N steps.")] = 5,
) -> None:
    """Write a study's sweep file for these benchmarks, seeds and budget."""
    from repmtl.experiments.studies import Budget, get_study
    from repmtl.experiments.sweepfile import SweepError, load_sweep

    try:
        study = get_study(name)
        budget = Budget(epochs or None, max_steps or None, batch_size, diagnostics_every)
        text = study.recipe(benchmark, _seeds(seeds), budget)
    except (KeyError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(2) from exc
    if out_file.suffix.lower() != ".toml":
        err.print(f"[red]error:[/] recipes are TOML: {out_file} should end in .toml")
        raise typer.Exit(2)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(text)
    try:
        load_sweep(out_file)
    except SweepError as exc:  # a recipe that does not parse is a bug here, not the user's
        raise RuntimeError(f"the {name} recipe written to {out_file} does not parse: {exc}") from exc
    out.print(f"wrote {out_file}; next: repmtl sweep {out_file} --workers 2, then "
              f"repmtl study analyse {name} <sweep folder>")


def study_analyse(
    name: Annotated[str, typer.Argument(help="Study name (repmtl study list).")],
    runs: Annotated[list[Path], typer.Argument(help="Sweep folders or run folders of the study.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the tables and figure "
                                                                  "(default: <first folder>/study-<name>).")] = None,
    plots: Annotated[bool, typer.Option(help="Draw the figure.")] = True,
) -> None:
    """Tables (Markdown, CSV) and the figure of a study from its finished runs."""
    from repmtl.experiments.runs import RunFolderError, find_runs
    from repmtl.experiments.studies import get_study, write_study

    try:
        study = get_study(name)
        records, problems = find_runs(runs)
        output = study.analyse(records)
    except (KeyError, RunFolderError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(2) from exc
    for problem in problems:
        err.print(f"[yellow]warning:[/] skipped: {problem}")
    if not output.tables:
        for warning in output.warnings:
            err.print(f"[yellow]warning:[/] {warning}")
        err.print(f"[red]error:[/] nothing to tabulate for {name} under {', '.join(map(str, runs))}")
        raise typer.Exit(2)
    target = out_dir or runs[0] / f"study-{name}"
    written = write_study(study, output, target, plots=plots)
    for warning in output.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    out.print(f"wrote {len(written)} files to {target} (start with {target / (name + '.md')})")


study_app.command("recipe")(study_recipe)
study_app.command("analyse")(study_analyse)
