"""UPGrad: project every task gradient onto the dual cone of all of them, then average.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv 2406.16232),
Sec. 3 (UPGrad) and Prop. 4/5; reference implementation TorchJD (``torchjd.aggregation.UPGrad``).
The dual cone of the rows of ``J`` is ``{v : Jv ≥ 0}``. The projection of ``g_i`` onto it is
``Jᵀ(u + λ)`` where ``λ ≥ 0`` minimises ``(u + λ)ᵀK(u + λ)``, ``u = e_i`` (the QP's dual); the
aggregate is ``Σ_i p_i π(g_i) = Jᵀα``, ``α = Σ_i p_i (e_i + λ^{(i)})``, with the preference
vector ``p`` (default: the mean, ``1/T``). Every ``π(g_i)`` lies in the dual cone, so
``Kα ≥ 0``: the update never conflicts with any task gradient; for non-conflicting gradients it
is their mean.

Solver: each of the ``T`` QPs is a non-negative least-squares problem ``min_{λ≥0} ‖Aλ + Au‖``
with ``K = AᵀA`` (``A = diag(√σ) Vᵀ`` from the eigen-decomposition of ``K/trace K``, rounding-level eigenvalues
dropped; zero-gradient tasks are left out of the QPs), solved
exactly by ``scipy.optimize.nnls`` (Lawson–Hanson active set). The result is checked
(finite, ``Kα ≥ −tol``); otherwise we fall back to MGDA's min-norm weights (also conflict-free),
log it and set ``info["fallback"]`` (a non-finite Gramian gives the preference weights ``p``).

Differences from TorchJD's defaults: TorchJD adds ``reg_eps = 1e-4`` to the normalised Gramian's
diagonal because its quadprog solver needs a strictly positive-definite matrix, and returns
mean weights when ``trace K < norm_eps = 1e-4``. NNLS needs neither, so ``reg_eps`` defaults to
0 here (the exact method; the non-conflict guarantee then holds for ``K`` itself) and tiny
gradients are handled at their true scale. Heads get their plain task gradients (TorchJD's
``mtl_backward`` gives task-specific parameters their own losses' gradients).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.optimize import nnls

from repmtl.hparams import NonNegative, Positive
from repmtl.methods._gramian import active_tasks, fallback, min_norm_weights_exact
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, plain_heads, register

log = logging.getLogger(__name__)


def upgrad_weights(k: np.ndarray, pref: np.ndarray, reg_eps: float = 0.0) -> np.ndarray | None:
    """``α = Σ_i p_i w^{(i)}``, ``w^{(i)} = argmin_{w ≥ e_i} wᵀKw``; ``None`` if not finite.

    Zero-gradient tasks are left out of the QPs: their constraint ``0ᵀv ≥ 0`` is void and their
    own projection is 0, so they keep ``w^{(i)} = e_i`` (weight ``p_i`` on a zero gradient).
    Keeping them in would give the factor ``A`` a rounding-noise column on which NNLS may put
    arbitrarily large weights.
    """
    active = active_tasks(k)
    alpha = pref.astype(np.float64).copy()
    if not active.any():
        return alpha  # every gradient is zero
    sub = k[np.ix_(active, active)]
    m = sub.shape[0]
    kn = 0.5 * (sub + sub.T) / float(np.trace(sub)) + reg_eps * np.eye(m)
    eigval, eigvec = np.linalg.eigh(kn)
    # kn ≈ factorᵀ factor on its numerical range: eigenvalues at rounding level (≤ λ_max·m·eps)
    # are dropped, otherwise their noise directions let NNLS "cancel" gradients that cannot be
    # cancelled (e.g. collinear gradients of mixed sign, whose dual cone is {0})
    keep = eigval > float(eigval.max()) * m * np.finfo(np.float64).eps
    factor = np.sqrt(eigval[keep])[:, None] * eigvec[:, keep].T
    index = np.flatnonzero(active)
    for row, i in enumerate(index):
        lam, _ = nnls(factor, -factor[:, row], maxiter=50 * m)
        lam[row] += 1.0
        alpha[index] += pref[i] * lam
        alpha[i] -= pref[i]  # e_i was counted in alpha's initial value
    return alpha if np.all(np.isfinite(alpha)) else None


@register
class UPGrad(GramianWeighting):
    name = "upgrad"
    family = "gradient manipulation"
    description = "Average of the task gradients projected onto the dual cone of all of them (non-conflicting)"
    reference = "Quinton & Rey, arXiv 2406.16232 (2024), Sec. 3; TorchJD"

    def __init__(
        self, pref_vector: list[NonNegative] | None = None, reg_eps: NonNegative = 0.0, tol: Positive = 1e-9
    ) -> None:
        super().__init__()
        if pref_vector is not None and not sum(pref_vector) > 0:
            raise ValueError(f"method 'upgrad': pref_vector needs a positive sum, got {pref_vector}")
        self.pref_vector = None if pref_vector is None else [float(x) for x in pref_vector]
        self.reg_eps = float(reg_eps)
        self.tol = float(tol)

    def setup(self, num_tasks: int) -> None:
        if self.pref_vector is not None and len(self.pref_vector) != num_tasks:
            raise ValueError(f"pref_vector has {len(self.pref_vector)} entries for {num_tasks} tasks")

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        n = k.shape[0]
        pref = np.full(n, 1.0 / n) if self.pref_vector is None else np.asarray(self.pref_vector)
        self.info = {"fallback": False}
        if not np.all(np.isfinite(k)):
            return plain_heads(to_device(fallback(self, log, "the Gramian is not finite", pref), gramian))
        alpha = upgrad_weights(k, pref, self.reg_eps)
        if alpha is None or not self._conflict_free(k, alpha):
            active = active_tasks(k)
            safe = np.zeros(n)
            safe[active] = min_norm_weights_exact(k[np.ix_(active, active)])
            alpha = fallback(self, log, "projection QPs gave a non-finite or conflicting result", safe)
        return plain_heads(to_device(alpha, gramian))

    def _conflict_free(self, k: np.ndarray, alpha: np.ndarray) -> bool:
        """``(Kα)_t = g_tᵀ(Jᵀα) ≥ −tol (‖g_t‖ ‖Jᵀα‖ + Σ_s |K_ts α_s|)`` for every task: no
        conflict up to the rounding of the sum (which matters when ``Jᵀα ≈ 0``)."""
        norms = np.sqrt(np.clip(np.diag(k), 0.0, None))
        total = np.sqrt(max(float(alpha @ k @ alpha), 0.0))
        magnitude = np.abs(k) @ np.abs(alpha)
        return bool(np.all(k @ alpha >= -self.tol * (norms * total + magnitude)))
