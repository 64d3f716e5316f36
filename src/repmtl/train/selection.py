"""Which epoch a run keeps: model selection on validation.

With single-task validation scores (the baselines of the same budget) an epoch is scored by
``Δp_task`` against them; without (a smoke run, or the baselines themselves), by the mean signed
relative change of each task's primary metric against the first epoch; a single task by its
primary metric. The best epoch is the one with the highest score (``docs/formulas.md``, Δp).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from repmtl.metrics.improvement import delta_p
from repmtl.tasks import Task

Scores = dict[str, dict[str, float]]


class Selection:
    """Scores epochs and remembers the best; its state travels in the checkpoint."""

    def __init__(self, tasks: Sequence[Task], baseline_val: Scores | None = None) -> None:
        self.tasks = list(tasks)
        self.baseline_val = baseline_val
        self.best_score = -float("inf")
        self.best_epoch = -1  # 1-based epoch of best.pt
        self.reference_val: Scores | None = None

    def score(self, val: Scores) -> float:
        directions = {t.name: t.lower_is_better for t in self.tasks}
        if len(self.tasks) == 1:
            task = self.tasks[0]
            value = val[task.name][task.primary]
            return -value if task.lower_is_better[task.primary] else value
        if self.baseline_val is not None:
            return delta_p(val, {t.name: self.baseline_val[t.name] for t in self.tasks}, directions).task
        if self.reference_val is None:
            self.reference_val = val
        primary = {t.name: {t.primary: self.reference_val[t.name][t.primary]} for t in self.tasks}
        return delta_p(val, primary, directions).task

    def consider(self, epoch: int, score: float) -> bool:
        """Whether ``epoch`` (1-based) with ``score`` is the new best (then it is remembered)."""
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "reference_val": self.reference_val}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.reference_val = state["reference_val"]
