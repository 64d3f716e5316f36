"""Relative multi-task improvement Δp against single-task baselines
(``docs/formulas.md#evaluation-relative-improvement``).

``Δp_task = 1/T Σ_t 1/n_t Σ_k (−1)^σ_tk (M_m,tk − M_b,tk) / M_b,tk × 100`` and
``Δp_metric`` is the same relative change averaged over every metric of every task.
``σ_tk = 1`` when lower is better. The ``Δ_m`` of Guo et al. (arXiv 2509.23915, 2025), Eq. 5, is
``Δp_task`` with one metric per task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Scores = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Improvement:
    """Δp in percent: averaged per task first (``task``), over all metrics (``metric``), and
    the relative change of every single metric (``per_metric[task][metric]``)."""

    task: float
    metric: float
    per_metric: dict[str, dict[str, float]]

    @property
    def delta_m(self) -> float:
        """Δm% of Maninis et al. (CVPR 2019) as Nash-MTL (Navon et al., ICML 2022, §6) reports it:
        the mean relative change of every metric, positive when worse, i.e. ``−Δp_metric``."""
        return -self.metric


def delta_p(
    multi_task: Scores, baseline: Scores, lower_is_better: Mapping[str, Mapping[str, bool]]
) -> Improvement:
    """Compare ``multi_task`` scores against ``baseline`` (single-task) scores.

    All three mappings are ``task -> metric -> value``; every metric of ``baseline`` must be
    present in ``multi_task`` and in ``lower_is_better``.
    """
    if not baseline:
        raise ValueError("delta_p needs at least one baseline task")
    per_metric: dict[str, dict[str, float]] = {}
    for task, base_metrics in baseline.items():
        if task not in multi_task:
            raise KeyError(f"task {task!r} has a baseline but no multi-task scores")
        per_metric[task] = {}
        for name, base in base_metrics.items():
            if name not in multi_task[task]:
                raise KeyError(f"metric {task}/{name} missing from the multi-task scores")
            if base == 0:
                raise ValueError(f"baseline {task}/{name} is 0: relative improvement undefined")
            sign = -1.0 if lower_is_better[task][name] else 1.0
            per_metric[task][name] = sign * (multi_task[task][name] - base) / abs(base) * 100.0
    task_means = [sum(v.values()) / len(v) for v in per_metric.values()]
    all_values = [x for v in per_metric.values() for x in v.values()]
    return Improvement(
        task=sum(task_means) / len(task_means),
        metric=sum(all_values) / len(all_values),
        per_metric=per_metric,
    )


def delta_p_or_reason(
    multi_task: Scores, baseline: Scores, lower_is_better: Mapping[str, Mapping[str, bool]]
) -> tuple[Improvement | None, str | None]:
    """:func:`delta_p`, or ``(None, reason)`` when it is undefined: a baseline metric is 0 (a
    smoke run's single-task accuracy, say) or a value is not finite. Meant for the end of a
    finished run and for tables, where "n/a" with the reason beats an exception."""
    zero = [f"{t}/{m}" for t, ms in baseline.items() for m, v in ms.items() if v == 0]
    if zero:
        return None, f"single-task baseline {', '.join(zero)} is 0, so the relative change (Δp) is undefined"
    bad = [f"{t}/{m}" for scores in (multi_task, baseline) for t, ms in scores.items()
           for m, v in ms.items() if not math.isfinite(v)]
    if bad:
        return None, f"non-finite metric(s) {', '.join(sorted(set(bad)))}, so Δp is undefined"
    return delta_p(multi_task, baseline, lower_is_better), None
