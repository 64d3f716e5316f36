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
  clip applies to the shared update only: ``head_weights`` gives the heads the unclipped ``α``.
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
from repmtl.methods.base import Method, register

log = logging.getLogger(__name__)


@register
class NashMTL(Method):
    name = "nashmtl"
    needs = "gramian"
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
        self.step = 0
        self.prev_alpha: np.ndarray | None = None

    def setup(self, num_tasks: int) -> None:
        self.prev_alpha = np.ones(num_tasks)  # the official initial prvs_alpha

    def weights(self, gramian: torch.Tensor | None, losses: torch.Tensor | None = None) -> torch.Tensor:
        k = to_host(gramian)
        solve = self.step % self.update_weights_every == 0
        self.step += 1
        self.info = {"solved": solve, "fallback": False}
        alpha = self.prev_alpha.copy()
        if solve:
            alpha = self._solve(k)
            self.prev_alpha = alpha.copy()
        self._head_alpha = to_device(alpha, gramian)
        alpha, clipped = clip_to_norm(alpha, k, self.max_norm)
        self.info["clipped"] = clipped
        return to_device(alpha, gramian)

    def head_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """The official code clips only the shared gradients: heads get the unclipped ``α``."""
        return self._head_alpha

    def _solve(self, k: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(k)):
            return fallback(self, log, "the Gramian is not finite", self.prev_alpha.copy())
        active = active_tasks(k)
        if not active.any():
            return fallback(self, log, "every task gradient is zero", self.prev_alpha.copy())
        sub = k[np.ix_(active, active)]
        start = self.prev_alpha[active]
        result = solve_fair_weights(sub, 1.0, start=start, max_iter=self.max_iter, tol=self.tol)
        if not result.converged:
            return fallback(
                self,
                log,
                f"Newton solve of K alpha = 1/alpha did not converge (residual {result.residual:.3g}, "
                "no bargaining solution: Pareto-stationary point?)",
                self.prev_alpha.copy(),
                solver_iterations=result.iterations,
            )
        alpha = np.empty(k.shape[0])
        alpha[active] = result.weights
        alpha[~active] = result.weights.mean()
        self.info.update(solver_iterations=result.iterations, residual=result.residual)
        return alpha

    def get_extra_state(self) -> dict:
        prev = None if self.prev_alpha is None else self.prev_alpha.tolist()
        return {**super().get_extra_state(), "step": self.step, "prev_alpha": prev}

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self.step = int(state["step"])
        if state.get("prev_alpha") is not None:
            self.prev_alpha = np.asarray(state["prev_alpha"], dtype=np.float64)
