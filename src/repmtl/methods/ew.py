"""Equal weighting (EW): ``L = Σ_t L_t``, the standard multi-task baseline."""

from __future__ import annotations

import torch

from repmtl.methods.base import LossWeighting, register


@register
class EqualWeighting(LossWeighting):
    name = "ew"
    family = "loss scaling"
    description = "Equal weighting: the plain sum of task losses"
    reference = "Baseline used throughout the MTL literature (e.g. Rep-MTL, ICCV 2025, Tab. 1)"

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones(self.num_tasks, dtype=losses.dtype, device=losses.device)
