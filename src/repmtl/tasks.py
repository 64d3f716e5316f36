"""A task: its name, loss, streaming metrics and which metrics are lower-is-better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from repmtl.metrics.base import StreamingMetric

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Task:
    """One task of a multi-task problem.

    Args:
        name: unique name, also the key of the task's head, batch target and loss.
        loss: ``loss(prediction, target) -> scalar`` (mean over the batch).
        metrics: factory of a fresh :class:`StreamingMetric` (called once per evaluation).
        primary: name of the metric used for single-task model selection; defaults to the
            first metric the factory's ``lower_is_better`` lists.
    """

    name: str
    loss: LossFn
    metrics: Callable[[], StreamingMetric]
    primary: str | None = None
    lower_is_better: dict[str, bool] = field(init=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"task name must be a non-empty identifier, got {self.name!r}")
        directions = dict(self.metrics().lower_is_better)
        if not directions:
            raise ValueError(f"task {self.name!r}: its metrics declare no lower_is_better map")
        object.__setattr__(self, "lower_is_better", directions)
        if self.primary is None:
            object.__setattr__(self, "primary", next(iter(directions)))
        elif self.primary not in directions:
            raise ValueError(
                f"task {self.name!r}: primary metric {self.primary!r} not among {sorted(directions)}"
            )
