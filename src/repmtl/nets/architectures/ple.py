"""PLE: Progressive Layered Extraction (Tang, Liu, Zhao & Gong, "Progressive Layered Extraction
(PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020,
§4.3, Eqs. 3-4).

``L`` extraction levels; the benchmark's encoder stages are grouped into ``L`` contiguous
blocks and level ``j``'s experts are copies of block ``j``. At level ``j`` task ``t`` has
``m_t`` experts of its own and all tasks ``m_s`` shared experts; with ``h_t^0 = h_s^0 = x``:

    h_t^j = w_t^j(h_t^{j-1}) · [E_t^j(h_t^{j-1}), E_s^j(h_s^{j-1})]                (Eq. 3)
    h_s^j = w_s^j(h_s^{j-1}) · [E_1^j(h_1^{j-1}), …, E_T^j(h_T^{j-1}), E_s^j(h_s^{j-1})]

(softmax gates :class:`~repmtl.nets.architectures.base.Gate`; the last level has no shared
gate), and ``Z_t = h_t^L``. One level is CGC (:mod:`repmtl.nets.architectures.cgc`).

Which parameters are shared follows from the graph: below the last level every expert feeds a
shared gate, so it reaches every task; task ``t``'s experts and gate at the last level, and its
gate at the level before (whose output only task ``t``'s last-level modules read), are task
``t``'s own.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise

import torch
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import (
    Gate,
    MultiTaskArchitecture,
    conv_channels,
    copies,
    encoder_stages,
    input_channels,
    mix,
)


def _blocks(encoder: nn.Module, levels: int) -> list[nn.Module]:
    """The encoder as ``levels`` contiguous blocks of stages (one level: the encoder itself)."""
    if levels == 1:
        return [encoder]
    stages = encoder_stages(encoder)
    if len(stages) < levels:
        raise ValueError(f"ple with {levels} levels needs an encoder of at least {levels} stages, got {len(stages)}")
    bounds = [round(i * len(stages) / levels) for i in range(levels + 1)]
    return [nn.Sequential(*stages[a:b]) for a, b in pairwise(bounds)]


class _Shared(nn.Module):
    """Everything that reaches every task: all shared experts, the shared gates, and the task
    experts / gates of the levels whose outputs still feed a shared gate."""

    def __init__(self) -> None:
        super().__init__()
        self.shared_experts = nn.ModuleList()
        self.shared_gates = nn.ModuleList()
        self.task_experts = nn.ModuleList()
        self.task_gates = nn.ModuleList()


class PLE(MultiTaskArchitecture):
    name = "ple"

    def __init__(
        self,
        encoder: nn.Module,
        heads: Mapping[str, nn.Module],
        levels: int = 2,
        task_experts: int = 1,
        shared_experts: int = 2,
        reinit: bool = True,
    ) -> None:
        for key, value in (("levels", levels), ("task_experts", task_experts), ("shared_experts", shared_experts)):
            if value < 1:
                raise ValueError(f"{self.name} needs {key} ≥ 1, got {value}")
        tasks = list(heads)
        blocks = _blocks(encoder, levels)
        channels = [input_channels(encoder)] + [conv_channels(b) for b in blocks[:-1]]
        shared, own = _Shared(), {t: nn.ModuleDict() for t in tasks}
        last = levels - 1
        for j, block in enumerate(blocks):
            shared.shared_experts.append(copies(block, shared_experts, reinit))
            experts = {t: copies(block, task_experts, reinit) for t in tasks}
            gates = {t: Gate(channels[j], task_experts + shared_experts) for t in tasks}
            if j < last:
                shared.shared_gates.append(Gate(channels[j], len(tasks) * task_experts + shared_experts))
                shared.task_experts.append(nn.ModuleDict(experts))
            else:
                for t in tasks:
                    own[t]["experts"] = experts[t]
            if j < last - 1:
                shared.task_gates.append(nn.ModuleDict(gates))
            else:
                for t in tasks:
                    own[t]["gate" if j == last else "previous_gate"] = gates[t]
        self.levels = levels
        super().__init__(shared, own, heads)

    def _experts(self, j: int, task: str) -> nn.ModuleList:
        return self.task_specific[task]["experts"] if j == self.levels - 1 else self.encoder.task_experts[j][task]

    def _gate(self, j: int, task: str) -> nn.Module:
        if j == self.levels - 1:
            return self.task_specific[task]["gate"]
        if j == self.levels - 2:
            return self.task_specific[task]["previous_gate"]
        return self.encoder.task_gates[j][task]

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tasks = self.task_names
        h = dict.fromkeys(tasks, x)
        hs = x
        for j in range(self.levels):
            own = {t: [expert(h[t]) for expert in self._experts(j, t)] for t in tasks}
            common = [expert(hs) for expert in self.encoder.shared_experts[j]]
            if j < self.levels - 1:
                hs = mix(self.encoder.shared_gates[j](hs), [o for t in tasks for o in own[t]] + common)
            h = {t: mix(self._gate(j, t)(h[t]), own[t] + common) for t in tasks}
        return h


def build_ple(
    model: MultiTaskModel, reinit: bool = True, levels: int = 2, task_experts: int = 1, shared_experts: int = 2
) -> PLE:
    return PLE(model.encoder, model.heads, levels, task_experts, shared_experts, reinit)
