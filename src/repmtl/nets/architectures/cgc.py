"""CGC: Customized Gate Control (Tang, Liu, Zhao & Gong, "Progressive Layered Extraction
(PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020,
§4.2, Eqs. 1-2).

Each task ``t`` has ``m_t`` experts of its own and all tasks share ``m_s`` experts (copies of
the benchmark's encoder); task ``t``'s gate mixes its own and the shared experts only:

    Z_t = g^t(x) = w^t(x) S^t(x),  w^t(x) = softmax(W_g^t x),  S^t = [E_t,1 … E_t,m_t, E_s,1 … E_s,m_s]

The shared experts are the shared parameters; task ``t``'s experts and gate are its own. CGC is
the one-level case of PLE (:class:`~repmtl.nets.architectures.ple.PLE`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.ple import PLE


class CGC(PLE):
    name = "cgc"

    def __init__(
        self, encoder: nn.Module, heads: Mapping[str, nn.Module], task_experts: int = 1, shared_experts: int = 2,
        reinit: bool = True,
    ) -> None:
        super().__init__(encoder, heads, 1, task_experts, shared_experts, reinit)


def build_cgc(model: MultiTaskModel, reinit: bool = True, task_experts: int = 1, shared_experts: int = 2) -> CGC:
    return CGC(model.encoder, model.heads, task_experts, shared_experts, reinit)
