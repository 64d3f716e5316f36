"""Data quality and quantity (Guo et al., "Revisit the Imbalance Optimization in Multi-task
Learning", Table V): how label noise on one task, or less training data, changes single-task
and multi-task learning.

Recipe, per benchmark ``B``: the ``perturbed-B`` benchmark (:mod:`repmtl.data.perturbed`) under
several data *conditions*: clean; label noise on each task in turn (:data:`NOISE` per kind:
symmetric label noise for classification, up to five present classes relabelled per sample for
segmentation, Gaussian noise for depth and normals); and training subsets (:data:`FRACTIONS`).
Each condition trains EW and, as the sweep's single-task baselines, one STL model per task,
so single- and multi-task learning see the same data.

Analysis, per benchmark and condition, for each task's primary metric (means over seeds):

* ``STL Δ`` and ``MTL Δ``: the relative change ``(−1)^σ (M_c − M_clean) / |M_clean| × 100``
  against the clean condition's single-task / multi-task result (positive: better);
* ``MTL vs STL``: the multi-task result against the single-task one of the same condition,
  the same relative change (Δp of that task).

Whole scenes (Guo et al.'s NYUv2 scenes): on a benchmark whose samples come in camera views of
one scene (``synthscenes`` with ``views``), every condition of the recipe is trained at
:data:`VIEWS` views per room, including its own clean reference, and each fraction of the data
is also taken as that fraction of whole scenes (``scenes``): the same amount of data from fewer
distinct rooms. Office has no whole-source subset (each source is a task); ``fraction_task``
restricts a subset to one task's data on multi-input benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data.perturbed import OPTIONS, whole_scenes_available
from repmtl.experiments.aggregate import Comparison, Setting, summarize
from repmtl.experiments.runs import RunRecord
from repmtl.experiments.studies.base import (
    Budget,
    StudyOutput,
    StudyTable,
    fmt,
    header,
    toml_value,
)

__all__ = ["FRACTIONS", "NOISE", "VIEWS", "analyse", "recipe"]

#: noise per target kind (classification / segmentation: a rate; depth / normals: a std)
NOISE = {"segmentation": 0.5, "classification": 0.5, "depth": 0.5, "normal": 0.5}
FRACTIONS = (0.5, 0.25)
#: camera views per room on benchmarks with whole scenes (``views``): 2048 images of 512 rooms
VIEWS = 4
#: options that shape the data set itself rather than perturb it: a condition's clean reference
#: is the run with the same values of these
STRUCTURE = ("views",)
METHOD = "ew"


def _kind(task: str) -> str:
    """The noise kind of a task: dense tasks by name, every other task is a class label
    (multidigits, Office)."""
    return task if task in NOISE else "classification"


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    text = header("data", "Data quality and quantity",
                  "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Table V", [], seeds)
    entries = []
    for benchmark in benchmarks:
        name = f"perturbed-{benchmark}"
        tasks = [t.name for t in get_benchmark(name).tasks(BuildOptions())]
        conditions: list[dict[str, Any]] = [{}]
        conditions += [{"noise_task": t, "noise": NOISE[_kind(t)]} for t in tasks]
        conditions += [{"fraction": f} for f in FRACTIONS]
        scenes = whole_scenes_available(name, VIEWS)
        if scenes:
            conditions += [{"scenes": max(1, round(scenes * f))} for f in FRACTIONS]
            conditions = [{"views": VIEWS, **c} for c in conditions]
        entries += [f"  {{ name = {toml_value(name)}, options = {toml_value(c)} }},\n" if c else
                    f"  {{ name = {toml_value(name)} }},\n" for c in conditions]
    text = text.replace("benchmarks = []\n", "benchmarks = [\n" + "".join(entries) + "]\n")
    return text + "\n" + budget.train_table() + f'\n[[methods]]\nname = "{METHOD}"\n'


def _condition(options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if k in OPTIONS or k in STRUCTURE}


def _clean_of(condition: Mapping[str, Any]) -> dict[str, Any]:
    """The clean, full-data reference of a condition: the same data structure, nothing perturbed."""
    return {k: v for k, v in condition.items() if k in STRUCTURE}


def _structure_label(condition: Mapping[str, Any]) -> str:
    return f"{condition['views']} views per room" if "views" in condition else ""


def _condition_label(condition: Mapping[str, Any], *, structure: bool = True) -> str:
    """``structure=False``: leave out the data structure (``views``), e.g. when a table's title
    states it for every row."""
    views = f" ({_structure_label(condition)})" if structure and "views" in condition else ""
    perturbation = {k: v for k, v in condition.items() if k not in STRUCTURE}
    if not perturbation:
        return "clean, all data" + views
    parts = []
    if "scenes" in condition:
        parts.append(f"{condition['scenes']} whole scenes")
    if "noise_task" in condition:
        parts.append(f"noise on {condition['noise_task']} ({condition.get('noise')})")
    if "fraction" in condition:
        parts.append(f"{float(condition['fraction']):g} of the training data"
                     + (f" of {condition['fraction_task']}" if "fraction_task" in condition else ""))
    return ", ".join(parts) + views


def _key(options: Mapping[str, Any] | None) -> str:
    return json.dumps(_condition(options), sort_keys=True)


def _clean_key(condition: str) -> str:
    return _key(_clean_of(json.loads(condition)))


def _change(value: float | None, reference: float | None, lower: bool) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return (-1.0 if lower else 1.0) * (value - reference) / abs(reference) * 100.0


def _mean(setting: Setting | None, task: str, metric: str) -> float | None:
    if setting is None:
        return None
    stat = setting.metrics.get(task, {}).get(metric)
    return stat.mean if stat else None


def _benchmark(comparison: Comparison, output: StudyOutput) -> None:
    bench = get_benchmark(comparison.benchmark)
    primary = {t.name: (t.primary, t.lower_is_better[t.primary]) for t in bench.tasks(BuildOptions())}
    tasks = [t for t in comparison.tasks if t in primary]
    mtl: dict[str, Setting] = {}
    for setting in comparison.settings:
        if setting.config.get("method") == METHOD and not setting.config.get("regularizer"):
            mtl.setdefault(_key(setting.config.get("options")), setting)
    stl: dict[str, dict[str, Setting]] = {}  # condition -> task -> baseline row
    for row in comparison.baselines:
        for task in row.metrics:
            stl.setdefault(_key(row.config.get("options")), {})[task] = row
    conditions = sorted(set(mtl) | set(stl), key=lambda c: (c != _clean_key(c), c))
    for missing in sorted({_clean_key(c) for c in conditions} - set(conditions)):
        output.warnings.append(f"{comparison.benchmark}: no clean, full-data runs "
                               f"({_condition_label(json.loads(missing))}); changes against them are n/a")
    structures = {_structure_label(json.loads(c)) for c in conditions}
    common = structures.pop() if len(structures) == 1 else ""
    title = comparison.benchmark + (f" ({common})" if common else "")
    rows, data, series, plotted = [], [], {}, []
    for condition in conditions:
        clean = _clean_key(condition)
        label = _condition_label(json.loads(condition), structure=not common)
        cells, record = [label], {"benchmark": comparison.benchmark, "condition": label}
        for task in tasks:
            metric, lower = primary[task]
            s_c, s_0 = _mean(stl.get(condition, {}).get(task), task, metric), _mean(stl.get(clean, {}).get(task), task, metric)
            m_c, m_0 = _mean(mtl.get(condition), task, metric), _mean(mtl.get(clean), task, metric)
            values = {"stl_change": _change(s_c, s_0, lower), "mtl_change": _change(m_c, m_0, lower),
                      "mtl_vs_stl": _change(m_c, s_c, lower)}
            cells += [fmt(v, signed=True) for v in values.values()]
            record.update({f"{task}/{metric}": m_c, f"{task}/{metric}_stl": s_c,
                           **{f"{task}_{k}": v for k, v in values.items()}})
            if condition != clean:
                series.setdefault(f"{task} STL", []).append(values["stl_change"])
                series.setdefault(f"{task} MTL", []).append(values["mtl_change"])
        if condition != clean:
            plotted.append(label)
        rows.append(cells)
        data.append(record)
    headers = ["condition"] + [f"{t} {primary[t][0]} {h}" for t in tasks for h in ("STL Δ %", "MTL Δ %", "MTL vs STL %")]
    seeds = sorted({len(s.runs) for s in mtl.values()})
    output.tables.append(StudyTable(
        f"{title}: single- and multi-task learning under each data condition", headers, rows, data,
        [("STL Δ / MTL Δ: relative change of the task's primary test metric against the clean, full-data run of the "
          "same kind; MTL vs STL: EW against the single-task model of the same condition; positive: better; means "
          f"over seeds ({seeds} per condition)."),
         "Noise and subsets apply to the training split only; validation and test data are clean."]))
    output.plot_data.setdefault("panels", []).append({"title": title, "conditions": plotted,
                                                      "series": series})


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    output = StudyOutput()
    for comparison in summarize(records):
        output.warnings += comparison.warnings
        if not comparison.benchmark.startswith("perturbed-"):
            output.warnings.append(f"{comparison.benchmark}: not a perturbed- benchmark; skipped")
            continue
        _benchmark(comparison, output)
    return output

