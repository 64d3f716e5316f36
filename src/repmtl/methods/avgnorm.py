"""AvgNorm: scale every task gradient to the norm of the summed gradient.

Guo et al., "Revisit the Imbalance Optimization in Multi-task Learning: An Experimental
Analysis", arXiv 2509.23915 (2025), Eq. 6: ``w_i = ‖Σ_j ∇θ L_j‖ / ‖∇θ L_i‖`` with ``θ`` the
last shared layer (the paper: "the gradient of the last layer of the shared backbone can be
sufficient").
From the Gramian: ``w_i = sqrt(1ᵀK1 / K_ii)``. The default level is ``"last_layer"``;
``level="parameters"`` uses every shared parameter.

Degenerate cases (documented rule, ``docs/formulas.md#methods-avgnorm``): a task with a zero
gradient gets weight 1 (its weight does not change the shared update); if the summed gradient is
zero, every weight is 0 as Eq. 6 says; a non-finite Gramian entry gives weight 1 instead of
inf/NaN.
"""

from __future__ import annotations

import torch

from repmtl.methods.base import GramianWeighting, register


@register
class AvgNorm(GramianWeighting):
    name = "avgnorm"
    family = "loss scaling"
    #: the paper takes the gradients at the last shared layer; level="parameters" takes all
    levels = ("last_layer", "parameters", "representation")
    description = "Weights ||sum_j g_j|| / ||g_i||: equalise task gradient norms (last shared layer)"
    reference = "Guo et al., arXiv 2509.23915 (2025), Eq. 6"

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        diag = torch.diagonal(gramian)
        total = gramian.sum().clamp_min(0.0)
        safe_diag = torch.where(diag > 0, diag, torch.ones_like(diag))
        weights = torch.where(diag > 0, torch.sqrt(total / safe_diag), torch.ones_like(diag))
        return torch.where(torch.isfinite(weights), weights, torch.ones_like(weights))
