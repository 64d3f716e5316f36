"""STCH: smooth Tchebycheff scalarisation of the (nadir-normalised) log losses.

Lin, Zhang, Yang, Zhang, Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
Optimization", ICML 2024 (the STCH scalarisation): ``g_μ(x | λ) = μ log Σ_t exp(λ_t (f_t(x) − z_t*) / μ)``, a smooth
approximation of ``max_t λ_t (f_t − z_t*)``. For multi-task learning the official code
(``STCH_MTL``, the authors' LibMTL fork) uses uniform preferences, the log losses normalised by a
nadir point, ``f_t − z_t* = log(L_t / n_t)``, and scales the objective by ``T``:

    L_STCH = T μ log Σ_t exp(log(L_t / n_t) / μ)

whose gradient is ``Σ_t w_t ∇ log L_t`` with ``w = T softmax((log L − log n) / μ)``: the worst
task (relative to its nadir) dominates as ``μ → 0``; ``μ → ∞`` gives log-loss equal weighting.

Warm-up and nadir, as in the official code (epochs counted from 0 by ``end_epoch()``):

* epochs ``0 … warmup_epochs − 1``: log-loss equal weighting (``w = 1``);
* epoch ``warmup_epochs``: still ``w = 1``, and the raw losses are averaged over the epoch;
* from epoch ``warmup_epochs + 1``: the nadir ``n`` is that average and STCH weights apply.

So the nadir is the mean training loss of the ``(warmup_epochs+1)``-th epoch. Passing ``nadir=``
(raw loss values) skips the warm-up. ``end_epoch()`` must be called after every epoch (the
trainer does); ``info["phase"]`` says which phase a step was in. If the accumulation epoch saw no
step, the nadir is taken from the next epoch that does.

The loss transform is ``"log"``: the method sees ``l_t = log(L_t + eps)`` and recovers the raw
losses for the nadir as ``exp(l_t)`` (exact up to ``eps``). :func:`repmtl.backward` refuses any
other ``loss_transform`` with an error (``loss_transform = requires("log")``), since the weights are
defined on the log losses. The official code forms
``log(L_t/n_t + 1e-20)``; the two differ only in where the tiny offset sits.
Defaults ``mu = 1.0``, ``warmup_epochs = 4`` (the official configuration).
"""

from __future__ import annotations

import torch

from repmtl.hparams import NonNegativeInt, Positive
from repmtl.methods.base import LossWeighting, register, requires


@register
class STCH(LossWeighting):
    name = "stch"
    family = "loss scaling"
    #: the weights are defined on log losses: ``repmtl.backward`` refuses any other transform
    loss_transform = requires("log")
    description = "Smooth Tchebycheff scalarisation of nadir-normalised log losses, after a log-EW warm-up"
    reference = "Lin et al., ICML 2024 (smooth Tchebycheff); official STCH_MTL code"

    def __init__(
        self, mu: Positive = 1.0, warmup_epochs: NonNegativeInt = 4, nadir: list[Positive] | None = None
    ) -> None:
        """``nadir``: one positive loss per task (else estimated during the warm-up epochs)."""
        super().__init__()
        self.mu = mu
        self.warmup_epochs = warmup_epochs
        self.nadir = None if nadir is None else [float(v) for v in nadir]

    def setup(self, num_tasks: int) -> None:
        kw = {"dtype": torch.float64}
        self.state.loss_sum = torch.zeros(num_tasks, **kw)
        self.state.log_nadir = torch.zeros(num_tasks, **kw)
        self.state.loss_count = 0
        self.state.epoch = 0
        self.state.has_nadir = False
        if self.nadir is not None:
            if len(self.nadir) != num_tasks:
                raise ValueError(f"nadir has {len(self.nadir)} values for {num_tasks} tasks")
            self.state.log_nadir = torch.log(torch.tensor(self.nadir, **kw))
            self.state.has_nadir = True

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        log_losses = losses.detach().to(torch.float64)
        if not self.state.has_nadir:
            if self.state.epoch >= self.warmup_epochs:
                self.state.loss_sum = self.state.loss_sum.to(log_losses.device) + torch.exp(log_losses)
                self.state.loss_count += 1
                self.info = {"phase": "nadir"}
            else:
                self.info = {"phase": "warmup"}
            return torch.ones_like(losses)
        self.info = {"phase": "stch"}
        relative = (log_losses - self.state.log_nadir.to(log_losses.device)) / self.mu
        return (self.num_tasks * torch.softmax(relative, dim=0)).to(losses.dtype)

    def end_epoch(self) -> None:
        if not self.state.has_nadir and self.state.epoch >= self.warmup_epochs and self.state.loss_count > 0:
            self.state.log_nadir = torch.log(self.state.loss_sum / self.state.loss_count)
            self.state.has_nadir = True
        self.state.epoch += 1
