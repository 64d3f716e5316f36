"""The representation-level surrogate (Mao et al., "Rethinking Resource Competition in
Multi-Task Learning", Table 13): every gradient method at the parameter level (the Gramian
``J Jᵀ`` of the shared parameters' Jacobian) and at the representation level (the Gramian of
the saliencies ``∂L_t/∂Z``), in paired runs of the same budget and seed.

Analysis: runs are paired when their configurations differ only in ``level``; for each pair and
metric the relative change of the representation-level run against the parameter-level one,
``(−1)^σ (M_rep − M_par) / |M_par| × 100`` (``σ = 1`` when lower is better, so positive means
the surrogate did better), from the means over seeds; Δp_task of both levels against STL where
baselines exist; and the ratio of training time per epoch (``time/epoch_s``, mean over
epochs and seeds).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from repmtl import logkeys as K
from repmtl import methods
from repmtl.experiments.aggregate import Setting, summarize
from repmtl.experiments.runs import EXECUTION_FIELDS, RunRecord
from repmtl.experiments.studies.base import (
    Budget,
    StudyOutput,
    StudyTable,
    fmt,
    header,
    mean_logged,
)

__all__ = ["analyse", "gradient_methods", "recipe"]

_LEVELS = ("parameters", "representation")
_GRADIENT_FAMILIES = ("gradient manipulation", "hybrid")
_IGNORED = EXECUTION_FIELDS | {"level", "seed"}


def gradient_methods() -> list[str]:
    """Every registered gradient-manipulation (or hybrid) method, i.e. one that needs the task
    Gramian or Jacobian, that works at both levels."""
    return sorted(name for name, cls in methods.registry().items()
                  if cls.consumes in ("gramian", "jacobian") and cls.family in _GRADIENT_FAMILIES
                  and set(_LEVELS) <= set(cls.levels))


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    text = header("surrogate", "Representation-level surrogate of gradient methods",
                  "Mao et al., Rethinking Resource Competition in Multi-Task Learning, Table 13", benchmarks, seeds)
    text += "\n" + budget.train_table()
    for method in gradient_methods():
        for level in _LEVELS:
            text += f'\n[[methods]]\nname = "{method}"\nlevel = "{level}"\n'
    return text


def _level(setting: Setting) -> str:
    level = setting.config.get("level")
    if level:
        return str(level)
    return methods.default_level(methods.lookup(str(setting.config["method"]))) or "parameters"


def _epoch_time(setting: Setting) -> float | None:
    values = [v for run in setting.runs if (v := mean_logged(run.path, K.EPOCH_TIME.key(), log="epochs.jsonl")) is not None]
    return statistics.fmean(values) if values else None


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    output = StudyOutput()
    bars = []
    for comparison in summarize(records):
        output.warnings += comparison.warnings
        pairs: dict[str, dict[str, Setting]] = {}
        for setting in comparison.settings:
            key = json.dumps({k: v for k, v in setting.config.items() if k not in _IGNORED}, sort_keys=True)
            level = _level(setting)
            if level in pairs.setdefault(key, {}):
                output.warnings.append(f"{comparison.benchmark}: two settings at {level} level for {setting.label}")
            pairs[key][level] = setting
        metric_columns = [c for c in comparison.columns if c.task is not None]
        rows, data = [], []
        for pair in pairs.values():
            if set(pair) != set(_LEVELS):
                continue
            par, rep = pair["parameters"], pair["representation"]
            name = par.label.replace(" level=parameters", "")
            seeds = sorted(set(par.seeds) & set(rep.seeds))
            if seeds != par.seeds or seeds != rep.seeds:
                output.warnings.append(f"{comparison.benchmark}, {name}: seeds differ between levels ({par.seeds} "
                                       f"vs {rep.seeds}); means use each level's own seeds")
            cells, record = [], {"benchmark": comparison.benchmark, "method": name, "seeds": len(seeds)}
            changes = []
            for column in metric_columns:
                a, b = column.value(par), column.value(rep)
                change = None
                if a is not None and b is not None and a.mean != 0:
                    sign = -1.0 if column.lower_is_better else 1.0
                    change = sign * (b.mean - a.mean) / abs(a.mean) * 100.0
                cells.append(fmt(change, signed=True))
                record[f"change_{column.key}"] = change
                changes.append(change)
            for level, setting in (("par", par), ("rep", rep)):
                stat = setting.delta_task
                cells.append(fmt(stat.mean if stat else None, signed=True, std=stat.std if stat else None))
                record[f"delta_p_task_{level}"] = stat.mean if stat else None
            t_par, t_rep = _epoch_time(par), _epoch_time(rep)
            ratio = t_rep / t_par if t_par and t_rep else None
            cells.append(fmt(ratio))
            record["time_ratio"] = ratio
            rows.append([name, *cells])
            data.append(record)
            bars.append({"benchmark": comparison.benchmark, "method": name,
                         "metrics": [c.header for c in metric_columns], "changes": changes})
        if not rows:
            output.warnings.append(f"{comparison.benchmark}: no method was run at both levels")
            continue
        columns = [f"Δ {c.header} %" for c in metric_columns] + ["Δp_task par %", "Δp_task rep %", "time rep/par"]
        output.tables.append(StudyTable(
            f"{comparison.benchmark}: representation level against parameter level", ["method", *columns],
            rows, data,
            [("Δ: relative change of the representation-level run's test metric against the parameter-level run "
              "(means over seeds; positive: the surrogate is better). Δp_task: against single-task baselines, "
              "mean ± std over seeds. time: training seconds per epoch, representation / parameters.")]))
    output.plot_data = {"bars": bars}
    return output
