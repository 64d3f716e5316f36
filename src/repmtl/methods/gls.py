"""Geometric loss strategy (GLS): minimise ``(Π_t L_t)^{1/T}``.

Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy
for Multi-Task Learning", CVPR Workshops 2019. The gradient of the geometric mean equals that
of ``Σ_t α_t L_t`` with ``α_t = (Π_k L_k)^{1/T} / (T L_t)`` (detached), which is what we apply.
"""

from __future__ import annotations

import torch

from repmtl.methods.base import LossWeighting, register


@register
class GeometricLossStrategy(LossWeighting):
    name = "gls"
    family = "loss scaling"
    description = "Geometric mean of task losses (needs positive losses)"
    reference = "Chennupati et al., MultiNet++, CVPRW 2019"

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        if not bool((losses > 0).all()):
            bad = [n for n, l in zip(self.task_names, losses.tolist()) if not l > 0]
            raise ValueError(f"GLS needs positive losses; tasks {bad} have losses <= 0")
        geometric_mean = losses.log().mean().exp()
        return geometric_mean / (self.num_tasks * losses)
