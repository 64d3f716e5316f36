"""IMTL-L: impartial loss balancing with learnable loss scales.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, Sec. 3.1 / Eq. (2): every task
loss is replaced by ``e^{s_t} L_t − s_t`` with a learnable scale ``s_t`` (initialised to 0). The
``s_t`` are trained by gradient descent on the same objective (``∂/∂s_t = e^{s_t} L_t − 1``
drives the scaled loss towards 1, making the tasks' losses comparable), so they are
``nn.Parameter`` objects: create the method with ``tasks=[...]`` and give ``method.parameters()`` to
the optimizer (the method is ``learnable``).

In the framework: ``weights = e^{s}`` (returned *with* its graph, so the one backward of
``Σ_t e^{s_t} L_t`` reaches ``s``) and ``extra_loss() = −Σ_t s_t``. Shared parameters and heads
both receive ``e^{s_t} ∇L_t``.
"""

from __future__ import annotations

import torch
from torch import nn

from repmtl.hparams import Finite
from repmtl.methods.base import LossWeighting, register


@register
class IMTLL(LossWeighting):
    name = "imtl-l"
    family = "loss scaling"
    description = "Impartial loss scaling: learned scales s_t, objective e^{s_t} L_t - s_t"
    reference = "Liu et al., ICLR 2021, Sec. 3.1, Eq. 2"

    def __init__(self, init_scale: Finite = 0.0) -> None:
        super().__init__()
        self.init_scale = float(init_scale)

    def setup(self, num_tasks: int) -> None:
        self.log_scale = nn.Parameter(torch.full((num_tasks,), self.init_scale))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        scale = torch.exp(self.log_scale)
        return scale.to(dtype=losses.dtype)

    def extra_loss(self) -> torch.Tensor:
        return -self.log_scale.sum()
