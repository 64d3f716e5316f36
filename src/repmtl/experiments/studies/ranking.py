"""Ranking similarity between gradient diagnostics and task performance (Mao et al.,
"Rethinking Resource Competition in Multi-Task Learning", Tables 2 and 6; Table 7, the
top-down variant, is not covered).

Recipe: many optimisation methods (loss weighting and gradient manipulation) on the same
budget, every run logging its diagnostics at the representation level, so that every method
is measured the same way.

Analysis, per benchmark: each method (a setting, over its seeds) gets

* for each diagnostic (GDS, GMS, FD, κ(J)) its *final value*: the mean over the last 10 % of
  the logged steps of each run, then the mean over seeds;
* for each task metric its test value (mean over seeds), oriented so that higher is better.

The ranking similarity ``S`` of the two orderings of the methods (Mao et al. Eq. 11,
:func:`repmtl.diagnostics.ranking.ranking_similarity`, ties counted ½) is reported as
``|S − 0.5|`` (0: the diagnostic says nothing about the metric's ranking, 0.5: it orders the
methods exactly, or exactly reversed); ``S`` itself shows the direction (``S > 0.5``: a higher
diagnostic goes with a better metric).

These are the *bottom-up* diagnostics (saliencies ``∂L_t/∂Z``); the top-down variant through
attention heads (Mao et al. Table 7) needs attention maps logged during training, which the
trainer does not do yet.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from repmtl.diagnostics.ranking import ranking_similarity
from repmtl.experiments.aggregate import summarize
from repmtl.experiments.runs import RunRecord
from repmtl.experiments.studies.base import (
    Budget,
    StudyOutput,
    StudyTable,
    header,
    tail_mean,
)

__all__ = ["DIAGNOSTICS", "METHODS", "analyse", "recipe"]

#: diagnostic name -> steps.jsonl key (:mod:`repmtl.diagnostics.live`)
DIAGNOSTICS = {"GDS": "diag/gds", "GMS": "diag/gms", "FD": "diag/fd", "κ(J)": "diag/cond"}
#: loss-weighting and gradient methods whose diagnostics are ranked
METHODS = ("ew", "uw", "dwa", "rlw", "avgnorm", "mgda", "pcgrad", "cagrad", "imtl", "nashmtl", "gradvac",
           "alignedmtl")


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    text = header("ranking", "Ranking similarity of diagnostics and task metrics",
                  "Mao et al., Rethinking Resource Competition in Multi-Task Learning, Tables 2 and 6 (bottom-up)",
                  benchmarks, seeds)
    text += "\n" + budget.train_table(diagnostics_level="representation", log_every=budget.diagnostics_every or 10)
    return text + "".join(f'\n[[methods]]\nname = "{m}"\n' for m in METHODS)


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    output = StudyOutput()
    panels = []
    for comparison in summarize(records):
        output.warnings += comparison.warnings
        settings = comparison.settings
        if len(settings) < 3:
            output.warnings.append(f"{comparison.benchmark}: {len(settings)} method(s); ranking needs at least 3")
            continue
        diagnostics: dict[str, list[float]] = {}
        for name, key in DIAGNOSTICS.items():
            values = []
            for setting in settings:
                per_seed = [v for run in setting.runs if (v := tail_mean(run.path, key)) is not None]
                values.append(statistics.fmean(per_seed) if per_seed else None)
            missing = [s.label for s, v in zip(settings, values) if v is None]
            if missing:
                output.warnings.append(f"{comparison.benchmark}: no finite `{key}` logged for {missing}; {name} "
                                       "left out (train with diagnostics on)")
                continue
            diagnostics[name] = values
        if not diagnostics:
            continue
        rows, data, grid = [], [], []
        for column in comparison.columns:
            if column.task is None:
                continue
            stats = [column.value(s) for s in settings]
            if any(s is None for s in stats):
                output.warnings.append(f"{comparison.benchmark}: {column.key} is not finite for every method; skipped")
                continue
            oriented = [-s.mean if column.lower_is_better else s.mean for s in stats]
            cells, line = [], []
            record = {"benchmark": comparison.benchmark, "task": column.task, "metric": column.metric,
                      "methods": len(settings)}
            for name, values in diagnostics.items():
                result = ranking_similarity(oriented, values)
                cells.append(f"{result.symmetric:.2f} (S {result.similarity:.2f})")
                line.append(result.symmetric)
                record[f"{name}_S"] = result.similarity
                record[f"{name}_abs"] = result.symmetric
            rows.append([f"{column.task} {column.metric}", *cells])
            data.append(record)
            grid.append(line)
        if not rows:
            continue
        means = [statistics.fmean(col) for col in zip(*grid)]
        rows.append(["mean over metrics", *(f"{m:.2f}" for m in means)])
        output.tables.append(StudyTable(
            f"{comparison.benchmark}: |S − 0.5| per task metric and diagnostic", ["task metric", *diagnostics],
            rows, data,
            [(f"{len(settings)} methods ({', '.join(s.label for s in settings)}); seeds per method: "
              f"{sorted({len(s.runs) for s in settings})}."),
             ("Diagnostic: mean over the last 10 % of logged steps, then over seeds; metric: test value at the "
              "selected epoch, mean over seeds, oriented higher = better. S > 0.5: a higher diagnostic goes with a "
              "better metric."),
             "Bottom-up (saliency) diagnostics; Mao et al.'s top-down (attention-head) variant is not measured."]))
        panels.append({"benchmark": comparison.benchmark, "rows": [r[0] for r in rows[:-1]],
                       "columns": list(diagnostics), "values": grid, "methods": len(settings)})
    output.plot_data = {"panels": panels}
    return output
