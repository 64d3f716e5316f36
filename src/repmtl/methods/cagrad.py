"""CAGrad: conflict-averse gradient descent.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021, Eq. (4)
and its dual (Sec. 3.2): the update maximises the worst task improvement ``min_t g_tᵀd`` inside
the ball ``‖d − g_0‖ ≤ c‖g_0‖`` around the average gradient ``g_0 = (1/T) Σ_t g_t``. With
``g_w = Σ_t w_t g_t`` the dual is

    min_{w ∈ simplex}  F(w) = g_wᵀ g_0 + c ‖g_0‖ ‖g_w‖,

and ``d = g_0 + (c‖g_0‖ / ‖g_w‖) g_w``. In Gramian terms ``g_wᵀg_0 = wᵀK1/T``,
``‖g_w‖² = wᵀKw`` and ``‖g_0‖² = 1ᵀK1/T²``, so ``d = Jᵀα`` with
``α = 1/T + (c‖g_0‖/‖g_w‖) w``.

Solver: the T-dimensional dual on the host in float64 (``K`` scaled to unit largest diagonal,
which leaves ``w`` and ``α`` unchanged), by SLSQP with the analytic gradient, started at the
uniform weights as in the official code. Convergence is *certified* by the duality gap
``F(w) − min_t g_tᵀd(w) ≥ 0``, zero exactly at the optimum (weak duality); if the gap is not
below ``tol · ‖g_0‖(‖g_0‖ + c)`` or the result is not finite, we fall back to the average
gradient ``g_0`` (CAGrad with ``c = 0``, i.e. EW), log it and set ``info["fallback"]``.

Official options kept: ``rescale`` (the official ``cagrad(grads, alpha, rescale=1)``): 0: no
rescaling, 1 (default): divide by ``1 + c²``, 2: divide by ``1 + c``; and the official
``overwrite_grad`` multiplies the update by ``T`` "to match the sum loss", so ``c = 0`` equals
EW here too. Heads receive their plain task gradients, as in the official code. ``max_norm``
(default 0: off) clips ``‖Jᵀα‖`` like the ``clip_grad_norm_`` of the Nash-MTL / FairGrad
experiment code (which uses ``c = 0.4, max_norm = 1``); CAGrad's own code does not clip.

A non-finite Gramian gives the same EW fallback. Degenerate cases: ``g_0 = 0`` (tasks cancel)
or ``g_w = 0`` at the optimum (a Pareto-stationary point) give ``d = g_0``, the limit the
official code's ``+1e-8`` guards reach.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from scipy.optimize import minimize

from repmtl.hparams import NonNegative, Positive, PositiveInt
from repmtl.methods._gramian import clip_to_norm, fallback, nonfinite_fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, plain_heads, register

log = logging.getLogger(__name__)

#: relative size below which ``‖g_0‖`` or ``‖g_w‖`` count as zero (unit-diagonal units)
_ZERO = 1e-12


@register
class CAGrad(GramianWeighting):
    name = "cagrad"
    family = "gradient manipulation"
    description = "Conflict-averse update: maximise the worst task improvement near the mean gradient"
    reference = "Liu et al., NeurIPS 2021, Eq. 4 and dual (Sec. 3.2)"

    def __init__(
        self,
        c: NonNegative = 0.5,
        rescale: Literal[0, 1, 2] = 1,
        max_norm: NonNegative = 0.0,
        max_iter: PositiveInt = 200,
        tol: Positive = 1e-6,
    ) -> None:
        """``rescale``: 0 none, 1 divide by 1+c², 2 divide by 1+c; ``max_norm`` 0 disables clipping."""
        super().__init__()
        self.c = float(c)
        self.rescale = int(rescale)
        self.max_norm = float(max_norm)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        n = k.shape[0]
        self.info = {"fallback": False}
        alpha = n * self.direction_weights(k)
        alpha /= (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        alpha, clipped = clip_to_norm(alpha, k, self.max_norm)
        self.info["clipped"] = clipped
        return plain_heads(to_device(alpha, gramian))

    def direction_weights(self, k: np.ndarray) -> np.ndarray:
        """``α`` with ``Jᵀα = g_0 + (c‖g_0‖/‖g_w‖) g_w`` (the paper's ``d``, before the official
        ``T`` factor and rescaling)."""
        n = k.shape[0]
        mean = np.full(n, 1.0 / n)
        if not np.all(np.isfinite(k)):
            return nonfinite_fallback(self, log, n, 1.0 / n)
        top = float(np.max(np.diag(k)))
        if not top > 0:
            return mean  # every gradient is zero: d = g_0 = 0
        kn = k / top
        g0_sq = float(mean @ kn @ mean)
        if g0_sq <= _ZERO**2 or self.c == 0:
            return mean
        radius = self.c * np.sqrt(g0_sq)
        w, gap = self._solve_dual(kn, radius)
        if w is None:
            return fallback(self, log, "dual solve returned a non-finite point", mean)
        gw = np.sqrt(max(float(w @ kn @ w), 0.0))
        if gw <= _ZERO:
            return mean  # Pareto-stationary: the official limit d = g_0
        if not gap <= self.tol * np.sqrt(g0_sq) * (np.sqrt(g0_sq) + self.c):
            return fallback(
                self, log, f"dual solve not certified (duality gap {gap:.3g})", mean, duality_gap=float(gap)
            )
        self.info["duality_gap"] = float(gap)
        return mean + (radius / gw) * w

    def _solve_dual(self, kn: np.ndarray, radius: float) -> tuple[np.ndarray | None, float]:
        n = kn.shape[0]
        a = kn.sum(axis=1) / n  # a_t = g_tᵀ g_0

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            kw = kn @ w
            norm = np.sqrt(max(float(w @ kw), 0.0))
            grad = a + (radius / norm) * kw if norm > _ZERO else a.copy()
            return float(a @ w) + radius * norm, grad

        res = minimize(
            objective,
            np.full(n, 1.0 / n),
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * n,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
            options={"maxiter": self.max_iter, "ftol": 1e-15},
        )
        w = np.clip(res.x, 0.0, None)
        if not (np.all(np.isfinite(w)) and w.sum() > 0):
            return None, float("inf")
        w /= w.sum()
        self.info["solver_iterations"] = int(res.nit)
        return w, duality_gap(kn, w, radius)


def duality_gap(k: np.ndarray, w: np.ndarray, radius: float) -> float:
    """``F(w) − min_t g_tᵀd(w)`` for ``d(w) = g_0 + radius · g_w/‖g_w‖`` (``d = g_0`` when
    ``g_w = 0``): non-negative for every ``w`` on the simplex, zero exactly at the optimum."""
    n = k.shape[0]
    mean = np.full(n, 1.0 / n)
    kw = k @ w
    gw = np.sqrt(max(float(w @ kw), 0.0))
    dual = float(mean @ kw) + radius * gw
    coeff = mean + (radius / gw) * w if gw > _ZERO else mean
    primal = float(np.min(k @ coeff))
    return max(dual - primal, 0.0)
