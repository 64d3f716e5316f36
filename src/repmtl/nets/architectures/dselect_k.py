"""DSelect-k (Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong & Chi, "DSelect-k:
Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning",
NeurIPS 2021, §3, Eqs. 4-8), per-example gating.

``n = 2^m`` shared experts (copies of the benchmark's encoder). Task ``t``'s gate has ``k``
selectors; selector ``i`` holds ``m`` logits ``z_i(x) = W_i x`` and picks an expert through the
smooth binary encoding

    r(z_i)_e = Π_{j=1..m} S(z_ij)^{[bit j of e]} (1 - S(z_ij))^{1 - [bit j of e]},

with the smooth-step ``S(u) = 0`` for ``u ≤ -γ/2``, ``1`` for ``u ≥ γ/2``, else
``-2u³/γ³ + 3u/(2γ) + 1/2`` (Eq. 4); the selectors are combined by ``softmax(W_α x)``:

    q(x) = Σ_i softmax(W_α x)_i r(z_i(x)),   Z_t = Σ_e q(x)_e f_e(x).

Each ``r(z_i)`` is a distribution over the experts, so ``q`` is too, and it reaches exactly
``k`` non-zero entries once every ``z_ij`` leaves ``(-γ/2, γ/2)``. The paper's optional entropy
regulariser, which speeds that convergence up, is not added (the trainer has no per-architecture
loss term). Inputs go through the gate's 4×4 average pooling
(:class:`~repmtl.nets.architectures.base.Gate`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import (
    Gate,
    MultiTaskArchitecture,
    copies,
    input_channels,
    mix,
)


def smooth_step(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """``S(u)`` of Eq. 4: cubic on ``(-γ/2, γ/2)``, 0 below, 1 above; continuously differentiable."""
    cubic = -2.0 * u**3 / gamma**3 + 3.0 * u / (2.0 * gamma) + 0.5
    return torch.where(u <= -gamma / 2, torch.zeros_like(u), torch.where(u >= gamma / 2, torch.ones_like(u), cubic))


class DSelectGate(nn.Module):
    """One task's gate: ``k`` selectors over ``2^m`` experts, per example."""

    def __init__(self, in_channels: int, experts: int, k: int, gamma: float) -> None:
        super().__init__()
        bits = experts.bit_length() - 1
        self.k, self.bits, self.gamma = k, bits, gamma
        self.selectors = Gate(in_channels, k * bits)
        self.combine = Gate(in_channels, k)
        codes = torch.tensor([[(e >> j) & 1 for j in range(bits)] for e in range(experts)], dtype=torch.float32)
        self.register_buffer("codes", codes, persistent=False)  # (experts, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, Gate.grid).flatten(1)
        z = self.selectors.linear(pooled).view(-1, self.k, 1, self.bits)
        s = smooth_step(z, self.gamma)
        codes = self.codes.to(s.dtype)
        r = (codes * s + (1 - codes) * (1 - s)).prod(dim=-1)  # (B, k, experts)
        alpha = torch.softmax(self.combine.linear(pooled), dim=1)  # (B, k)
        return torch.einsum("bk,bke->be", alpha, r)


class DSelectK(MultiTaskArchitecture):
    name = "dselect-k"

    def __init__(
        self, encoder: nn.Module, heads: Mapping[str, nn.Module], experts: int = 4, k: int = 2, gamma: float = 1.0,
        reinit: bool = True,
    ) -> None:
        if experts < 2 or experts & (experts - 1):
            raise ValueError(f"dselect-k's binary encoding addresses 2^m experts: experts must be a power of two ≥ 2, got {experts}")
        if not 1 <= k <= experts:
            raise ValueError(f"dselect-k needs 1 ≤ k ≤ experts ({experts}), got k={k}")
        if gamma <= 0:
            raise ValueError(f"dselect-k needs gamma > 0, got {gamma}")
        channels = input_channels(encoder)
        gates = {t: DSelectGate(channels, experts, k, gamma) for t in heads}
        super().__init__(copies(encoder, experts, reinit), gates, heads)

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [expert(x) for expert in self.encoder]
        return {t: mix(gate(x), outputs) for t, gate in self.task_specific.items()}


def build_dselect_k(model: MultiTaskModel, reinit: bool = True, experts: int = 4, k: int = 2, gamma: float = 1.0) -> DSelectK:
    return DSelectK(model.encoder, model.heads, experts, k, gamma, reinit)
