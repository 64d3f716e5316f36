"""IMTL: the hybrid of IMTL-L (loss scales) and IMTL-G (gradient balancing).

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, Sec. 3.3 / Alg. 1: every task
loss becomes ``e^{s_t} L_t − s_t`` (IMTL-L, learnable ``s_t``), and the shared parameters are
updated with IMTL-G applied to the gradients of the *scaled* losses, ``e^{s_t} g_t``.

From the Gramian: the scaled gradients have Gramian ``D K D`` with ``D = diag(e^{s})``; IMTL-G
on it gives ``α'`` (summing to 1), and the shared update ``Σ_t α'_t e^{s_t} g_t`` is ``Jᵀα``
with ``α = α' ⊙ e^{s}`` (``imtl_g.imtl_g_weights``; same fallback to ``α' = 1/T``).

The scales are trained by the optimizer (learnable: create the method with
``tasks=[...]`` and give ``method.parameters()`` to it) on ``Σ_t (e^{s_t} L_t − s_t)``: heads
get ``e^{s_t} ∇L_t`` as in the paper (the heads' weights are ``e^{s}`` with its graph, so the
same backward gives ``s`` the gradient ``e^{s_t} L_t``) and ``extra_loss() = −Σ_t s_t`` adds
the ``−1``.
"""

from __future__ import annotations

import torch
from torch import nn

from repmtl.hparams import Finite
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, register
from repmtl.methods.imtl_g import imtl_g_or_fallback


@register
class IMTL(GramianWeighting):
    name = "imtl"
    family = "hybrid"
    description = "IMTL-L learned loss scales, then IMTL-G on the scaled gradients"
    reference = "Liu et al., ICLR 2021, Sec. 3.3, Alg. 1"

    def __init__(self, init_scale: Finite = 0.0) -> None:
        super().__init__()
        self.init_scale = float(init_scale)
        self._step_losses: torch.Tensor | None = None

    def setup(self, num_tasks: int) -> None:
        self.log_scale = nn.Parameter(torch.full((num_tasks,), self.init_scale))

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        """Shared: ``α' ⊙ e^{s}``. Heads: ``e^{s}`` with its graph, so the same backward gives
        ``s`` the gradient ``e^{s_t} L_t`` (plus ``extra_loss``'s ``−1``)."""
        scale = torch.exp(self.log_scale.detach().to(device=gramian.device, dtype=gramian.dtype))
        scaled = gramian * scale[:, None] * scale[None, :]
        self.info = {"fallback": False}
        alpha_scaled = imtl_g_or_fallback(self, to_host(scaled))
        return TaskWeights(to_device(alpha_scaled, gramian) * scale, heads=torch.exp(self.log_scale).to(gramian))

    def extra_loss(self) -> torch.Tensor:
        return -self.log_scale.sum()
