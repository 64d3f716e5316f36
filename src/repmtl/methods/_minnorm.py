"""Min-norm point of the convex hull of task gradients, from their Gramian.

Solves ``min_α αᵀKα`` over the simplex with the pairwise Frank–Wolfe algorithm (Lacoste-Julien
& Jaggi, NeurIPS 2015): each step moves mass from the worst support vertex to the Frank–Wolfe
vertex with an exact line search. Unlike plain Frank–Wolfe (Sener & Koltun's MGDA solver) it
converges linearly on the simplex, so the KKT conditions hold to float64 precision in a few
dozen iterations at ``T ≤ 16``. Starting from uniform weights keeps the result symmetric when
tasks are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MinNormResult:
    weights: np.ndarray
    converged: bool
    iterations: int
    gap: float


def min_norm_weights(gramian: np.ndarray, max_iter: int = 250, tol: float = 1e-10) -> MinNormResult:
    """Weights ``α`` on the simplex minimising ``αᵀKα``; stops when the Frank–Wolfe duality
    gap ``αᵀKα − min_t (Kα)_t`` is at most ``tol · αᵀKα``."""
    k = np.asarray(gramian, dtype=np.float64)
    n = k.shape[0]
    alpha = np.full(n, 1.0 / n)
    gap = 0.0
    for iteration in range(max_iter):
        grad = k @ alpha
        value = float(alpha @ grad)
        s = int(np.argmin(grad))
        gap = value - float(grad[s])
        if gap <= tol * max(value, 0.0) or gap <= 0.0:
            return MinNormResult(alpha, True, iteration, gap)
        support = np.flatnonzero(alpha > 0)
        v = int(support[np.argmax(grad[support])])
        curvature = k[s, s] + k[v, v] - 2.0 * k[s, v]
        slope = float(grad[s] - grad[v])  # < 0: moving mass from v to s lowers the norm
        step = alpha[v] if curvature <= 0 else min(alpha[v], -slope / curvature)
        alpha[s] += step
        alpha[v] -= step
        if alpha[v] < 1e-16:
            alpha[v] = 0.0
    return MinNormResult(alpha, False, max_iter, gap)
