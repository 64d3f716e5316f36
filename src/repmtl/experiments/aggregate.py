"""Aggregate finished runs into paper-style comparisons: one table per benchmark.

Runs are grouped into *settings* (equal configuration but for the seed; see
:meth:`RunRecord.identity`); each setting's test metrics are summarised over its seeds as
mean ± sample standard deviation (``n − 1`` in the denominator; no ± with one seed).

Improvement over single-task learning (Rep-MTL, Wang et al. ICCV 2025, Sec. 4.1; Maninis et al.
CVPR 2019) is computed per seed against the single-task baselines of the same seed and budget,
then summarised over seeds:

* ``Δp_task = 1/T Σ_t 1/n_t Σ_k (−1)^σ_tk (M_m,tk − M_b,tk) / M_b,tk × 100`` (``σ_tk = 1`` when
  lower is better), ``Δp_metric`` the same change averaged over all metrics
  (:func:`repmtl.metrics.improvement.delta_p`);
* ``Δm% = 1/K Σ_k (−1)^δ_k (M_m,k − M_b,k) / M_b,k × 100`` with ``δ_k = 1`` when higher is
  better (Navon et al. "Multi-Task Learning as a Bargaining Game", ICML 2022, Sec. 6): the
  negative of ``Δp_metric``, lower is better. It is shown for benchmarks whose published
  numbers report it.

A seed whose Δp is undefined (a baseline metric of 0, as after a few smoke-test steps, or a
missing baseline) makes the setting's Δp "n/a" and adds a warning naming the seed and why.

Baselines are found from what the run folders say, never from their names: the
``baselines`` entry of ``results.json`` when present (task → folder), else a single-task run
of the same benchmark, task and budget (``TrainConfig.budget_key``) among the given runs or
beside the run's folder.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repmtl import methods as M
from repmtl.experiments.agreement import OurRow, RankAgreement, rank_agreement
from repmtl.experiments.published import PublishedResult
from repmtl.experiments.runs import RunFolderError, RunRecord, read_run
from repmtl.metrics.improvement import Improvement, delta_p_or_reason
from repmtl.train.presets import PRESETS

__all__ = ["BaselineIndex", "Column", "Comparison", "Setting", "Stat", "summarize"]

#: the budget fields ``TrainConfig.budget_key`` hashes, but for the seed (STL rows group by these)
_BUDGET_FIELDS = ("benchmark", "epochs", "max_steps", "batch_size", "lr", "weight_decay", "data_root", "encoder",
                  "pretrained", "options")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (``None`` for a single value) of ``n`` values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise ValueError("Stat.of needs at least one value")
        values = [float(v) for v in values]
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), std, len(values))


@dataclass
class Setting:
    """One row of a comparison: a configuration trained with one or more seeds."""

    label: str
    config: dict[str, Any]
    runs: list[RunRecord]
    metrics: dict[str, dict[str, Stat]]
    #: Δp figures over seeds; ``None`` when undefined for some seed (see ``notes``)
    delta_task: Stat | None = None
    delta_metric: Stat | None = None
    delta_m: Stat | None = None
    #: per-task improvement over STL (mean over the task's metrics), over seeds
    per_task: dict[str, Stat] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    is_baseline: bool = False

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


@dataclass(frozen=True)
class Column:
    """A numeric column: a task metric (``task``/``metric`` set) or an improvement figure."""

    key: str  # "<task>/<metric>", "delta_p_task", "delta_p_metric" or "delta_m"
    header: str
    lower_is_better: bool
    decimals: int
    task: str | None = None
    metric: str | None = None

    def value(self, row: Setting) -> Stat | None:
        if self.task is not None:
            return row.metrics.get(self.task, {}).get(self.metric)
        return {"delta_p_task": row.delta_task, "delta_p_metric": row.delta_metric, "delta_m": row.delta_m}[self.key]


@dataclass
class Comparison:
    """Everything one benchmark's table and plots show."""

    benchmark: str
    tasks: tuple[str, ...]
    columns: list[Column]
    baselines: list[Setting]
    settings: list[Setting]
    published: list[PublishedResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: our ranking against the published entries that name ``ours`` (None: none to compare)
    agreement: RankAgreement | None = None

    def best(self, column: Column) -> set[int]:
        """Indices of the settings with the best mean in ``column`` at its printed precision
        (ties are all best); empty when fewer than two settings have a value."""
        shown = {i: round(s.mean, column.decimals) for i, row in enumerate(self.settings)
                 if (s := column.value(row)) is not None}
        if len(shown) < 2:
            return set()
        target = min(shown.values()) if column.lower_is_better else max(shown.values())
        return {i for i, v in shown.items() if v == target}


# ---- baselines -------------------------------------------------------------------------------


class BaselineIndex:
    """Single-task runs by (benchmark, task, budget), from the given runs and the folders beside
    each run (read once per folder)."""

    def __init__(self, records: Sequence[RunRecord]) -> None:
        self._by_key: dict[tuple[str, str, str], list[RunRecord]] = {}
        self._scanned: set[Path] = set()
        self._by_path: dict[Path, RunRecord] = {}
        for record in records:
            self._add(record)

    def _add(self, record: RunRecord) -> None:
        path = record.path.resolve()
        if path in self._by_path:
            return
        self._by_path[path] = record
        if record.single_task:
            key = (record.benchmark, record.single_task, record.budget_key())
            self._by_key.setdefault(key, []).append(record)

    def _scan(self, folder: Path, warnings: list[str]) -> None:
        folder = folder.resolve()
        if folder in self._scanned or not folder.is_dir():
            return
        self._scanned.add(folder)
        for child in sorted(folder.iterdir()):
            if (child / "results.json").exists() and child.resolve() not in self._by_path:
                try:
                    self._add(read_run(child))
                except RunFolderError as exc:
                    warnings.append(str(exc))

    def _listed(self, run: RunRecord, warnings: list[str]) -> dict[str, RunRecord] | None:
        listed = run.extras.get("baselines")
        if listed is None:
            return None
        if not isinstance(listed, Mapping) or not all(isinstance(v, str) for v in listed.values()):
            warnings.append(f"{run.path / 'results.json'}: `baselines` is not a task -> folder mapping; "
                            "matching single-task runs by budget instead")
            return None
        found = {}
        for task, folder in listed.items():
            path = Path(folder)
            path = path if path.is_absolute() else run.path / path
            resolved = path.resolve()
            if resolved not in self._by_path and (path / "results.json").exists():
                try:
                    self._add(read_run(path))
                except RunFolderError as exc:
                    warnings.append(str(exc))
            if resolved in self._by_path:
                found[task] = self._by_path[resolved]
        return found if set(found) == set(run.tasks) else None

    def baselines(self, run: RunRecord, warnings: list[str]) -> dict[str, RunRecord] | None:
        """Task -> baseline run for ``run``, or ``None`` (with a warning) if one is missing."""
        listed = self._listed(run, warnings)
        if listed is not None:
            return listed
        self._scan(run.path.parent, warnings)
        budget = run.budget_key()
        found, missing = {}, []
        for task in run.tasks:
            candidates = self._by_key.get((run.benchmark, task, budget), [])
            if not candidates:
                missing.append(task)
                continue
            near = [c for c in candidates if c.path.parent.resolve() == run.path.parent.resolve()]
            found[task] = min(near or candidates, key=lambda r: str(r.path))
        if missing:
            warnings.append(f"{run.path}: no finished single-task baseline for {missing} at budget {budget} "
                            f"(seed {run.seed}); its Δp is n/a")
            return None
        return found


# ---- labels ----------------------------------------------------------------------------------


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_compact(v)}" for k, v in value.items()) + "}"
    return str(value)


