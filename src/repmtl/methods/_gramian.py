"""Small helpers shared by the Gramian methods: zero-gradient tasks, norm clipping, fallbacks.

Everything here works on the float64 host copy of ``K`` (``_host.to_host``), so a method pays
one device→host copy of ``T²`` numbers per step and nothing else.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import nnls

#: a task whose gradient norm is at most this fraction of the largest one counts as zero-gradient
#: (its direction is undefined: IMTL-G cannot normalise it, Nash-MTL / FairGrad have no solution
#: with it). Far below float32 resolution, so only gradients that are zero up to rounding qualify.
ZERO_GRADIENT_RTOL = 1e-10


def active_tasks(k: np.ndarray, rtol: float = ZERO_GRADIENT_RTOL) -> np.ndarray:
    """Boolean mask of the tasks whose gradient is not (numerically) zero."""
    diag = np.clip(np.diag(k), 0.0, None)
    top = float(diag.max()) if diag.size else 0.0
    if not np.isfinite(top) or top <= 0.0:
        return np.zeros(k.shape[0], dtype=bool)
    return diag > (rtol * rtol) * top


def update_norm(alpha: np.ndarray, k: np.ndarray) -> float:
    """``‖Jᵀα‖ = sqrt(αᵀKα)`` (clipped at 0 against rounding)."""
    return float(np.sqrt(max(float(alpha @ k @ alpha), 0.0)))


def clip_to_norm(alpha: np.ndarray, k: np.ndarray, max_norm: float) -> tuple[np.ndarray, bool]:
    """Scale ``α`` so that ``‖Jᵀα‖ ≤ max_norm`` (``max_norm <= 0``: no clipping).

    This is ``torch.nn.utils.clip_grad_norm_(shared_params, max_norm)`` applied to the combined
    update ``Jᵀα`` of the level the Gramian was taken at, done on the weights instead.
    """
    if max_norm <= 0:
        return alpha, False
    norm = update_norm(alpha, k)
    if norm > max_norm:
        return alpha * (max_norm / norm), True
    return alpha, False


def fallback(method, logger: logging.Logger, reason: str, weights: np.ndarray, **info: object) -> np.ndarray:
    """Record a solver fallback: log a warning, add it to ``method.info``, return ``weights``."""
    logger.warning("%s: %s; falling back to its safe direction", method.name, reason)
    method.info.update({"fallback": True, "fallback_reason": reason, **info})
    return weights


def finite_or(array: np.ndarray, default: np.ndarray) -> np.ndarray:
    return array if np.all(np.isfinite(array)) else default


def nonfinite_fallback(method, logger: logging.Logger, num_tasks: int, weight: float) -> np.ndarray:
    """A Gramian with inf/NaN entries (overflowing gradients) has no meaningful solution: EW
    weights ``weight`` (the method's EW scale), logged and recorded in ``method.info``."""
    return fallback(method, logger, "the Gramian is not finite", np.full(num_tasks, float(weight)))


def min_norm_weights_exact(k: np.ndarray) -> np.ndarray:
    """MGDA's ``argmin_{α ∈ simplex} αᵀKα``, exactly, by one non-negative least-squares solve.

    With ``K = AᵀA``, NNLS ``min_{β ≥ 0} ‖Aβ‖² + (1ᵀβ − 1)²`` is solved by ``β = α*/(1 + m*)``
    (``m*`` the minimum): for fixed ``s = 1ᵀβ`` the best ``β`` is ``s α*``, and
    ``s² m* + (s − 1)²`` is smallest at ``s = 1/(1 + m*)``. Lawson–Hanson terminates finitely,
    so the KKT conditions hold to rounding even at Pareto-stationary points (``m* = 0``), where
    Frank–Wolfe-type solvers crawl.
    """
    n = k.shape[0]
    top = float(np.max(np.diag(k))) if n else 0.0
    if not (np.isfinite(top) and top > 0):
        return np.full(n, 1.0 / n)
    eigval, eigvec = np.linalg.eigh(0.5 * (k + k.T) / top)
    factor = np.sqrt(np.clip(eigval, 0.0, None))[:, None] * eigvec.T
    system = np.vstack([factor, np.ones((1, n))])
    rhs = np.zeros(n + 1)
    rhs[-1] = 1.0
    beta, _ = nnls(system, rhs, maxiter=50 * n)
    return beta / beta.sum()
