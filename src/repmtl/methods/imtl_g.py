"""IMTL-G: impartial gradient balancing, the closed form from the Gramian.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, Sec. 3.2 / Eq. (6): find the
update ``g = Σ_t α_t g_t`` with ``Σ_t α_t = 1`` whose projections on every unit task gradient
``u_t = g_t/‖g_t‖`` are equal, ``gᵀu_1 = … = gᵀu_T``. The paper's closed form
``α_{2:T} = g_1 Uᵀ (D Uᵀ)^{-1}`` (``D``, ``U``: differences of raw and unit gradients to task 1)
singles out task 1; we solve the same conditions symmetrically from ``K``:
``(Kα)_t / n_t = c`` for all ``t`` (``n_t = sqrt(K_tt)``) and ``Σ α_t = 1``, i.e. with the
cosine matrix ``C = N K N`` (``N = diag(1/n)``) and ``α = Nβ``:

    [ C    −1 ] [β]   [0]
    [ 1ᵀN   0 ] [c] = [1],

a ``(T+1)×(T+1)`` linear system solved by least squares in float64 (``n`` scaled to unit
maximum so it is the same system at every gradient scale). Where ``DUᵀ`` is invertible this is
exactly the paper's solution; where it is singular (duplicate tasks, opposite gradients) the
minimum-norm solution keeps the equal-projection property and treats identical tasks alike,
where the official code adds ``1e-8·I`` before inverting.

Heads get their plain task gradients (IMTL-G balances the shared parameters only; the paper's
Alg. 1 updates task-specific parameters with the raw task losses when IMTL-L is off).

Sign of the update. The equal projection ``c`` is fixed by ``Σα = 1`` and can be *negative*
(only for strongly correlated or conflicting gradients, e.g. ``T`` comparable to the rank): the
update then increases every task's loss to first order. This is the paper's formula (its closed
form, LibMTL and TorchJD all return it); we keep it and report it: ``info["projection"]`` is
``c`` relative to the largest gradient norm and ``info["ascent"]`` is true when ``c < 0``.

Degenerate cases: zero-gradient tasks have no direction; they are left out and get ``α_t = 0``.
If the system has no accurate solution (residual above ``1e-8`` relative) or is not finite, we
fall back to EW scaled like IMTL-G (``α_t = 1/T``), log it and set ``info["fallback"]``; so does a non-finite Gramian.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from repmtl.methods._gramian import active_tasks, fallback, nonfinite_fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import (
    GramianWeighting,
    Method,
    TaskWeights,
    plain_heads,
    register,
)

log = logging.getLogger(__name__)

_RESIDUAL_TOL = 1e-8


def imtl_g_weights(k: np.ndarray) -> tuple[np.ndarray | None, float, float]:
    """``α`` (summing to 1, zero on zero-gradient tasks) with equal projections of ``Jᵀα`` on
    every unit task gradient, the relative residual of the system (``α = None`` if unsolvable)
    and the common projection ``uᵀJᵀα`` relative to the largest gradient norm."""
    n_tasks = k.shape[0]
    active = active_tasks(k)
    if not active.any():
        return np.full(n_tasks, 1.0 / n_tasks), 0.0, 0.0  # the update is zero whatever α is
    sub = k[np.ix_(active, active)]
    norms = np.sqrt(np.diag(sub))
    cos = sub / np.outer(norms, norms)
    scaled = norms / norms.max()
    m = len(norms)
    system = np.zeros((m + 1, m + 1))
    system[:m, :m] = cos
    system[:m, m] = -1.0
    system[m, :m] = 1.0 / scaled
    rhs = np.zeros(m + 1)
    rhs[m] = 1.0
    try:
        solution, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    except np.linalg.LinAlgError:
        return None, float("inf"), float("nan")
    if not np.all(np.isfinite(solution)):
        return None, float("inf"), float("nan")
    res = float(np.linalg.norm(system @ solution - rhs)) / max(1.0, float(np.linalg.norm(solution)))
    alpha = np.zeros(n_tasks)
    alpha[active] = solution[:m] / scaled
    return alpha, res, float(solution[m])


@register
class IMTLG(GramianWeighting):
    name = "imtl-g"
    family = "gradient manipulation"
    description = "Impartial gradients: update with equal projections on every unit task gradient"
    reference = "Liu et al., ICLR 2021, Sec. 3.2, Eq. 6"

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        self.info = {"fallback": False}
        return plain_heads(to_device(imtl_g_or_fallback(self, k), gramian))


def imtl_g_or_fallback(method: Method, k: np.ndarray) -> np.ndarray:
    """IMTL-G weights, or the documented EW fallback ``1/T`` (logged, ``info["fallback"]``)."""
    n = k.shape[0]
    if not np.all(np.isfinite(k)):
        return nonfinite_fallback(method, log, n, 1.0 / n)
    alpha, res, projection = imtl_g_weights(k)
    if alpha is None or not res <= _RESIDUAL_TOL:
        return fallback(
            method, log, f"IMTL-G system has no accurate solution (residual {res:.3g})", np.full(n, 1.0 / n)
        )
    method.info.update(residual=res, projection=projection, ascent=projection < 0)
    return alpha
