"""Random gradient weighting (RGW): random convex weights on the shared task gradients.

Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022 (arXiv 2111.10603), the gradient-weighting twin of RLW; Mao
et al. (IEEE Access 2024), §II-A: "RGW proposed to randomize α based on Gaussian distribution",
in the update ``ĝ = Gα`` of its Eq. 2. Every step ``α = softmax(λ̃)``, ``λ̃ ~ N(0, I)`` (the
paper's normal variant and the authors' LibMTL implementation), drawn from the global torch RNG
so that seeds and checkpoints reproduce it.

RGW weights only the *shared* update (gradient manipulation, Mao et al.: "prediction heads are
trained as in usual single-task learning"): heads get their plain task gradients. That is the
difference from RLW, which weights the losses and hence the heads too.

Level: the update ``Σ_t α_t g_t`` is linear in the task gradients, so by the chain rule it is
the same vector whether it is formed from parameter-level gradients or from the
representation-level ones (``J_θᵀ Σ_t α_t S_t``). The method therefore needs only the losses and
costs one encoder backward at any ``level``; the fast gradient surrogate (Mao et al., §II-E) is
exact for RGW (a test checks both against per-task autograd).
"""

from __future__ import annotations

import torch

from repmtl.methods.base import LossWeighting, TaskWeights, plain_heads, register


@register
class RandomGradientWeighting(LossWeighting):
    name = "rgw"
    family = "random gradient"
    description = "Random gradient weights softmax(N(0, I)) on the shared update; heads get plain task gradients"
    reference = "Lin et al., TMLR 2022 (RGW); Mao et al., IEEE Access 2024, §II-A, Eq. 2"

    def weights(self, losses: torch.Tensor) -> TaskWeights:
        draw = torch.randn(self.num_tasks, dtype=losses.dtype)  # CPU generator: device-independent
        return plain_heads(torch.softmax(draw, dim=0).to(losses.device))
