"""Positive solution of ``K w = w^{-p}`` (elementwise power), the core of Nash-MTL and FairGrad.

Nash-MTL's bargaining solution is ``p = 1`` (``Kα = 1/α``); FairGrad's α-fair update is
``p = 1/α``. For ``K`` positive semi-definite, the system is the stationarity condition of the
strictly convex

    f(w) = ½ wᵀKw − Σ_t h(w_t),   h'(w) = w^{-p}   (h = log w for p = 1,
                                                    h = w^{1-p}/(1-p) otherwise), w > 0,

so it has at most one solution, and one exists iff ``f`` is bounded below, i.e. iff no
``v ≥ 0, v ≠ 0`` has ``Jᵀv = 0`` (the point is not Pareto-stationary and no gradient is zero).
We minimise ``f`` with Newton's method: Hessian ``K + diag(p w^{-p-1})`` (positive definite),
a fraction-to-the-boundary rule keeps ``w > 0``, Armijo backtracking away from the solution, full
steps once the Newton decrement is small (for ``p = 1``, ``f`` is self-concordant and this is the
classical damped Newton scheme, globally and quadratically convergent). ``K`` is scaled to unit
largest diagonal first and the solution scaled back (``w ∝ m^{-1/(1+p)}`` for ``K → mK``), so
the iteration is the same at gradient scales 1e-8 and 1e8. Convergence is declared on the
scale-free residual ``max_t |(Kw)_t w_t^p − 1|``. A handful of iterations at ``T ≤ 16`` (a
``T×T`` solve each) replaces the official code's 20 cvxpy/ECOS convex-concave iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FairResult:
    weights: np.ndarray
    converged: bool
    iterations: int
    residual: float


def _objective(k: np.ndarray, w: np.ndarray, p: float) -> float:
    if p == 1.0:
        barrier = float(np.sum(np.log(w)))
    else:
        barrier = float(np.sum(w ** (1.0 - p))) / (1.0 - p)
    return 0.5 * float(w @ k @ w) - barrier


def _ray_scale(k: np.ndarray, w: np.ndarray, p: float) -> np.ndarray:
    """Best multiple ``s w`` of a positive guess: ``s^{1+p} = Σ w^{1-p} / wᵀKw``."""
    quad = float(w @ k @ w)
    if not quad > 0:
        return w
    return w * (float(np.sum(w ** (1.0 - p))) / quad) ** (1.0 / (1.0 + p))


def residual(k: np.ndarray, w: np.ndarray, p: float) -> float:
    """``max_t |(Kw)_t w_t^p − 1|``: zero exactly at the solution, independent of scale."""
    return float(np.max(np.abs((k @ w) * w**p - 1.0)))


def solve_fair_weights(
    k: np.ndarray,
    p: float,
    start: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> FairResult:
    """Solve ``K w = w^{-p}``, ``w > 0``, for a PSD ``K`` with a positive diagonal.

    ``start`` (in the units of ``K``; e.g. the previous step's solution) warm-starts Newton
    when it is positive and finite; otherwise the diagonal solution ``K_tt^{-1/(1+p)}`` is used.
    """
    k = np.asarray(k, dtype=np.float64)
    n = k.shape[0]
    top = float(np.max(np.diag(k)))
    kn = k / top
    unscale = top ** (-1.0 / (1.0 + p))

    candidates = [_ray_scale(kn, np.diag(kn) ** (-1.0 / (1.0 + p)), p)]
    if start is not None and start.shape == (n,) and np.all(np.isfinite(start)) and np.all(start > 0):
        candidates.append(_ray_scale(kn, start / unscale, p))
    w = min(candidates, key=lambda c: _objective(kn, c, p))

    res = residual(kn, w, p)
    for iteration in range(max_iter):
        if res <= tol:
            return FairResult(w * unscale, True, iteration, res)
        kw = kn @ w
        grad = kw - w ** (-p)
        hess = kn + np.diag(p * w ** (-p - 1.0))
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t = 1.0
        shrinking = step < 0
        if np.any(shrinking):
            t = min(1.0, 0.99 * float(np.min(-w[shrinking] / step[shrinking])))
        decrement = -float(grad @ step)  # Newton decrement², > 0 since the Hessian is PD
        if decrement > 0.0625:  # far from the solution: backtrack on f
            f0 = _objective(kn, w, p)
            for _ in range(60):
                if _objective(kn, w + t * step, p) <= f0 - 1e-4 * t * decrement:
                    break
                t *= 0.5
        w = w + t * step
        if not np.all(np.isfinite(w)) or np.any(w <= 0) or float(np.max(w)) > 1e12:
            break  # diverging: f is unbounded below (no solution)
        res = residual(kn, w, p)
    else:
        return FairResult(w * unscale, res <= tol, max_iter, res)
    res = residual(kn, w, p) if np.all(np.isfinite(w)) and np.all(w > 0) else float("inf")
    return FairResult(w * unscale, res <= tol, iteration + 1, res)
