"""Nash-MTL: the Nash bargaining solution among task gradients.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022, Eq. (3) / Thm. 3.1: the
update ``Δ = Σ_t α_t g_t`` with ``α > 0`` solving ``Gᵀ G α = 1/α``, i.e. ``Kα = 1/α`` in Gramian
terms (every task's directional derivative ``g_tᵀΔ = 1/α_t`` is positive).

Solver: the official code approximates the solution with up to 20 convex-concave iterations of
cvxpy/ECOS; we solve the same system exactly with Newton's method on the T-dimensional convex
potential ``½αᵀKα − Σ log α`` (``_fair.solve_fair_weights`` with ``p = 1``), warm-started from
the previous step's ``α`` (kept in the state, like the official ``prvs_alpha``).

Official options kept:

* ``max_norm`` (default 1.0): after the backward the official code calls
  ``clip_grad_norm_(shared_parameters, max_norm)``. We clip the combined update ``‖Jᵀα‖`` by
  scaling ``α``, which is the same at ``level="parameters"``; at ``level="representation"`` the
  bound applies to the gradient w.r.t. ``Z``. ``max_norm <= 0`` disables it. Since ``αᵀKα = T``
  at the solution, the clip is active whenever ``T > max_norm²``. As in the official code, the
  clip applies to the shared update only: the heads get the unclipped ``α``.
* ``update_weights_every`` (default 1): solve every ``k``-th step and reuse the previous ``α``
  in between, as the official code does (the Gramian is still computed by ``repmtl.backward``, so
  only the solve is saved; the clip uses the current Gramian).

Heads get ``α_t ∇L_t`` with the unclipped ``α`` (the official code back-propagates ``Σ α_t L_t``
and then clips the shared gradients).

Degenerate cases. A task with a zero gradient (``K_tt = 0``) has no bargaining solution
(``α_t → ∞``); it is left out of the solve and gets the mean weight of the others (its weight
does not change the shared update; its head keeps learning). If the system has no solution or
Newton does not converge (Pareto-stationary points, where ``Jᵀv = 0`` for some ``v ≥ 0``), the
previous step's ``α`` is used, as the official code does when its solver fails (ones on the
first step); this is logged and recorded as ``info["fallback"]``. Same for a non-finite Gramian.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from repmtl.hparams import NonNegative, Positive, PositiveInt
from repmtl.methods._fair import solve_fair_weights
from repmtl.methods._gramian import active_tasks, clip_to_norm, fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, register

log = logging.getLogger(__name__)


@register
class NashMTL(GramianWeighting):
    name = "nashmtl"
    family = "gradient manipulation"
    description = "Nash bargaining solution K alpha = 1/alpha (exact Newton solve), update norm clipped"
    reference = "Navon et al., ICML 2022, Eq. 3 / Thm. 3.1"

    def __init__(
        self,
        max_norm: NonNegative = 1.0,
        update_weights_every: PositiveInt = 1,
        max_iter: PositiveInt = 100,
        tol: Positive = 1e-10,
    ) -> None:
        """``max_norm`` 0 disables clipping."""
        super().__init__()
        self.max_norm = float(max_norm)
        self.update_weights_every = int(update_weights_every)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def setup(self, num_tasks: int) -> None:
        self.state.step = 0
        self.state.prev_alpha = [1.0] * num_tasks  # the official initial prvs_alpha

    @property
    def prev_alpha(self) -> np.ndarray:
        """The last solved ``α`` (a fresh array)."""
        return np.asarray(self.state.prev_alpha, dtype=np.float64)

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        """Shared: ``α`` clipped to ``max_norm``; heads: the unclipped ``α`` (the official code
        clips only the shared gradients)."""
        k = to_host(gramian)
        solve = self.state.step % self.update_weights_every == 0
        self.state.step += 1
        self.info = {"solved": solve, "fallback": False}
        alpha = self.prev_alpha
        if solve:
            alpha = self._solve(k)
            self.state.prev_alpha = alpha.tolist()
        unclipped = to_device(alpha, gramian)
        alpha, clipped = clip_to_norm(alpha, k, self.max_norm)
        self.info["clipped"] = clipped
        return TaskWeights(to_device(alpha, gramian), heads=unclipped)

    def _solve(self, k: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(k)):
            return fallback(self, log, "the Gramian is not finite", self.prev_alpha)
        active = active_tasks(k)
        if not active.any():
            return fallback(self, log, "every task gradient is zero", self.prev_alpha)
        sub = k[np.ix_(active, active)]
        start = self.prev_alpha[active]
        result = solve_fair_weights(sub, 1.0, start=start, max_iter=self.max_iter, tol=self.tol)
        if not result.converged:
            return fallback(
                self,
                log,
                f"Newton solve of K alpha = 1/alpha did not converge (residual {result.residual:.3g}, "
                "no bargaining solution: Pareto-stationary point?)",
                self.prev_alpha,
                solver_iterations=result.iterations,
            )
        alpha = np.empty(k.shape[0])
        alpha[active] = result.weights
        alpha[~active] = result.weights.mean()
        self.info.update(solver_iterations=result.iterations, residual=result.residual)
        return alpha
