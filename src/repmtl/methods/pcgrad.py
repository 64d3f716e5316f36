"""PCGrad: project each task gradient off the gradients it conflicts with.

Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Alg. 1: for each task
``i`` and each other task ``j`` in random order, if ``g_i^PC · g_j < 0`` then
``g_i^PC ← g_i^PC − (g_i^PC · g_j)/‖g_j‖² g_j``; the update is ``Σ_i g_i^PC``.

Every projected gradient stays in the span of the task gradients, so we track it by its
coefficients ``c_i`` (``g_i^PC = Σ_j c_ij g_j``) and need only the Gramian:
``g_i^PC · g_j = (c_i K)_j``. The update is ``Jᵀα`` with ``α = Σ_i c_i``. Heads receive their
plain task gradients. The random orders come from the global torch RNG (reproducible).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from repmtl.methods._gramian import nonfinite_fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, plain_heads, register

log = logging.getLogger(__name__)


@register
class PCGrad(GramianWeighting):
    name = "pcgrad"
    family = "gradient manipulation"
    description = "Gradient surgery: project conflicting task gradients onto each other's normal plane"
    reference = "Yu et al., NeurIPS 2020, Alg. 1"

    def __init__(self, reduction: Literal["sum", "mean"] = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        n = k.shape[0]
        orders = [torch.randperm(n).tolist() for _ in range(n)]  # drawn always: the RNG stream stays aligned
        self.info = {"fallback": False}
        if not np.all(np.isfinite(k)):
            return plain_heads(to_device(nonfinite_fallback(self, log, n, 1.0), gramian))
        coefficients = pcgrad_coefficients(k, orders)
        alpha = coefficients.sum(axis=0)
        if self.reduction == "mean":
            alpha /= n
        return plain_heads(to_device(alpha, gramian))


def pcgrad_coefficients(k: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """Row ``i``: coefficients of ``g_i^PC`` in the basis of the task gradients, projecting
    against the tasks in ``orders[i]`` (the task itself is skipped)."""
    n = k.shape[0]
    coefficients = np.eye(n)
    for i in range(n):
        for j in orders[i]:
            if j == i or k[j, j] <= 0:
                continue
            dot = coefficients[i] @ k[:, j]
            if dot < 0:
                coefficients[i, j] -= dot / k[j, j]
    return coefficients
