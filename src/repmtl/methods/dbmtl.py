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

import torch

from repmtl.hparams import Decay, NonNegative
from repmtl.methods.base import Aggregator, JacobianContext, prefers, register


@register
class DBMTL(Aggregator):
    name = "db-mtl"
    family = "hybrid"
    levels = ("parameters",)
    loss_transform = prefers("log")
    description = "Dual balancing: log losses, and EMA task gradients rescaled to the largest EMA norm"
    reference = "Lin et al., Dual-Balancing for Multi-Task Learning, arXiv 2308.12029, Alg. 1"

    def __init__(self, beta: Decay = 0.9, beta_sigma: NonNegative = 0.0) -> None:
        super().__init__()
        self.beta = beta
        self.beta_sigma = beta_sigma

    def setup(self, num_tasks: int) -> None:
        self.state.grad_average = None  # ĝ, (T, d) from the first step
        self.state.steps = 0

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        st = self.state
        average = st.zeros_like("grad_average", jacobian, self.name).to(jacobian)
        st.steps += 1
        beta_k = self.beta / st.steps**self.beta_sigma
        st.grad_average = jacobian + beta_k * (average - jacobian)
        norms = st.grad_average.norm(dim=1)
        positive = norms > 0
        safe = torch.where(positive, norms, torch.ones_like(norms))
        scale = torch.where(positive, norms.max() / safe, torch.zeros_like(norms))
        self.info = {"scale": scale.detach()}
        return scale @ st.grad_average
