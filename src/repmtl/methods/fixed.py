"""Fixed task weights, e.g. the result of a grid search (Guo et al., arXiv 2509.23915,
2025, Tables II and VI).

``L = Σ_t w_t L_t`` with ``w`` given by the user, in task order or by task name. Guo et al.'s
NYUD-v2 grid search, for instance, found ``(1, 1, 2, 50)`` for (seg, depth, normal, edge).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from repmtl.hparams import NonNegative
from repmtl.methods.base import LossWeighting, register


@register
class FixedWeights(LossWeighting):
    name = "fixed"
    family = "loss scaling"
    description = "Fixed task weights given by the user (e.g. grid-searched)"
    reference = "Guo et al., arXiv 2509.23915 (2025), grid search, Tables II and VI"

    def __init__(self, weights: list[NonNegative] | dict[str, NonNegative] | None = None) -> None:
        """``weights``: one per task in task order, or a mapping task name -> weight."""
        super().__init__()
        if weights is None:
            raise ValueError("method 'fixed' needs weights=[w_1, ..., w_T] or weights={task: w}")
        self.given = dict(weights) if isinstance(weights, Mapping) else list(weights)

    def setup(self, num_tasks: int) -> None:
        if isinstance(self.given, dict):
            missing = sorted(set(self.task_names) - set(self.given))
            unknown = sorted(set(self.given) - set(self.task_names))
            if missing or unknown:
                raise ValueError(f"weights for tasks {list(self.task_names)}: missing {missing}, unknown {unknown}")
            values = [float(self.given[t]) for t in self.task_names]
        else:
            if len(self.given) != num_tasks:
                raise ValueError(f"{len(self.given)} weights for {num_tasks} tasks {list(self.task_names)}")
            values = self.given
        self._fixed = torch.tensor(values, dtype=torch.float32)  # configuration, not state

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self._fixed.to(device=losses.device, dtype=losses.dtype)
