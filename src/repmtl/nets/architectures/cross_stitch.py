"""Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert, "Cross-stitch Networks for
Multi-task Learning", CVPR 2016, §3, Eq. 1).

One column (a copy of the encoder) per task, cut into stages. After every stage but the last, a
cross-stitch unit mixes the columns' activations linearly:

    x̃_t = Σ_s α_ts x_s

with one scalar ``α_ts`` per pair of tasks and unit (the paper's scalar form), initialised to
``α_tt = 0.9`` and ``α_ts = 0.1 / (T - 1)`` (the paper's (α_S, α_D) = (0.9, 0.1) for two tasks,
rows summing to one). Every column's first stages then reach every task, so they and the units
are shared; column ``t``'s last stage is task ``t``'s own, and ``Z_t`` is its output. The paper
also raises the learning rate of the ``α`` (×10²-10³); here they share the network's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.architectures.base import MultiTaskArchitecture, copies, encoder_stages


class CrossStitchUnit(nn.Module):
    """``x̃_t = Σ_s α_ts x_s`` over the ``T`` columns."""

    def __init__(self, tasks: int, self_weight: float = 0.9) -> None:
        super().__init__()
        other = (1.0 - self_weight) / (tasks - 1) if tasks > 1 else 0.0
        alpha = torch.full((tasks, tasks), other)
        alpha.fill_diagonal_(self_weight if tasks > 1 else 1.0)
        self.alpha = nn.Parameter(alpha)

    def forward(self, columns: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(columns)
        mixed = torch.tensordot(self.alpha, stacked, dims=1)
        return list(mixed.unbind(0))


class _Shared(nn.Module):
    def __init__(self, columns: list[nn.ModuleList], units: list[CrossStitchUnit]) -> None:
        super().__init__()
        self.columns = nn.ModuleList(columns)  # columns[t][j]: task t's stage j, but the last
        self.units = nn.ModuleList(units)


class CrossStitch(MultiTaskArchitecture):
    name = "cross-stitch"

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module], reinit: bool = True) -> None:
        stages = encoder_stages(encoder)
        if len(stages) < 2:
            raise ValueError("cross-stitch needs an encoder of at least two stages")
        tasks = list(heads)
        replicas = copies(nn.ModuleList(stages), len(tasks), reinit)
        columns = [nn.ModuleList(list(r)[:-1]) for r in replicas]
        last = {t: list(r)[-1] for t, r in zip(tasks, replicas, strict=True)}
        units = [CrossStitchUnit(len(tasks)) for _ in range(len(stages) - 1)]
        super().__init__(_Shared(columns, units), last, heads)

    def representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        xs = [x] * len(self.encoder.columns)
        for j, unit in enumerate(self.encoder.units):
            xs = unit([column[j](xi) for column, xi in zip(self.encoder.columns, xs, strict=True)])
        return {t: self.task_specific[t](xi) for t, xi in zip(self.task_names, xs, strict=True)}


def build_cross_stitch(model: MultiTaskModel, reinit: bool = True) -> CrossStitch:
    return CrossStitch(model.encoder, model.heads, reinit)
