"""A multi-task run with its single-task baselines and the Δp table (SPEC §5).

Baselines are single-task runs of the same budget (benchmark, seed, epochs, steps, batch
size, learning rate, data, encoder); they are cached under ``<out>/<benchmark>/stl-<task>-<budget>``
and trained only when missing. The multi-task run selects its epoch by validation Δp against
them; the table reports test metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from repmtl.metrics.improvement import Improvement, delta_p_or_reason
from repmtl.train.config import TrainConfig
from repmtl.train.trainer import RunResult, Scores, single_task_config, train


@dataclass
class ExperimentResult:
    run: RunResult
    baselines: dict[str, RunResult]
    improvement: Improvement | None

    @property
    def baseline_test(self) -> Scores:
        return {t: r.test[t] for t, r in self.baselines.items()}


def ensure_baseline(config: TrainConfig, task: str, console: Console) -> RunResult:
    stl = single_task_config(config, task)
    results = stl.run_dir() / "results.json"
    if results.exists():
        console.print(f"using cached single-task baseline for {task!r}: {stl.run_dir()}")
        return RunResult.load(stl.run_dir())
    console.print(f"training the single-task baseline for {task!r} (cached in {stl.run_dir()})")
    partial = (stl.run_dir() / "checkpoints" / "last.pt").exists()
    return train(stl, resume=partial, console=console)


def run_experiment(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    baselines: bool = True,
    console: Console | None = None,
) -> ExperimentResult:
    from repmtl.experiments.presets import resolve_presets

    console = console or Console(stderr=True)
    config = resolve_presets(config)
    if config.single_task:
        return ExperimentResult(train(config, resume=resume, overwrite=overwrite, console=console), {}, None)
    from repmtl.experiments.benchmarks import BuildOptions, get_benchmark

    bench = get_benchmark(config.benchmark)
    options = BuildOptions(data_root=Path(config.data_root) if config.data_root else None, encoder=config.encoder,
                           seed=config.seed, extra=dict(config.options))
    bench.check_options(config.options)
    task_names = [t.name for t in bench.tasks(options)]
    _check_method(config, task_names)
    stl = {t: ensure_baseline(config, t, console) for t in task_names} if baselines else {}
    baseline_val = {t: r.val[t] for t, r in stl.items()} if stl else None
    run = train(config, resume=resume, overwrite=overwrite, baseline_val=baseline_val, console=console)
    improvement = None
    if stl:
        improvement, reason = delta_p_or_reason(run.test, {t: r.test[t] for t, r in stl.items()}, run.lower_is_better)
        if reason:
            console.print(f"[yellow]warning:[/] {reason}: Δp is n/a for {run.run_dir}")
    return ExperimentResult(run, stl, improvement)


def _check_method(config: TrainConfig, task_names: list[str]) -> None:
    """Fail on a bad method, level or regularizer before any baseline is trained."""
    from repmtl import methods, regularizers

    method = methods.create(config.method, tasks=task_names, **config.method_args)
    method.check_level(config.level or method.default_level)
    if config.regularizer:
        regularizers.create(config.regularizer, **config.regularizer_args)


def results_table(result: ExperimentResult) -> Table:
    """Test metrics (one row per task metric) of the STL baselines and the run, each metric's
    signed relative change, and Δp_task / Δp_metric."""
    run = result.run
    imp = result.improvement
    table = Table(title=f"{run.config.benchmark}: test metrics at the epoch selected on validation")
    table.add_column("task / metric")
    if result.baselines:
        table.add_column("STL", justify="right")
    table.add_column(run.config.run_name(), justify="right")
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
    return table
