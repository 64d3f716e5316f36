"""Grid-searched fixed loss weights against AvgNorm's mean weights and dynamic methods (Guo et
al., "Revisit the Imbalance Optimization in Multi-task Learning", Tables VI and VII).

Recipe, per benchmark: ``fixed`` weights over a grid (the first task's weight 1, each other
task's from :data:`GRID`), EW, AvgNorm and the dynamic methods of :data:`DYNAMIC`.

Analysis, per benchmark:

* the grid's winner is chosen on *validation*: the fixed-weight setting with the highest mean
  validation Δp_task against the single-task baselines' validation metrics (the test set is
  never used to choose); its weights and test Δp_task are reported;
* AvgNorm's mean weights: the mean of each ``weight/<task>`` over every logged step and seed,
  scaled so that the first task's weight is 1 (the grid's convention);
* the test Δp_task (Guo et al.'s Δ_m) of every setting, mean ± std over seeds.

The analysis also writes ``avgnorm-weights-<benchmark>.toml``, a sweep of ``fixed`` runs at
AvgNorm's mean weights with the same budget and seeds (and no baselines of its own: the
analysis finds the first sweep's). Sweep it into a folder of its own and analyse both folders
to fill the "fixed at AvgNorm mean" row (Guo et al. Table VII)::

    repmtl sweep OUT/avgnorm-weights-multidigits.toml --out sweeps/grid-avgnorm
    repmtl study analyse gridsearch sweeps/grid sweeps/grid-avgnorm --out OUT
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from repmtl import logkeys as K
from repmtl.experiments.aggregate import BaselineIndex, Comparison, Setting, summarize
from repmtl.experiments.runs import RunRecord
from repmtl.experiments.studies.base import (
    Budget,
    StudyOutput,
    StudyTable,
    fmt,
    header,
    mean_logged,
    task_names,
    toml_value,
)
from repmtl.metrics.improvement import delta_p_or_reason

__all__ = ["DYNAMIC", "GRID", "analyse", "followup_recipe", "recipe"]

#: weights tried for every task but the first (whose weight is 1)
GRID = (0.5, 1.0, 2.0)
#: dynamic weighting / gradient methods compared with the grid
DYNAMIC = ("uw", "dwa", "imtl", "nashmtl", "famo")
_BUDGET_FIELDS = ("epochs", "max_steps", "batch_size", "lr", "weight_decay", "diagnostics_every", "data_root",
                  "encoder", "options")


def grid_weights(tasks: Sequence[str]) -> list[list[float]]:
    return [[1.0, *combo] for combo in itertools.product(GRID, repeat=len(tasks) - 1)]


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    text = header("gridsearch", "Grid search vs AvgNorm vs dynamic weighting",
                  "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Tables VI-VII",
                  benchmarks, seeds)
    text += "\n" + budget.train_table()
    for method in ("ew", "avgnorm", *DYNAMIC):
        text += f'\n[[methods]]\nname = "{method}"\n'
    for benchmark in benchmarks:
        text += (f'\n[[methods]]\nname = "fixed"\nbenchmarks = [{toml_value(benchmark)}]\n'
                 f"grid = {{ weights = {toml_value(grid_weights(task_names(benchmark)))} }}\n")
    return text


@dataclass
class _Row:
    setting: Setting
    kind: str  # "grid", "grid best", "avgnorm", "fixed at AvgNorm mean", "dynamic", "ew"
    weights: list[float] | None = None
    val_delta: float | None = None


def _val_delta(setting: Setting, index: BaselineIndex, warnings: list[str]) -> float | None:
    values = []
    for run in setting.runs:
        stl = index.baselines(run, warnings)
        if stl is None or not run.val:
            return None
        improvement, reason = delta_p_or_reason(run.val, {t: b.val[t] for t, b in stl.items()}, run.lower_is_better)
        if improvement is None:
            warnings.append(f"{setting.label}, seed {run.seed}: validation {reason}")
            return None
        values.append(improvement.task)
    return statistics.fmean(values)


def _avgnorm_weights(setting: Setting, tasks: Sequence[str]) -> list[float] | None:
    means = []
    for task in tasks:
        per_seed = [v for run in setting.runs if (v := mean_logged(run.path, K.WEIGHT.key(task))) is not None]
        if not per_seed:
            return None
        means.append(statistics.fmean(per_seed))
    return [m / means[0] for m in means] if means[0] > 0 else None


def _weights(setting: Setting, tasks: Sequence[str]) -> list[float] | None:
    given = (setting.config.get("method_args") or {}).get("weights")
    if isinstance(given, dict):
        return [float(given[t]) for t in tasks]
    return [float(w) for w in given] if given is not None else None


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 0.01 * max(abs(y), 1e-12) + 1e-3 for x, y in zip(a, b))


def _rounded(weights: Sequence[float]) -> list[float]:
    return [float(f"{w:.3g}") for w in weights]


def _benchmark(comparison: Comparison, index: BaselineIndex, output: StudyOutput) -> str | None:
    tasks = list(comparison.tasks)
    rows: list[_Row] = []
    avg_weights = None
    for setting in comparison.settings:
        method = setting.config.get("method")
        val = _val_delta(setting, index, output.warnings)
        if method == "fixed":
            rows.append(_Row(setting, "grid", _weights(setting, tasks), val))
        elif method == "avgnorm":
            avg_weights = _avgnorm_weights(setting, tasks)
            rows.append(_Row(setting, "avgnorm", avg_weights, val))
        else:
            rows.append(_Row(setting, "ew" if method == "ew" else "dynamic", None, val))
    if avg_weights is not None:
        for row in rows:
            if row.kind == "grid" and row.weights and _close(row.weights, _rounded(avg_weights)):
                row.kind = "fixed at AvgNorm mean"
    grid = [r for r in rows if r.kind == "grid" and r.val_delta is not None]
    if grid:
        max(grid, key=lambda r: r.val_delta).kind = "grid best"
    elif any(r.kind == "grid" for r in rows):
        output.warnings.append(f"{comparison.benchmark}: no fixed-weight setting has a validation Δp_task "
                               "(missing or zero baselines), so no grid winner")
    order = {"grid best": 0, "fixed at AvgNorm mean": 1, "avgnorm": 2, "ew": 3, "dynamic": 4, "grid": 5}
    rows.sort(key=lambda r: (order[r.kind], -(r.setting.delta_task.mean if r.setting.delta_task else -1e9)))
    table_rows, data = [], []
    for row in rows:
        stat = row.setting.delta_task
        weights = ", ".join(f"{w:.3g}" for w in row.weights) if row.weights else "—"
        table_rows.append([row.setting.label, row.kind, weights, fmt(row.val_delta, signed=True),
                           fmt(stat.mean if stat else None, signed=True, std=stat.std if stat else None),
                           str(len(row.setting.runs))])
        data.append({"benchmark": comparison.benchmark, "setting": row.setting.label, "kind": row.kind,
                     "weights": " ".join(f"{w:.6g}" for w in row.weights) if row.weights else None,
                     "val_delta_p_task": row.val_delta, "test_delta_p_task": stat.mean if stat else None,
                     "test_delta_p_task_std": stat.std if stat else None, "seeds": len(row.setting.runs)})
    output.tables.append(StudyTable(
        f"{comparison.benchmark}: weights found and Δ_m", ["setting", "kind", f"weights ({', '.join(tasks)})",
                                                           "val Δp_task %", "test Δp_task (Δ_m) %", "seeds"],
        table_rows, data,
        [("grid best: the fixed weights with the highest validation Δp_task (chosen without the test set). "
          "AvgNorm weights: mean logged weight over steps and seeds, first task scaled to 1. Δ_m (Guo et al.) "
          "is Δp_task: mean over tasks of the relative change against single-task learning, higher is better.")]))
    output.plot_data.setdefault("benchmarks", []).append({
        "benchmark": comparison.benchmark,
        "labels": [r.setting.label for r in rows if r.setting.delta_task],
        "kinds": [r.kind for r in rows if r.setting.delta_task],
        "means": [r.setting.delta_task.mean for r in rows if r.setting.delta_task],
        "stds": [r.setting.delta_task.std or 0.0 for r in rows if r.setting.delta_task]})
    if avg_weights is None:
        return None
    avgnorm = next(r.setting for r in rows if r.kind == "avgnorm")
    return followup_recipe(comparison.benchmark, _rounded(avg_weights), avgnorm)


def followup_recipe(benchmark: str, weights: Sequence[float], avgnorm: Setting) -> str:
    """A sweep of ``fixed`` at ``weights`` with ``avgnorm``'s budget and seeds."""
    config = avgnorm.config
    train = "".join(f"{k} = {toml_value(config[k])}\n" for k in _BUDGET_FIELDS
                    if config.get(k) not in (None, {}))
    return (f"# Fixed weights at AvgNorm's mean weights (Guo et al. Table VII), same budget as {avgnorm.label}\n"
            f"name = \"gridsearch-avgnorm-weights\"\nbenchmarks = [{toml_value(benchmark)}]\n"
            f"seeds = {toml_value(avgnorm.seeds)}\nbaselines = false  # the first sweep's are used\n\n[train]\n{train}\n[[methods]]\nname = \"fixed\"\n"
            f"args = {{ weights = {toml_value(list(weights))} }}\n")


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    output = StudyOutput()
    index = BaselineIndex(records)
    for comparison in summarize(records):
        output.warnings += comparison.warnings
        followup = _benchmark(comparison, index, output)
        if followup:
            output.files[f"avgnorm-weights-{comparison.benchmark}.toml"] = followup
    output.plot_data.setdefault("benchmarks", [])
    return output
