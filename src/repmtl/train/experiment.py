"""A multi-task run with its single-task baselines and the Δp table
(``docs/formulas.md#evaluation-selection``).

Baselines are single-task runs of the same budget (benchmark, seed, epochs, steps, batch
size, learning rate, data, encoder); they are cached under ``<out>/<benchmark>/stl-<task>-<budget>``
and trained only when missing. The multi-task run selects its epoch by validation Δp against
them; the table reports test metrics.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from repmtl.data import get_benchmark
from repmtl.metrics.improvement import Improvement, delta_p_or_reason
from repmtl.train.config import TrainConfig
from repmtl.train.distributed import is_writer
from repmtl.train.persistence import RunResult
from repmtl.train.resolve import build_options, resolve
from repmtl.train.runfolder import State, check_writable, folder_state, plan_start
from repmtl.train.runlog import write_json_atomic
from repmtl.train.selection import Scores
from repmtl.train.trainer import single_task_config, train


@dataclass
class ExperimentResult:
    run: RunResult
    baselines: dict[str, RunResult]
    improvement: Improvement | None

    @property
    def baseline_test(self) -> Scores:
        return {t: r.test[t] for t, r in self.baselines.items()}


def ensure_baseline(config: TrainConfig, task: str, console: Console) -> RunResult:
    """The cached single-task baseline of ``config``'s budget for ``task``: reused when finished,
    resumed when interrupted, else trained. A baseline that fails before its first checkpoint
    leaves no folder behind."""
    stl = resolve(single_task_config(config, task))
    run_dir = stl.run_dir()
    state = folder_state(run_dir)
    if state is State.FINISHED or (state is State.ORPHAN and (run_dir / "results.json").exists()):
        console.print(f"using cached single-task baseline for {task!r}: {run_dir}")
        return RunResult.load(run_dir)
    console.print(f"training the single-task baseline for {task!r} (cached in {run_dir})")
    existed = run_dir.exists()
    try:
        return train(stl, resume=state is State.PARTIAL, overwrite=state is State.ORPHAN, console=console)
    except Exception:
        if not existed and folder_state(run_dir) is State.EMPTY:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def preflight(config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Every check that can fail a run, done before any baseline trains: the config, the run
    folder's state against ``resume``/``overwrite``, and that the output folder is writable."""
    plan_start(config.run_dir(), resume=resume, overwrite=overwrite)
    check_writable(Path(config.out) / config.benchmark)


def run_experiment(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    baselines: bool = True,
    console: Console | None = None,
) -> ExperimentResult:
    """Train (or reuse) the single-task baselines, then the run; ``results.json`` gets Δp and the
    baseline folders it was computed against."""
    console = console or Console(stderr=True)
    config = resolve(config)
    preflight(config, resume=resume, overwrite=overwrite)
    if config.single_task:
        return ExperimentResult(train(config, resume=resume, overwrite=overwrite, console=console), {}, None)
    task_names = [t.name for t in get_benchmark(config.benchmark).tasks(build_options(config))]
    stl = {t: ensure_baseline(config, t, console) for t in task_names} if baselines else {}
    baseline_val = {t: r.val[t] for t, r in stl.items()} if stl else None
    run = train(config, resume=resume, overwrite=overwrite, baseline_val=baseline_val, console=console)
    improvement = None
    if stl:
        improvement, reason = delta_p_or_reason(run.test, {t: r.test[t] for t, r in stl.items()}, run.lower_is_better)
        if reason:
            console.print(f"[yellow]warning:[/] {reason}: Δp is n/a for {run.run_dir}")
    result = ExperimentResult(run, stl, improvement)
    if is_writer():  # under torchrun, rank 0 writes the run folder
        write_json_atomic(run.run_dir / "results.json", {**run.to_dict(), **_comparison(result)})
    return result


def _comparison(result: ExperimentResult) -> dict[str, Any]:
    imp = result.improvement
    return {
        "baselines": {t: str(r.run_dir) for t, r in result.baselines.items()},
        "improvement": None if imp is None else {
            "delta_p_task": imp.task, "delta_p_metric": imp.metric, "per_metric": imp.per_metric,
        },
    }


def results_table(result: ExperimentResult) -> Table:
    """Test metrics (one row per task metric) of the STL baselines and the run, each metric's
    signed relative change, and Δp_task / Δp_metric."""
    run = result.run
    imp = result.improvement
    table = Table(title=f"{run.config.benchmark}: test metrics at the epoch selected on validation")
    table.add_column("task / metric")
    if result.baselines:
        table.add_column("STL", justify="right")
    table.add_column(run.run_dir.name, justify="right")
    if imp:
        table.add_column("Δ % (± better)", justify="right")
    for task in run.tasks:
        for metric, value in run.test[task].items():
            arrow = "↓" if run.lower_is_better[task][metric] else "↑"
            row = [f"{task} / {metric} {arrow}"]
            if result.baselines:
                row.append(f"{result.baseline_test[task][metric]:.4g}")
            row.append(f"{value:.4g}")
            if imp:
                row.append(f"{imp.per_metric[task][metric]:+.2f}")
            table.add_row(*row)
    if result.baselines:
        blanks = [""] * (2 if imp else 1)  # the Δ column exists only with Δp
        table.add_section()
        table.add_row("Δp_task %", *blanks, f"{imp.task:+.2f}" if imp else "n/a")
        table.add_row("Δp_metric %", *blanks, f"{imp.metric:+.2f}" if imp else "n/a")
        table.add_row("Δm % (↓)", *blanks, f"{imp.delta_m:+.2f}" if imp else "n/a")
    return table
