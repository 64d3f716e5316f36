"""Aligned-MTL: align the principal components of the task gradients.

Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023, Alg. 1
(and the official ``ProcrustesSolver``): with the eigen-decomposition ``K = V Σ Vᵀ`` of the
Gramian (rank ``r``, eigenvalues below ``max σ · T · eps`` dropped, ``eps`` the machine epsilon of
the Gramian's dtype), the balance matrix is

    B = sqrt(σ_scale) · V_r Σ_r^{-1/2} V_rᵀ,

the aligned task gradients are the columns of ``Jᵀ B`` (orthogonal, all of norm
``sqrt(σ_scale)``: ``B K B = σ_scale · V_r V_rᵀ``, condition number one) and the update is their
sum, ``Jᵀα`` with ``α = B 1``. ``scale_mode`` picks ``σ_scale`` as in the official code:
``"min"`` (default, the smallest retained eigenvalue), ``"median"`` or ``"rmse"`` (their mean).
A zero Gramian gives ``B = I`` (EW weights; the update is zero anyway).

Uses ``numpy.linalg.eigh`` in float64 on the host (the official code and LibMTL call
``torch.symeig``, removed from PyTorch). Heads get their plain task gradients, as in the official
code (``update_decoder_grads=True``). A non-finite Gramian gives EW weights (logged,
``info["fallback"]``). ``level="representation"`` is Aligned-MTL-UB, registered
as ``alignedmtl-ub``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from repmtl.methods._gramian import nonfinite_fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods.base import GramianWeighting, TaskWeights, plain_heads, register

log = logging.getLogger(__name__)
ScaleMode = Literal["min", "median", "rmse"]


def balance_matrix(
    k: np.ndarray, scale_mode: ScaleMode = "min", eps: float = float(np.finfo(np.float64).eps)
) -> tuple[np.ndarray, int]:
    """The Aligned-MTL balance matrix ``B`` (``T×T``) of a finite Gramian, and its rank ``r``."""
    n = k.shape[0]
    eigval, eigvec = np.linalg.eigh(0.5 * (k + k.T))
    top = float(eigval.max())
    if not top > 0:
        return np.eye(n), 0
    keep = eigval > top * n * eps
    values, vectors = eigval[keep], eigvec[:, keep]
    if scale_mode == "min":
        target = float(values.min())
    elif scale_mode == "median":
        target = float(np.median(values))
    else:
        target = float(values.mean())
    return (vectors * np.sqrt(target / values)) @ vectors.T, int(keep.sum())


@register
class AlignedMTL(GramianWeighting):
    name = "alignedmtl"
    family = "gradient manipulation"
    description = "Align task gradients to orthogonal, equal-norm principal components (condition number 1)"
    reference = "Senushkin et al., CVPR 2023, Alg. 1"

    def __init__(self, scale_mode: ScaleMode = "min") -> None:
        super().__init__()
        self.scale_mode = scale_mode

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> TaskWeights:
        k = to_host(gramian)
        self.info = {"fallback": False}
        if not np.all(np.isfinite(k)):
            return plain_heads(to_device(nonfinite_fallback(self, log, k.shape[0], 1.0), gramian))
        b, rank = balance_matrix(k, self.scale_mode, float(torch.finfo(gramian.dtype).eps))
        self.info["rank"] = rank
        return plain_heads(to_device(b.sum(axis=1), gramian))
