"""DB-MTL: dual balancing, log losses plus max-norm balancing of EMA gradients.

Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Kwok, "Dual-Balancing for Multi-Task Learning",
arXiv 2308.12029 (2023), Alg. 1:

* loss-scale balancing: every task term is ``log L_t`` (``loss_transform = "log"``; the backward
  applies ``log(L_t + eps)``), so the heads get ``∇ log L_t``;
* gradient-magnitude balancing of the shared update: with the EMA of the (log-loss) task
  gradients ``ĝ_t ← β_k ĝ_t + (1 − β_k) g_t`` (from 0, ``β_k = β / k^σ``),

      update = Σ_t (max_s ‖ĝ_s‖ / ‖ĝ_t‖) ĝ_t

  i.e. every task contributes its EMA direction with the largest EMA norm.

Defaults ``β = 0.9``, ``σ = 0`` (the authors' LibMTL implementation). A task whose EMA gradient
is zero contributes nothing (LibMTL adds 1e-8 to the norm instead, which biases the weights of
tiny gradients; here the ratio is exact).

Level: parameters only. ``ĝ`` averages each gradient coordinate across steps; at representation
level the coordinates are entries of ``Z`` for different samples in each batch, so the EMA has no
meaning (LibMTL refuses it too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from repmtl.hparams import Decay, NonNegative
from repmtl.methods.base import Method, register


@register
class DBMTL(Method):
    name = "db-mtl"
    needs = "jacobian"
    counters = ("steps",)
    lazy_state = ("grad_average",)
    family = "hybrid"
    levels = ("parameters",)
    weights_heads = False
    loss_transform = "log"
    description = "Dual balancing: log losses, and EMA task gradients rescaled to the largest EMA norm"
    reference = "Lin et al., Dual-Balancing for Multi-Task Learning, arXiv 2308.12029, Alg. 1"

    def __init__(self, beta: Decay = 0.9, beta_sigma: NonNegative = 0.0) -> None:
        super().__init__()
        self.beta = beta
        self.beta_sigma = beta_sigma

    def setup(self, num_tasks: int) -> None:
        self.register_buffer("grad_average", torch.zeros(num_tasks, 0))  # ĝ, (T, d) from the first step
        self.steps = 0

    def direction(
        self, jacobian: torch.Tensor, losses: torch.Tensor, segments: Sequence[int] | None = None
    ) -> torch.Tensor:
        self.lazy_buffer("grad_average", jacobian)
        self.steps += 1
        beta_k = self.beta / self.steps**self.beta_sigma
        average = self.grad_average.to(jacobian)
        self.grad_average = jacobian + beta_k * (average - jacobian)
        norms = self.grad_average.norm(dim=1)
        positive = norms > 0
        safe = torch.where(positive, norms, torch.ones_like(norms))
        scale = torch.where(positive, norms.max() / safe, torch.zeros_like(norms))
        self.info = {"scale": scale.detach()}
        return scale @ self.grad_average
