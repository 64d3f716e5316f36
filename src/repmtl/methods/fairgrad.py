"""FairGrad: α-fair allocation of the update among tasks.

Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024, Sec. 3: the update
``d = Σ_t w_t g_t`` maximises the α-fair utility of the tasks' directional derivatives; its
weights solve ``Gᵀ G w = w^{-1/α}`` elementwise (``K w = w^{-1/α}`` in Gramian terms; the
official code solves ``K x − (1/x)^{1/α} = 0`` with ``scipy.optimize.least_squares``).
``α = 1`` is Nash-MTL's proportional fairness, ``α → ∞`` max-min fairness (MGDA-like). The
official default is ``alpha = 1.0`` (``--alpha`` in its ``experiments/utils.py``; the paper
tunes it per benchmark).

Solver: exact Newton on the convex potential (``_fair.solve_fair_weights``, ``p = 1/α``).

Official details kept: the shared update is ``T · Σ_t w_t g_t`` (the official ``overwrite_grad``
multiplies by the number of tasks "to match the sum loss"), then clipped to ``max_norm``
(default 1.0, ``clip_grad_norm_`` on the shared parameters; ``0`` disables it; at
``level="representation"`` the bound is on the gradient w.r.t. ``Z``). Heads receive their plain
task gradients, as in the official code (per-task backwards accumulate into the heads).

Degenerate cases: zero-gradient tasks are left out of the solve (weight 0: they have no
direction to be fair to); if there is no solution or Newton fails (Pareto-stationary points),
the weights fall back to EW (``α = 1``, before clipping), logged and recorded as
``info["fallback"]``; so does a non-finite Gramian.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from repmtl.hparams import NonNegative, Positive, PositiveInt
from repmtl.methods._fair import solve_fair_weights
from repmtl.methods._gramian import (
    active_tasks,
    clip_to_norm,
    fallback,
    nonfinite_fallback,
)
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, plain_heads, register

log = logging.getLogger(__name__)


@register
class FairGrad(GramianWeighting):
    name = "fairgrad"
    family = "gradient manipulation"
    description = "alpha-fair update: weights solve K w = w^(-1/alpha) (exact Newton solve), norm clipped"
    reference = "Ban & Ji, ICML 2024, Sec. 3"

    def __init__(
        self, alpha: Positive = 1.0, max_norm: NonNegative = 1.0, max_iter: PositiveInt = 100, tol: Positive = 1e-10
    ) -> None:
        """``max_norm`` 0 disables clipping."""
        super().__init__()
        self.alpha = float(alpha)
        self.max_norm = float(max_norm)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        n = k.shape[0]
        self.info = {"fallback": False}
        w = self.fair_weights(k)
        alpha, clipped = clip_to_norm(n * w, k, self.max_norm)
        self.info["clipped"] = clipped
        return plain_heads(to_device(alpha, gramian))

    def fair_weights(self, k: np.ndarray) -> np.ndarray:
        """The solution ``w`` of ``K w = w^{-1/α}`` (zero for zero-gradient tasks), or the EW
        fallback ``1/T``."""
        n = k.shape[0]
        if not np.all(np.isfinite(k)):
            return nonfinite_fallback(self, log, n, 1.0 / n)
        active = active_tasks(k)
        if not active.any():
            return np.full(n, 1.0 / n)  # every gradient is zero: the update is zero anyway
        result = solve_fair_weights(k[np.ix_(active, active)], 1.0 / self.alpha, max_iter=self.max_iter, tol=self.tol)
        if not result.converged:
            return fallback(
                self,
                log,
                f"Newton solve of K w = w^(-1/alpha) did not converge (residual {result.residual:.3g})",
                np.full(n, 1.0 / n),
                solver_iterations=result.iterations,
            )
        w = np.zeros(n)
        w[active] = result.weights
        self.info.update(solver_iterations=result.iterations, residual=result.residual)
        return w