def _preset_of(config: Mapping[str, Any]) -> tuple[str | None, set[str]]:
    """The method preset a resolved config matches (e.g. ``repmtl``) and the fields it explains."""
    for name, (_, fields) in PRESETS.items():
        if all(config.get(k) == v for k, v in fields.items()):
            return name, set(fields)
    return None, set()


def _args_text(args: Mapping[str, Any]) -> list[str]:
    return [f"{k}={_compact(v)}" for k, v in sorted(args.items())]


def _is_loss_weighting(config: Mapping[str, Any]) -> bool:
    method = str(config.get("method"))
    return method in M.available() and M.lookup(method).consumes == "losses"


def _labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Readable, distinct row names: the method (or its preset), its regularizer, its arguments,
    and every other field that differs between the rows (fields a preset sets count as part of
    the preset's name). A non-hard-sharing architecture leads the name (``mtan ew``); a run
    folder written before architectures existed is hard sharing."""
    shown_always = {"method", "method_args", "regularizer", "regularizer_args", "architecture", "architecture_args"}
    ignored = shown_always | {"seed", "single_task", "out", "name", "device", "progress", "num_workers", "log_every"}
    presets = [_preset_of(c) for c in configs]
    own = [{k: json.dumps(v, sort_keys=True) for k, v in c.items() if k not in ignored and k not in explained}
           for c, (_, explained) in zip(configs, presets)]
    keys = sorted({k for fields in own for k in fields})
    varying = [k for k in keys if len({fields[k] for fields in own if k in fields}) > 1]
    labels = []
    for config, (preset, explained) in zip(configs, presets):
        name = preset or str(config.get("method"))
        regularizer = config.get("regularizer")
        if regularizer and "regularizer" not in explained:
            name += f"+{regularizer}"
        parts = [name, *_args_text(config.get("method_args") or {}), *_args_text(config.get("regularizer_args") or {})]
        architecture = config.get("architecture") or "hps"
        if architecture != "hps":
            parts = [architecture, *_args_text(config.get("architecture_args") or {}), *parts]
        # a loss weighting has no level (None; older run folders wrote "parameters" for it)
        parts += [f"{k}={_compact(config.get(k))}" for k in varying if k not in explained
                  and not (k == "level" and _is_loss_weighting(config))]
        labels.append(" ".join(parts))
    counts: dict[str, int] = {}
    for i, label in enumerate(labels):
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > 1:
            labels[i] = f"{label} #{counts[label]}"
    return labels


# ---- summarising -----------------------------------------------------------------------------


def _metric_stats(runs: Sequence[RunRecord], tasks: Sequence[str]) -> dict[str, dict[str, Stat]]:
    out: dict[str, dict[str, Stat]] = {}
    for task in tasks:
        names = [m for m in runs[0].test[task]]
        out[task] = {m: Stat.of([r.test[task][m] for r in runs]) for m in names
                     if all(math.isfinite(r.test[task].get(m, math.nan)) for r in runs)}
    return out


def _improvements(setting: Setting, index: BaselineIndex, warnings: list[str]) -> list[RunRecord]:
    """Fill the setting's Δp figures; return the baseline runs it was compared with."""
    per_seed: list[Improvement] = []
    used: list[RunRecord] = []
    for run in setting.runs:
        stl = index.baselines(run, warnings)
        if stl is None:
            setting.notes.append(f"seed {run.seed}: no single-task baseline")
            continue
        used += stl.values()
        improvement, reason = delta_p_or_reason(run.test, {t: b.test[t] for t, b in stl.items()}, run.lower_is_better)
        if improvement is None:
            folders = ", ".join(str(b.path) for b in stl.values())
            message = f"{setting.label}, seed {run.seed}: {reason} (baselines {folders}); Δp shown as n/a"
            setting.notes.append(f"seed {run.seed}: {reason}")
            warnings.append(message)
            continue
        per_seed.append(improvement)
    if len(per_seed) != len(setting.runs) or not per_seed:
        return used
    setting.delta_task = Stat.of([i.task for i in per_seed])
    setting.delta_metric = Stat.of([i.metric for i in per_seed])
    setting.delta_m = Stat.of([-i.metric for i in per_seed])
    setting.per_task = {t: Stat.of([statistics.fmean(i.per_metric[t].values()) for i in per_seed])
                        for t in per_seed[0].per_metric}
    return used


def _decimals(values: Sequence[float]) -> int:
    """Paper-style precision: 2 decimals for values of magnitude ≥ 1 (accuracy %, angles),
    4 below (depth errors in metres, fractions)."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    return 2 if finite and statistics.median(finite) >= 1 else 4


def _group(records: Sequence[RunRecord], warnings: list[str]) -> list[tuple[str, list[RunRecord]]]:
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.identity(), []).append(record)
    out = []
    for identity, runs in groups.items():
        runs.sort(key=lambda r: (r.seed, str(r.path)))
        seeds = [r.seed for r in runs]
        duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
        if duplicates:
            kept = {}
            for run in runs:
                kept.setdefault(run.seed, run)
            dropped = [str(r.path) for r in runs if kept[r.seed] is not r]
            warnings.append(f"seeds {duplicates} of one setting appear in several folders; using the first, "
                            f"ignoring {dropped}")
            runs = list(kept.values())
        out.append((identity, runs))
    return out


def _budget_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    identity = {k: config.get(k) for k in _BUDGET_FIELDS}
    if config.get("precision", "fp32") != "fp32":  # as TrainConfig.budget_key: only when not fp32
        identity["precision"] = config["precision"]
    if config.get("freeze_encoder"):  # as TrainConfig.budget_key: only when set
        identity["freeze_encoder"] = True
    return identity


def _benchmark_comparison(benchmark: str, runs: list[RunRecord], index: BaselineIndex,
                          published: Sequence[PublishedResult]) -> Comparison:
    warnings: list[str] = []
    tasks = runs[0].tasks
    odd = sorted({str(r.path) for r in runs if r.tasks != tasks})
    if odd:
        raise RunFolderError(f"runs of {benchmark} have different tasks: {list(tasks)} in {runs[0].path}, "
                             f"others in {odd}; compare them separately")
    groups = _group(runs, warnings)
    labels = _labels([g[1][0].config for g in groups])
    settings = [Setting(label, rs[0].config, rs, _metric_stats(rs, tasks)) for label, (_, rs) in zip(labels, groups)]
    settings.sort(key=lambda s: s.label.lower())
    stl_runs: dict[str, dict[str, RunRecord]] = {}  # budget identity -> "task/seed" -> run
    for setting in settings:
        for base in _improvements(setting, index, warnings):
            budget = json.dumps(_budget_identity(base.config), sort_keys=True)
            stl_runs.setdefault(budget, {})[f"{base.single_task}/{base.seed}"] = base
    baselines = _baseline_rows(stl_runs, tasks)
    lower = runs[0].lower_is_better
    metric_names = [(t, m) for t in tasks for m in runs[0].test[t]]
    columns = []
    for task, metric in metric_names:
        values = [s.mean for row in settings + baselines if (s := row.metrics.get(task, {}).get(metric))]
        arrow = "↓" if lower[task][metric] else "↑"
        columns.append(Column(f"{task}/{metric}", f"{task} {metric} {arrow}", lower[task][metric],
                              _decimals(values), task, metric))
    columns.append(Column("delta_p_task", "Δp_task % ↑", False, 2))
    columns.append(Column("delta_p_metric", "Δp_metric % ↑", False, 2))
    mine = [p for p in published if p.applies_to(benchmark)]
    if any(p.delta_m is not None for p in mine):
        columns.append(Column("delta_m", "Δm % ↓", True, 2))
    for entry in mine:
        unknown = sorted(set(entry.metrics) - {c.key for c in columns})
        if unknown:
            warnings.append(f"{entry.source}: published {entry.method} numbers for unknown columns {unknown} "
                            f"of {benchmark} (columns: {[c.key for c in columns if c.task]})")
    rows = [OurRow(s.label, s.config, s.delta_m.mean if s.delta_m else None,
                   s.delta_task.mean if s.delta_task else None) for s in settings]
    agreement = rank_agreement(rows, mine, warnings)
    return Comparison(benchmark, tasks, columns, baselines, settings, mine, warnings, agreement)


def _baseline_rows(stl_runs: Mapping[str, Mapping[str, RunRecord]], tasks: Sequence[str]) -> list[Setting]:
    configs = [json.loads(budget) for budget in stl_runs]
    rows = []
    for config, (budget, by_task_seed) in zip(configs, stl_runs.items()):
        metrics: dict[str, dict[str, Stat]] = {}
        runs = []
        for task in tasks:
            per_task = [r for key, r in sorted(by_task_seed.items()) if key.rsplit("/", 1)[0] == task]
            runs += per_task
            if per_task:
                names = per_task[0].test[task]
                metrics[task] = {m: Stat.of([r.test[task][m] for r in per_task]) for m in names
                                 if all(math.isfinite(r.test[task].get(m, math.nan)) for r in per_task)}
        rows.append(Setting("STL", config, runs, metrics, is_baseline=True))
    if len(rows) > 1:
        varying = [k for k in _BUDGET_FIELDS if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
        for row, config in zip(rows, configs):
            row.label = "STL " + " ".join(f"{k}={_compact(config.get(k))}" for k in varying)
    return rows


def summarize(records: Sequence[RunRecord], published: Sequence[PublishedResult] = ()) -> list[Comparison]:
    """One :class:`Comparison` per benchmark among the multi-task runs in ``records``
    (single-task runs serve as baselines; those not given are looked up beside each run)."""
    index = BaselineIndex(records)
    by_benchmark: dict[str, list[RunRecord]] = {}
    for record in records:
        if not record.single_task:
            by_benchmark.setdefault(record.benchmark, []).append(record)
    return [_benchmark_comparison(b, runs, index, published) for b, runs in sorted(by_benchmark.items())]
