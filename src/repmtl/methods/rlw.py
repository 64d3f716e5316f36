"""Random loss weighting (RLW): fresh random task weights every step.

Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", TMLR 2022. Weights are ``softmax(λ̃)`` with ``λ̃ ~ N(0, I)`` (the paper's normal
variant), drawn from the global torch RNG so that seeds and checkpoints reproduce them.
"""

from __future__ import annotations

import torch

from repmtl.methods.base import LossWeighting, register


@register
class RandomLossWeighting(LossWeighting):
    name = "rlw"
    family = "loss scaling"
    description = "Random loss weights softmax(N(0, I)) drawn every step"
    reference = "Lin et al., Reasonable Effectiveness of Random Weighting, TMLR 2022"

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        draw = torch.randn(self.num_tasks, dtype=losses.dtype)  # CPU generator: device-independent
        return torch.softmax(draw, dim=0).to(losses.device)
