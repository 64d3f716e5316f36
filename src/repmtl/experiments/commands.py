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
                                                        "(needs the [cluster] extra).")] = None,
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
        err.print("[yellow]warning:[/] no figures: matplotlib is missing; pip install 'repmtl[plots]'")
    written = write_comparison(comparisons, target, plots=plots)
    out.print(f"wrote {len(written)} files to {target} (start with {target / 'compare.md'})")


def report(run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<benchmark>/<run>).")]) -> None:
    """Write plots (training dynamics, diagnostics, power-law α) and a Markdown summary of a run."""
    from repmtl.experiments.extras import MissingExtraError

    if not (run_dir / "steps.jsonl").exists() and not (run_dir / "epochs.jsonl").exists():
        err.print(f"[red]error:[/] {run_dir} holds no run logs (steps.jsonl / epochs.jsonl)")
        raise typer.Exit(2)
    try:
        from repmtl.experiments.report import write_report
    except MissingExtraError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    path = write_report(run_dir)
    out.print(f"report written to {path}")
