"""Ranking similarity between gradient diagnostics and task performance (Mao et al.,
"Rethinking Resource Competition in Multi-Task Learning", IEEE Access 2024, Tables 2 and 6
bottom-up, Table 7 top-down).

Recipe: many optimisation methods (loss weighting and gradient manipulation) on the same
budget, every run logging its diagnostics at the representation level, so that every method
is measured the same way; each benchmark twice: as it is (bottom-up) and as
``attention-<benchmark>`` (:mod:`repmtl.data.attention`: every head attention-augmented,
``H_t(A_t(Z) ⊙ Z)``, Mao et al. Eq. 8), whose runs also log the top-down Feature
Disentanglement of the attention maps ``A_t(Z)`` (``diag/fd_attention``).

Analysis, per benchmark: each method (a setting, over its seeds) gets

* for each diagnostic (GDS, GMS, FD, κ(J); on ``attention-`` benchmarks also the top-down FD)
  its *final value*: the mean over the last 10 % of the logged steps of each run, then the mean
  over seeds;
* for each task metric its test value (mean over seeds), oriented so that higher is better.

The ranking similarity ``S`` of the two orderings of the methods (Mao et al. Eq. 11,
:func:`repmtl.diagnostics.ranking.ranking_similarity`, ties counted ½) is reported as
``|S − 0.5|`` (0: the diagnostic says nothing about the metric's ranking, 0.5: it orders the
methods exactly, or exactly reversed); ``S`` itself shows the direction (``S > 0.5``: a higher
diagnostic goes with a better metric).

Bottom-up: the saliencies ``∂L_t/∂Z`` (GDS, GMS, κ from their Gramian, FD from the maps).
Top-down: FD of the attention maps. On an ``attention-`` benchmark the gradient diagnostics
are still bottom-up, measured on the attention-augmented network; its table shows them beside
the top-down FD, so the two attributions of the same runs can be compared.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from repmtl import logkeys as K
from repmtl.data import available_benchmarks
from repmtl.data.attention import PREFIX
from repmtl.diagnostics.ranking import ranking_similarity
from repmtl.experiments.aggregate import Comparison, summarize
from repmtl.experiments.runs import RunRecord
from repmtl.experiments.studies.base import (
    Budget,
    StudyOutput,
    StudyTable,
    header,
    tail_mean,
)

__all__ = ["DIAGNOSTICS", "METHODS", "TOP_DOWN", "analyse", "recipe"]

#: bottom-up diagnostic name -> steps.jsonl key (:mod:`repmtl.diagnostics.live`)
DIAGNOSTICS = {"GDS": K.DIAG_GDS.key(), "GMS": K.DIAG_GMS.key(), "FD": K.DIAG_FD.key(), "κ(J)": K.DIAG_COND.key()}
#: the top-down diagnostic, logged by runs of ``attention-`` benchmarks
TOP_DOWN = {"FD top-down": K.DIAG_FD_ATTENTION.key()}
REFERENCE = "Mao et al., Rethinking Resource Competition in Multi-Task Learning, Tables 2, 6 (bottom-up) and 7 (top-down)"
#: loss-weighting and gradient methods whose diagnostics are ranked
METHODS = ("ew", "uw", "dwa", "rlw", "avgnorm", "mgda", "pcgrad", "cagrad", "imtl", "nashmtl", "gradvac",
           "alignedmtl")


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    """Every method on each benchmark and on its ``attention-`` twin (when it has one)."""
    registered = available_benchmarks()
    both: list[str] = []
    for benchmark in benchmarks:
        twin = PREFIX + benchmark
        both += [benchmark, twin] if not benchmark.startswith(PREFIX) and twin in registered else [benchmark]
    text = header("ranking", "Ranking similarity of diagnostics and task metrics", REFERENCE, both, seeds)
    text += "\n" + budget.train_table(diagnostics_level="representation", log_every=budget.diagnostics_every or 10)
    return text + "".join(f'\n[[methods]]\nname = "{m}"\n' for m in METHODS)


def _final_values(comparison: Comparison, diagnostics: dict[str, str], output: StudyOutput) -> dict[str, list[float]]:
    """Diagnostic name -> its final value per setting (mean over seeds); a diagnostic missing
    for any setting is left out with a warning."""
    found: dict[str, list[float]] = {}
    for name, key in diagnostics.items():
        values = []
        for setting in comparison.settings:
            per_seed = [v for run in setting.runs if (v := tail_mean(run.path, key)) is not None]
            values.append(statistics.fmean(per_seed) if per_seed else None)
        missing = [s.label for s, v in zip(comparison.settings, values) if v is None]
        if missing:
            output.warnings.append(f"{comparison.benchmark}: no finite `{key}` logged for {missing}; {name} "
                                   "left out (train with diagnostics on)")
            continue
        found[name] = values
    return found


def _similarity_table(comparison: Comparison, top_down: bool, output: StudyOutput) -> None:
    settings = comparison.settings
    wanted = {**DIAGNOSTICS, **TOP_DOWN} if top_down else DIAGNOSTICS
    diagnostics = _final_values(comparison, wanted, output)
    if not diagnostics:
        return
    variant = "top-down (attention heads)" if top_down else "bottom-up"
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
        record = {"benchmark": comparison.benchmark, "variant": variant, "task": column.task, "metric": column.metric,
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
        return
    means = [statistics.fmean(col) for col in zip(*grid)]
    rows.append(["mean over metrics", *(f"{m:.2f}" for m in means)])
    notes = [(f"{len(settings)} methods ({', '.join(s.label for s in settings)}); seeds per method: "
              f"{sorted({len(s.runs) for s in settings})}."),
             ("Diagnostic: mean over the last 10 % of logged steps, then over seeds; metric: test value at the "
              "selected epoch, mean over seeds, oriented higher = better. S > 0.5: a higher diagnostic goes with a "
              "better metric.")]
    if top_down:
        notes.append("Network with attention-augmented heads H_t(A_t(Z) ⊙ Z); FD top-down: FD of the attention maps "
                     "A_t(Z); GDS, GMS, FD and κ(J) are the bottom-up (saliency) diagnostics of the same runs.")
    else:
        notes.append("Bottom-up (saliency ∂L_t/∂Z) diagnostics.")
    output.tables.append(StudyTable(f"{comparison.benchmark}: |S − 0.5| per task metric and diagnostic, {variant}",
                                    ["task metric", *diagnostics], rows, data, notes))
    output.plot_data.setdefault("panels", []).append({
        "benchmark": comparison.benchmark, "variant": variant, "rows": [r[0] for r in rows[:-1]],
        "columns": list(diagnostics), "values": grid, "methods": len(settings)})


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    """The bottom-up table of every benchmark and the top-down table of every ``attention-`` one."""
    output = StudyOutput(plot_data={"panels": []})
    comparisons = sorted(summarize(records), key=lambda c: (c.benchmark.removeprefix(PREFIX), c.benchmark.startswith(PREFIX)))
    for comparison in comparisons:  # each benchmark's bottom-up table, then its top-down twin's
        output.warnings += comparison.warnings
        if len(comparison.settings) < 3:
            output.warnings.append(f"{comparison.benchmark}: {len(comparison.settings)} method(s); ranking needs at "
                                   "least 3")
            continue
        _similarity_table(comparison, comparison.benchmark.startswith(PREFIX), output)
    return output
