"""GradNorm: learn task weights that equalise the tasks' training rates.

Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
Networks", ICML 2018, Eqs. (1)–(2): with task weights ``w_t``, ``W`` the last shared layer,
``G_t = ‖∇_W w_t L_t‖ = w_t sqrt(K_tt)``, ``Ḡ = mean_t G_t``, the inverse training rates
``L̃_t = L_t / L_t(0)`` and ``r_t = L̃_t / mean_j L̃_j``,

    L_grad = Σ_t | G_t − Ḡ · r_t^α |,

where the target ``Ḡ r_t^α`` is treated as a constant. ``L_grad`` is differentiated w.r.t. the
weights only; the network is trained on ``Σ_t w_t L_t``; after every update the weights are
renormalised to ``Σ_t w_t = T``. ``α = 1.5`` (the paper's NYUv2 value; its range 0.12–3).

How it is learned here: ``w`` is an ``nn.Parameter`` trained **by the user's optimizer**
(the method is ``learnable``: create it with ``tasks=[...]`` and give ``method.parameters()``
to the optimizer, as the paper updates ``w`` by gradient descent alongside the network).
``weights(K, L)`` first renormalises ``w`` in place to sum to ``T`` (clamped at ``1e-8`` so it
stays positive), so the renormalisation after step ``k`` happens at the start of step ``k+1``,
before ``w`` is used; it returns the detached ``w`` (the weights of the shared update and of the
heads) and ``extra_loss()`` returns ``L_grad`` as a function of the parameter ``w`` with ``K``
and the target detached, so the single backward of ``Σ_t w_t L_t + L_grad`` gives the network
``Σ_t w_t ∇L_t`` and ``w`` exactly ``∂L_grad/∂w``.

Default level ``"last_layer"``: the Gramian is taken over the last shared layer, as in
the paper (``sqrt(K_tt) = ‖∇_W L_t‖``); at ``level="representation"`` the norms are those of the
saliencies ``∂L_t/∂Z``. ``L_t(0)`` is the loss of the first step the method sees. State (``w``,
``L(0)``, the step count) is in ``state_dict()``; the optimizer's state is the user's. The loss
ratios assume positive losses (``r`` is clamped at 0; a zero ``L(0)`` is clamped to the smallest
normal float). Non-finite gradient norms are treated as zero for the weight update (``w`` gets
no gradient from that task) so the weights never become NaN. Everything stays on the device.
"""

from __future__ import annotations

import torch
from torch import nn

from repmtl.hparams import NonNegative
from repmtl.methods.base import GramianWeighting, register


@register
class GradNorm(GramianWeighting):
    name = "gradnorm"
    family = "gradient manipulation"
    #: the paper takes the gradients at the last shared layer; level="parameters" takes all
    levels = ("last_layer", "parameters", "representation")
    description = "Learned task weights (sum T) equalising weighted gradient norms to relative training rates"
    reference = "Chen et al., ICML 2018, Eqs. 1-2"

    def __init__(self, alpha: NonNegative = 1.5) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self._terms: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, num_tasks: int) -> None:
        self.loss_weights = nn.Parameter(torch.ones(num_tasks))
        self.state.initial_losses = torch.ones(num_tasks, dtype=torch.float64)
        self.state.steps = 0

    @torch.no_grad()
    def renormalize(self) -> None:
        """``w ← T · w / Σ w`` (after clamping at ``1e-8``), in place."""
        w = self.loss_weights
        w.clamp_(min=1e-8)
        w.mul_(self.num_tasks / w.sum())

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        self.renormalize()
        w = self.loss_weights.detach()
        losses = losses.detach().to(torch.float64)
        if self.state.steps == 0:
            self.state.initial_losses = losses.clone()
        self.state.steps += 1
        norms = torch.diagonal(gramian).detach().to(torch.float64).clamp_min(0).sqrt()
        norms = torch.nan_to_num(norms, nan=0.0, posinf=0.0)
        initial = self.state.initial_losses.to(losses.device).clamp_min(torch.finfo(torch.float64).tiny)
        rate = losses / initial
        relative = (rate / rate.mean()).clamp_min(0)
        relative = torch.nan_to_num(relative, nan=1.0, posinf=1.0)
        weighted_norms = w.to(norms) * norms
        target = weighted_norms.mean() * relative.pow(self.alpha)
        self._terms = (norms, target)
        self.info = {"grad_norm_target": target, "weighted_grad_norms": weighted_norms}
        return w.clone().to(device=gramian.device, dtype=gramian.dtype)

    def extra_loss(self) -> torch.Tensor | None:
        """``L_grad = Σ_t |w_t ‖∇_W L_t‖ − target_t|`` of this step (gradient reaches ``w`` only)."""
        terms, self._terms = self._terms, None
        if terms is None:
            return None
        norms, target = terms
        w = self.loss_weights
        return (w * norms.to(device=w.device, dtype=w.dtype) - target.to(device=w.device, dtype=w.dtype)).abs().sum()
