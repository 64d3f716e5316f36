"""Dynamic weight average (DWA).

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019, Eq. 7:
``w_k(t) = T exp(r_k(t−1)/τ) / Σ_i exp(r_i(t−1)/τ)`` with ``r_k(t−1) = L_k(t−1)/L_k(t−2)``,
``L_k`` the mean training loss of an epoch, ``τ = 2``; ``w = 1`` for the first two epochs.
The method averages the losses it sees; call ``end_epoch()`` after each epoch (the trainer does).
"""

from __future__ import annotations

import torch

from repmtl.hparams import Positive
from repmtl.methods.base import LossWeighting, register


@register
class DynamicWeightAverage(LossWeighting):
    name = "dwa"
    family = "loss scaling"
    description = "Dynamic weight average: weights from the ratio of the last two epoch losses"
    reference = "Liu et al., MTAN, CVPR 2019, Eq. 7"

    def __init__(self, temperature: Positive = 2.0) -> None:
        super().__init__()
        self.temperature = temperature

    def setup(self, num_tasks: int) -> None:
        self.state["running_sum"] = torch.zeros(num_tasks, dtype=torch.float64)
        self.state["running_count"] = 0
        self.state["history"] = torch.zeros(2, num_tasks, dtype=torch.float64)  # [t-2, t-1]
        self.state["epochs_seen"] = 0  # a python int: no host sync per step

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        state = self.state
        state["running_sum"] = state["running_sum"].to(losses.device) + losses.to(torch.float64)
        state["running_count"] += 1
        if state["epochs_seen"] < 2:
            return torch.ones_like(losses)
        history = state["history"]
        ratio = history[1] / history[0].clamp_min(torch.finfo(torch.float64).tiny)
        w = self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)
        return w.to(device=losses.device, dtype=losses.dtype)

    def end_epoch(self) -> None:
        state = self.state
        if state["running_count"] == 0:
            return
        mean = state["running_sum"] / state["running_count"]
        state["history"] = torch.stack([state["history"][1].to(mean.device), mean])
        state["running_sum"] = torch.zeros_like(mean)
        state["running_count"] = 0
        state["epochs_seen"] += 1

