"""FAMO: fast adaptive multitask optimisation, loss weights learned from the log-loss changes.

Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023, Alg. 1
and the official code. Task weights are ``z = softmax(ξ)``; the step minimises

    Σ_t (z_t / c) log L_t,          c = Σ_s z_s / L_s      (c is a constant in the backward)

i.e. ``d = Σ_t c⁻¹ z_t ∇L_t / L_t``, which decreases every task's log-loss at the same rate
when the gradients allow. After the step the logits learn from the log-loss improvement
``δ = log L(θ_t) − log L(θ_{t+1})``: ``ξ`` takes a step on the gradient ``(∂z/∂ξ)ᵀ δ`` with weight
decay ``γ``, which moves weight to the tasks that improved least.

Here the loss change is taken between **consecutive calls** (the previous step's losses against
this step's, as in LibMTL's port; the official trainer re-evaluates the same batch after the
step, one extra forward that ``repmtl.backward`` cannot do). So every call: (1) if a previous
call exists, update ``ξ`` from ``δ = log L_prev − log L_now``; (2) return the weights ``z/c`` for
the log losses; (3) remember ``log L_now``. The previous losses, ``ξ`` and the optimiser moments
are all state, so a resumed run continues exactly (the first call after a resume still updates
``ξ``).

The loss transform is ``"log"`` (the backward forms ``log(L_t + eps)``; ``eps = 1e-8`` by default,
the official ``min_losses = 0`` case with its ``1e-8`` offset). The weights are defined on those
log losses, so :func:`repmtl.backward` refuses a caller's ``loss_transform="none"`` with an error
(``loss_transform = requires("log")``) rather than silently changing them. For known lower bounds
``L_t^*`` pass ``L_t − L_t^*`` as the losses.

Defaults: ``w_lr = 0.025``, ``gamma = 1e-3`` (weight decay) and the logits' optimiser
``"adam"``, as in the official code and LibMTL (``torch.optim.Adam(lr=w_lr, weight_decay=gamma)``,
reproduced here in the method's state); ``optimizer="sgd"`` gives the plain step ``ξ ← ξ − w_lr (g + γ ξ)`` of
Alg. 1. The official trainer also clips the model gradient norm to 1: that belongs to the
training loop, not to the method.
"""

from __future__ import annotations

from typing import Literal

import torch

from repmtl.hparams import Decay, NonNegative, Positive
from repmtl.methods.base import LossWeighting, register, requires


@register
class FAMO(LossWeighting):
    name = "famo"
    family = "loss scaling"
    #: the weights are defined on log losses: ``repmtl.backward`` refuses any other transform
    loss_transform = requires("log")
    description = "Fast adaptive multitask optimisation: softmax logits learned from consecutive log-loss changes"
    reference = "Liu et al., NeurIPS 2023, Alg. 1"

    def __init__(
        self,
        w_lr: Positive = 0.025,
        gamma: NonNegative = 1e-3,
        optimizer: Literal["adam", "sgd"] = "adam",
        adam_betas: tuple[Decay, Decay] = (0.9, 0.999),
        adam_eps: NonNegative = 1e-8,
    ) -> None:
        super().__init__()
        self.w_lr = w_lr
        self.gamma = gamma
        self.optimizer = optimizer
        self.adam_betas = tuple(float(b) for b in adam_betas)
        self.adam_eps = adam_eps

    def setup(self, num_tasks: int) -> None:
        kw = {"dtype": torch.float64}
        self.state.logits = torch.zeros(num_tasks, **kw)  # ξ
        self.state.exp_avg = torch.zeros(num_tasks, **kw)
        self.state.exp_avg_sq = torch.zeros(num_tasks, **kw)
        self.state.previous = torch.zeros(num_tasks, **kw)  # log-losses of the last call
        self.state.has_previous = False
        self.state.updates = 0

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        log_losses = losses.detach().to(torch.float64)
        self._to(log_losses.device)
        if self.state.has_previous:
            self._update_logits(self.state.previous - log_losses)
        z = torch.softmax(self.state.logits, dim=0)
        c = (z * torch.exp(-log_losses)).sum()  # Σ z_s / L_s
        self.state.previous = log_losses.clone()
        self.state.has_previous = True
        self.info = {"famo_z": z.detach()}
        return (z / c).to(losses.dtype)

    def _update_logits(self, improvement: torch.Tensor) -> None:
        z = torch.softmax(self.state.logits, dim=0)
        grad = z * (improvement - (z * improvement).sum())  # (∂z/∂ξ)ᵀ δ, the softmax VJP
        if self.gamma:
            grad = grad + self.gamma * self.state.logits
        if self.optimizer == "sgd":
            self.state.logits = self.state.logits - self.w_lr * grad
            return
        beta1, beta2 = self.adam_betas
        self.state.updates += 1
        self.state.exp_avg = beta1 * self.state.exp_avg + (1.0 - beta1) * grad
        self.state.exp_avg_sq = beta2 * self.state.exp_avg_sq + (1.0 - beta2) * grad.square()
        correction1 = 1.0 - beta1**self.state.updates
        correction2 = 1.0 - beta2**self.state.updates
        denom = self.state.exp_avg_sq.sqrt() / correction2**0.5 + self.adam_eps
        self.state.logits = self.state.logits - (self.w_lr / correction1) * self.state.exp_avg / denom

    def _to(self, device: torch.device) -> None:
        if self.state.logits.device != device:
            self.state.apply(lambda t: t.to(device))
