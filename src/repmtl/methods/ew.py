"""Equal weighting (EW): ``L = Σ_t L_t``, the standard multi-task baseline."""

from __future__ import annotations

import torch

from repmtl.methods.base import Method, register


@register
class EqualWeighting(Method):
    name = "ew"
    needs = "losses"
    family = "loss scaling"
    description = "Equal weighting: the plain sum of task losses"
    reference = "Baseline used throughout the MTL literature (e.g. Rep-MTL, ICCV 2025, Tab. 1)"

    def weights(self, gramian: torch.Tensor | None, losses: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(self.num_tasks, dtype=losses.dtype, device=losses.device)
