"""LTB: Learning to Branch (Guo, Lee & Ulbricht, "Learning to Branch for Multi-Task Learning",
ICML 2020, §3, Eqs. 2-4).

A tree of ``J`` layers (the benchmark encoder's stages): layer 0 holds one node (the shared
root), every later layer ``T`` nodes, each a copy of that stage; the last layer's node ``t`` feeds
task ``t``'s head. Node ``i`` of layer ``j`` learns which parent to branch from: logits
``θ_ij`` over the ``c_{j-1}`` nodes of the previous layer, relaxed by Gumbel-softmax,

    x_ij = Σ_k d_ijk y_{j-1,k},   d_ij = softmax((θ_ij + g) / τ),  g ~ Gumbel(0, 1)   (train)
    d_ij = one_hot(argmax θ_ij)                                                      (eval)

so the branching structure is learnt with the weights by gradient descent. In training mode every
node reaches every task (the relaxed weights are positive), so all nodes but the last layer's are
shared; the last layer's node ``t`` and its logits are task ``t``'s own, and ``Z_t`` is that
node's output.

Not done here (the paper's full procedure): the separate updates of the weights and of ``θ``
on two halves of the training data, the annealing of ``τ``, and retraining the discovered tree
from scratch; ``τ`` is fixed (``temperature``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import MultiTaskArchitecture, copies, encoder_stages


class BranchNode(nn.Module):
    """One node: a copy of the layer's stage and its parent logits ``θ`` (none at the root)."""

    def __init__(self, stage: nn.Module, parents: int) -> None:
        super().__init__()
        self.stage = stage
        self.logits = nn.Parameter(torch.zeros(parents)) if parents > 1 else None

    def parent_weights(self, temperature: float) -> torch.Tensor | None:
        if self.logits is None:
            return None
        if self.training:
            return F.gumbel_softmax(self.logits, tau=temperature, hard=False)
        return F.one_hot(self.logits.argmax(), self.logits.numel()).to(self.logits.dtype)

    def forward(self, parents: list[torch.Tensor], temperature: float) -> torch.Tensor:
        weights = self.parent_weights(temperature)
        if weights is None:
            return self.stage(parents[0])
        stacked = torch.stack(parents)
        return self.stage(torch.tensordot(weights.to(stacked.dtype), stacked, dims=1))


class _Shared(nn.Module):
    def __init__(self, layers: list[nn.ModuleList]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)  # every layer but the last


class LTB(MultiTaskArchitecture):
    name = "ltb"

    def __init__(
        self, encoder: nn.Module, heads: Mapping[str, nn.Module], temperature: float = 1.0, reinit: bool = True
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"ltb needs temperature > 0, got {temperature}")
        stages = encoder_stages(encoder)
        if len(stages) < 2:
            raise ValueError("ltb needs an encoder of at least two stages")
        tasks = list(heads)
        layers = [nn.ModuleList([BranchNode(stages[0], 1)])]
        for j, stage in enumerate(stages[1:-1], start=1):
            layers.append(nn.ModuleList(BranchNode(s, len(layers[j - 1])) for s in copies(stage, len(tasks), reinit)))
        last = copies(stages[-1], len(tasks), reinit)
        own = {t: BranchNode(s, len(layers[-1])) for t, s in zip(tasks, last, strict=True)}
        self.temperature = temperature
        super().__init__(_Shared(layers), own, heads)

    def branching(self) -> list[list[int]]:
        """The tree as it is now: for each layer after the root, each node's most likely parent."""
        layers = [*self.encoder.layers[1:], list(self.task_specific.values())]
        return [[int(node.logits.argmax()) if node.logits is not None else 0 for node in layer] for layer in layers]

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [x]
        for layer in self.encoder.layers:
            outputs = [node(outputs, self.temperature) for node in layer]
        return {t: node(outputs, self.temperature) for t, node in self.task_specific.items()}


def build_ltb(model: MultiTaskModel, reinit: bool = True, temperature: float = 1.0) -> LTB:
    return LTB(model.encoder, model.heads, temperature, reinit)
