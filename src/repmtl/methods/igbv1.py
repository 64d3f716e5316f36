"""IGBv1: improvable gap balancing with a heuristic (softmax of the loss relative to a base).

Dai, Fei, Lu, "Improvable Gap Balancing for Multi-Task Learning", UAI 2023 (arXiv 2307.15429),
and the official code (``IGB4MTL``, ``ImprovableGapBalancing_v1``). The improvable gap of a
task is estimated by its current loss relative to a base loss ``L_t^base`` (the mean training
loss of epoch ``base_epoch``, counted from 0; default 1 as in the official trainer), and the
weights of the *log* losses are

    w = T · softmax(L / L^base)        (w = 1 until the base is known)

so tasks with the larger remaining gap get more weight. The objective is ``Σ_t w_t log L_t``
(``loss_transform = "log"``, the paper's scale-invariant form); the method sees
``l_t = log(L_t + eps)`` and recovers the raw losses as ``exp(l_t)`` (exact up to ``eps``).
:func:`repmtl.backward` refuses any other ``loss_transform`` with an error
(``loss_transform = requires("log")``), since the weights are defined on the log losses.
``end_epoch()`` must be called after every epoch (the trainer does). Heads are weighted too
(loss balancing).

IGBv2, the paper's main method, learns the weights with a SAC agent: see ``igbv2.py``.
"""

from __future__ import annotations

import torch

from repmtl.hparams import NonNegativeInt
from repmtl.methods.base import LossWeighting, register, requires


@register
class IGBv1(LossWeighting):
    name = "igbv1"
    family = "loss scaling"
    #: the weights are defined on log losses: ``repmtl.backward`` refuses any other transform
    loss_transform = requires("log")
    description = "Improvable gap balancing v1: log-loss weights T*softmax(L / L_base)"
    reference = "Dai et al., UAI 2023 (IGBv1); official IGB4MTL code"

    def __init__(self, base_epoch: NonNegativeInt = 1) -> None:
        super().__init__()
        self.base_epoch = base_epoch

    def setup(self, num_tasks: int) -> None:
        kw = {"dtype": torch.float64}
        self.state.epoch_loss_sum = torch.zeros(num_tasks, **kw)
        self.state.base_losses = torch.ones(num_tasks, **kw)
        self.state.epoch_count = 0
        self.state.epoch = 0
        self.state.has_base = False

    def _record(self, raw: torch.Tensor) -> None:
        """Accumulate this epoch's raw losses (only the base epoch's are ever used)."""
        if not self.state.has_base and self.state.epoch == self.base_epoch:
            self.state.epoch_loss_sum = self.state.epoch_loss_sum.to(raw.device) + raw
            self.state.epoch_count += 1

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        raw = torch.exp(losses.detach().to(torch.float64))
        self._record(raw)
        if not self.state.has_base:
            return torch.ones_like(losses)
        return (self.num_tasks * torch.softmax(raw / self.state.base_losses.to(raw.device), dim=0)).to(losses.dtype)

    def end_epoch(self) -> None:
        if not self.state.has_base and self.state.epoch == self.base_epoch and self.state.epoch_count > 0:
            self.state.base_losses = self.state.epoch_loss_sum / self.state.epoch_count
            self.state.has_base = True
        self.state.epoch_loss_sum = torch.zeros_like(self.state.epoch_loss_sum)
        self.state.epoch_count = 0
        self.state.epoch += 1
