"""MMoE: Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong & Chi, "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018, §4.3,
Eqs. 5-6).

``E`` experts (copies of the benchmark's encoder) are shared; each task has its own gate
``g_t(x) = softmax(W_t x)`` (:class:`~repmtl.nets.architectures.base.Gate`) and

    Z_t = f^t(x) = Σ_e g_t(x)_e f_e(x),     y_t = h_t(Z_t).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import (
    Gate,
    MultiTaskArchitecture,
    copies,
    input_channels,
    mix,
)


class MMoE(MultiTaskArchitecture):
    name = "mmoe"

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module], experts: int = 4, reinit: bool = True) -> None:
        if experts < 1:
            raise ValueError(f"mmoe needs experts ≥ 1, got {experts}")
        channels = input_channels(encoder)
        super().__init__(copies(encoder, experts, reinit), {t: Gate(channels, experts) for t in heads}, heads)

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [expert(x) for expert in self.encoder]
        return {t: mix(gate(x), outputs) for t, gate in self.task_specific.items()}


def build_mmoe(model: MultiTaskModel, reinit: bool = True, experts: int = 4) -> MMoE:
    return MMoE(model.encoder, model.heads, experts, reinit)
