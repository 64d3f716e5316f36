"""MoCo: multi-objective gradient correction with tracked gradients and a moving λ.

Fernando, Shen, Liu, Chaudhury, Murugesan, Chen, "Mitigating Gradient Bias in Multi-objective
Learning: A Provably Convergent Approach", ICLR 2023, Alg. 1. With the step ``k``
(from 1), ``β_k = β / k^{σ_β}`` and ``γ_k = γ / k^{σ_γ}``:

    Y ← Y − β_k (Y − H)                        tracked task gradients (T×d), H the step's gradients
    λ ← Π(λ − γ_k (Y Yᵀ + ρ I) λ)              λ on the simplex, from 1/T
    update = Yᵀ λ

Heads get their plain task gradients.

Two variants, both switchable:

* ``projection="softmax"`` with ``gradient_normalization="loss"`` (default): the authors' shared
  code as released in LibMTL ("implemented based on the author's sharing code"), which maps
  ``λ`` back with a softmax and feeds ``H_i = L_i g_i / ‖g_i‖``. The defaults ``β = 0.5``,
  ``σ_β = 0.5``, ``γ = 0.1``, ``σ_γ = 0.5``, ``ρ = 0`` belong to that code.
* ``projection="simplex"`` with ``gradient_normalization="none"``: Alg. 1 as printed (Euclidean
  projection onto the simplex, raw gradients). The paper's optional projection of ``Y`` onto a
  ball of radius ``L_i`` is not implemented (the released code does not use it either).

A zero gradient is left as zero by the normalisation (no division by 0), and the scale is the loss
magnitude ``|L_i|`` so that a log-transformed (possibly negative) loss cannot flip a gradient.

Level: parameters only. ``Y`` tracks each gradient coordinate across steps; at representation
level the coordinates are entries of ``Z`` for different samples in different batches (and the
size changes with the batch), so tracking them has no meaning and the level is refused.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from repmtl.hparams import NonNegative
from repmtl.methods.base import Aggregator, JacobianContext, register


@register
class MoCo(Aggregator):
    name = "moco"
    family = "gradient manipulation"
    levels = ("parameters",)
    description = "Tracked task gradients Y and a moving simplex weight lambda; update Y^T lambda"
    reference = "Fernando et al., ICLR 2023, Alg. 1"

    def __init__(
        self,
        beta: Annotated[float, Field(gt=0, le=1)] = 0.5,
        beta_sigma: NonNegative = 0.5,
        gamma: NonNegative = 0.1,
        gamma_sigma: NonNegative = 0.5,
        rho: NonNegative = 0.0,
        projection: Literal["softmax", "simplex"] = "softmax",
        gradient_normalization: Literal["loss", "none"] = "loss",
    ) -> None:
        super().__init__()
        self.beta, self.beta_sigma = beta, beta_sigma
        self.gamma, self.gamma_sigma = gamma, gamma_sigma
        self.rho = rho
        self.projection = projection
        self.gradient_normalization = gradient_normalization

    def setup(self, num_tasks: int) -> None:
        self.state.tracked = None  # Y, (T, d) from the first step
        self.state.lambd = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        self.state.steps = 0

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        st = self.state
        tracked = st.zeros_like("tracked", jacobian, self.name).to(jacobian)
        st.steps += 1
        beta_k = self.beta / st.steps**self.beta_sigma
        gamma_k = self.gamma / st.steps**self.gamma_sigma
        observed = jacobian
        if self.gradient_normalization == "loss":
            norms = jacobian.norm(dim=1, keepdim=True)
            safe = torch.where(norms > 0, norms, torch.ones_like(norms))
            unit = torch.where(norms > 0, jacobian / safe, torch.zeros_like(jacobian))
            observed = unit * context.losses.to(jacobian).abs().unsqueeze(1)
        st.tracked = tracked - beta_k * (tracked - observed)

        gram = (st.tracked @ st.tracked.T).to(torch.float64)  # Y Yᵀ, T×T
        lambd = st.lambd.to(gram.device)
        step = gram @ lambd + self.rho * lambd
        moved = lambd - gamma_k * step
        st.lambd = torch.softmax(moved, dim=0) if self.projection == "softmax" else project_to_simplex(moved)
        self.info = {"lambda": st.lambd.detach()}
        return st.lambd.to(jacobian.dtype) @ st.tracked


def project_to_simplex(vector: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto ``{x ≥ 0, Σx = 1}`` (sort-based; Held et al. 1974 / Duchi et al.
    2008), on the vector's device without a host sync. Non-finite input gives the uniform point."""
    n = vector.numel()
    finite = torch.isfinite(vector).all()
    v = torch.where(finite, vector, torch.zeros_like(vector))
    v = v - v.max()  # the projection ignores a common shift; this one avoids cancellation at huge scales
    ordered, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(ordered, 0) - 1.0
    index = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    support = (ordered - cumulative / index > 0).sum()  # ≥ 1 always
    theta = cumulative.gather(0, (support - 1).unsqueeze(0)) / support.to(v.dtype)
    return (v - theta).clamp_min(0.0)
