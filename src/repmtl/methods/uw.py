"""Uncertainty weighting (UW) with learnable log-variances.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018, Eq. 7: ``L = Σ_t 1/(2σ_t²) L_t + log σ_t``. With
``s_t = log σ_t²`` this is ``Σ_t ½ exp(−s_t) L_t + ½ s_t``; ``s`` is learned by the optimizer
alongside the model (add ``method.parameters()`` to it).
"""

from __future__ import annotations

import torch
from torch import nn

from repmtl.hparams import Finite
from repmtl.methods.base import LossWeighting, register


@register
class UncertaintyWeighting(LossWeighting):
    name = "uw"
    family = "loss scaling"
    description = "Uncertainty weighting: learned log-variances s_t, weights exp(-s_t)/2"
    reference = "Kendall et al., CVPR 2018, Eq. 7"

    def __init__(self, init_log_variance: Finite = 0.0) -> None:
        super().__init__()
        self.init_log_variance = init_log_variance

    def setup(self, num_tasks: int) -> None:
        self.log_variance = nn.Parameter(torch.full((num_tasks,), float(self.init_log_variance)))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.exp(-self.log_variance)

    def extra_loss(self) -> torch.Tensor:
        return 0.5 * self.log_variance.sum()
