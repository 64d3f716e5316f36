"""Gradient geometry from a Gramian ``K = J Jᵀ`` (Mao et al., IEEE Access 2024, Eqs. 5–6;
Guo et al., arXiv 2509.23915, 2025, Fig. 7; ``docs/formulas.md#diagnostics``).

Every function takes ``K`` of either level (parameter level: ``J`` holds the task gradients of
the shared parameters; representation level: ``J`` holds the batch-flattened saliencies
``∂L_t/∂Z``) and works on its values only, so the same code serves both. ``K`` may carry leading
batch dimensions (``...×T×T``), e.g. a stack of Gramians logged over training.

All functions are pure tensor code: no host synchronisation, no ``.item()``, no data-dependent
python branching, so they can run on the device every few steps. ``K`` is assumed symmetric
positive semi-definite (it is a Gramian); it is symmetrised, and its diagonal clamped at 0,
against rounding.

Edge cases (defined values, never NaN):

* **One task** (``T = 1``, no pairs ``i ≠ j``): ``gds = gms = 1``, the value of a set of
  gradients that neither conflict nor dominate each other. Nothing can conflict with itself.
* **Zero gradients**: a pair involving a zero gradient has cosine ``0`` in GDS (a zero gradient
  neither agrees nor conflicts). In GMS, ``β_ij = 2‖g_i‖‖g_j‖/(‖g_i‖²+‖g_j‖²)`` is ``0`` when
  exactly one of the two is zero (its natural value) and ``1`` when both are zero (equal
  magnitudes; the limit along ``‖g_i‖ = ‖g_j‖``).
* **Zero update** (``αᵀKα = 0``) or zero task gradient in :func:`cosine_to_update`: cosine ``0``.
* **Singular** ``K`` in :func:`condition_number` (smallest eigenvalue ``≤ T·eps·λ_max``, eps of
  ``K``'s dtype, as ``numpy.linalg.matrix_rank`` decides rank; includes ``K = 0``): ``+inf``.
  Infinity is the exact answer for a singular system, not a missing value; plotting code
  should drop it (``repmtl.experiments.report`` does and says how many points it dropped).
"""

from __future__ import annotations

import torch

__all__ = ["condition_number", "cosine_matrix", "cosine_to_update", "gds", "gms", "gradient_norms"]

#: repeated squarings used to find extreme eigenvalues without ``eigvalsh`` (see
#: :func:`_extreme_eigenvalues`); 2**48 amplification resolves eigenvalue ratios to 1e-14.
_SQUARINGS = 48


def _check(gramian: torch.Tensor) -> torch.Tensor:
    if not isinstance(gramian, torch.Tensor):
        raise TypeError(f"the Gramian must be a tensor, got {type(gramian).__name__}")
    if gramian.ndim < 2 or gramian.shape[-1] != gramian.shape[-2] or gramian.shape[-1] == 0:
        raise ValueError(f"the Gramian must be a non-empty square matrix (...×T×T), got shape {tuple(gramian.shape)}")
    if not gramian.is_floating_point():
        gramian = gramian.to(torch.get_default_dtype())
    return 0.5 * (gramian + gramian.transpose(-1, -2))


def _diag(gramian: torch.Tensor) -> torch.Tensor:
    return gramian.diagonal(dim1=-2, dim2=-1).clamp_min(0.0)


def _safe_div(num: torch.Tensor, den: torch.Tensor, default: float) -> torch.Tensor:
    """``num / den`` where ``den > 0``, ``default`` elsewhere (no NaN, no sync)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, default))


def _off_diagonal_mean(matrix: torch.Tensor, empty: float) -> torch.Tensor:
    """Mean over ``i ≠ j`` of the last two dims; ``empty`` when ``T = 1``."""
    t = matrix.shape[-1]
    if t == 1:  # a shape, not a value: no host sync
        return torch.full(matrix.shape[:-2], empty, dtype=matrix.dtype, device=matrix.device)
    eye = torch.eye(t, dtype=torch.bool, device=matrix.device)
    return matrix.masked_fill(eye, 0.0).sum(dim=(-2, -1)) / (t * (t - 1))


def gradient_norms(gramian: torch.Tensor) -> torch.Tensor:
    """``‖g_t‖ = sqrt(K_tt)`` for every task (``...×T``)."""
    return _diag(_check(gramian)).sqrt()


def cosine_matrix(gramian: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines ``K_ij / sqrt(K_ii K_jj)`` (``...×T×T``), clamped to ``[-1, 1]``.

    Entries involving a zero gradient are ``0``, the diagonal included (a zero gradient has no
    direction); the diagonal of a non-zero gradient is ``1``.
    """
    k = _check(gramian)
    norms = _diag(k).sqrt()
    den = norms.unsqueeze(-1) * norms.unsqueeze(-2)
    return _safe_div(k, den, 0.0).clamp(-1.0, 1.0)


def gds(gramian: torch.Tensor) -> torch.Tensor:
    """Gradient Direction Similarity (task conflict; Mao et al., 2024, Eq. 5).

    ``GDS = 1/(T(T−1)) Σ_{i≠j} K_ij / sqrt(K_ii K_jj)``, in ``[-1, 1]``; lower means more
    conflict. Pairs with a zero gradient count as ``0``; ``T = 1`` gives ``1`` (module doc).
    """
    return _off_diagonal_mean(cosine_matrix(gramian), empty=1.0)


def gms(gramian: torch.Tensor) -> torch.Tensor:
    """Gradient Magnitude Similarity (task dominance; Mao et al., 2024, Eq. 6).

    ``GMS = 1/(T(T−1)) Σ_{i≠j} 2 sqrt(K_ii K_jj) / (K_ii + K_jj)``, in ``[0, 1]``; lower means
    one task's gradient dominates. Two zero gradients count as ``1``, one as ``0``; ``T = 1``
    gives ``1`` (module doc).
    """
    k = _check(gramian)
    d = _diag(k)
    norms = d.sqrt()
    num = 2.0 * norms.unsqueeze(-1) * norms.unsqueeze(-2)
    den = d.unsqueeze(-1) + d.unsqueeze(-2)
    return _off_diagonal_mean(_safe_div(num, den, 1.0).clamp(0.0, 1.0), empty=1.0)


def cosine_to_update(gramian: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cosine of each task gradient to the update ``d = Jᵀα``, ``...×T`` (Guo et al., 2025, Fig. 7).

    ``cos_t = (Kα)_t / (sqrt(K_tt) · sqrt(αᵀKα))``. ``α`` are the weights the method applied
    (``BackwardRecord.weights``); with a representation-level ``K`` the update is the
    encoder's incoming gradient ``Σ_t α_t S_t``. Regularizer penalties are not part of ``d``.
    A zero update or a zero task gradient gives ``0``.
    """
    k = _check(gramian)
    if not isinstance(weights, torch.Tensor):
        weights = torch.as_tensor(weights)
    alpha = weights.to(device=k.device, dtype=k.dtype)
    if alpha.shape[-1] != k.shape[-1]:
        raise ValueError(f"{alpha.shape[-1]} weights for a {k.shape[-1]}×{k.shape[-1]} Gramian")
    k_alpha = (k @ alpha.unsqueeze(-1)).squeeze(-1)  # (Kα)_t = <g_t, d>
    update_sq = (alpha * k_alpha).sum(-1, keepdim=True).clamp_min(0.0)  # ‖d‖²
    den = _diag(k).sqrt() * update_sq.sqrt()
    return _safe_div(k_alpha, den, 0.0).clamp(-1.0, 1.0)


def _top_eigenvalue(matrix: torch.Tensor) -> torch.Tensor:
    """Largest eigenvalue of a symmetric PSD ``...×T×T`` matrix by repeated squaring.

    ``M ← M² / tr(M²)`` converges to the projector onto the top eigenspace (normalised); the
    Rayleigh quotient of ``matrix`` on its largest column is the top eigenvalue. Only matmuls
    and elementwise ops: unlike ``torch.linalg.eigvalsh`` (which checks its LAPACK/cuSOLVER
    status with a host sync on CUDA) this never leaves the device.
    """
    tiny = torch.finfo(matrix.dtype).tiny
    m = matrix / matrix.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(tiny)[..., None, None]
    for _ in range(_SQUARINGS):
        m = m @ m
        m = m / m.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(tiny)[..., None, None]
    col = m.diagonal(dim1=-2, dim2=-1).argmax(-1)  # the column with the largest diagonal entry
    v = torch.take_along_dim(m, col[..., None, None].expand(*m.shape[:-1], 1), dim=-1).squeeze(-1)
    num = (v * (matrix @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)
    return _safe_div(num, (v * v).sum(-1), 0.0)


def _extreme_eigenvalues(gramian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(λ_min, λ_max)`` of a PSD Gramian, computed in float64 without host sync."""
    k = gramian.to(torch.float64)
    lam_max = _top_eigenvalue(k).clamp_min(0.0)
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    shifted = lam_max[..., None, None] * eye - k  # PSD; its top eigenvector is K's bottom one
    mu = _top_eigenvalue(shifted)
    lam_min = (lam_max - mu).clamp(min=0.0)
    # where K = c·I the shift is 0 and carries no eigenvector: then λ_min = λ_max
    flat = shifted.diagonal(dim1=-2, dim2=-1).sum(-1) <= 0
    lam_min = torch.where(flat, lam_max, torch.minimum(lam_min, lam_max))
    return lam_min, lam_max


def condition_number(gramian: torch.Tensor, *, squared: bool = False) -> torch.Tensor:
    """Gradient stability (Aligned-MTL): the condition number of the task-gradient system.

    Default (``squared=False``): ``κ(J) = σ_max/σ_min = sqrt(λ_max(K)/λ_min(K))``, the
    condition number of the gradient matrix that Aligned-MTL monitors. ``squared=True``:
    ``κ(K) = λ_max/λ_min = κ(J)²`` (the literal "condition number of K"). Both rank runs the
    same way. ``≥ 1``; ``1`` for ``T = 1`` with a non-zero gradient; ``+inf`` for a
    (numerically) singular ``K`` (module doc). Eigenvalues come from a sync-free iteration
    (:func:`_top_eigenvalue`); the result is float64.
    """
    k = _check(gramian)
    lam_min, lam_max = _extreme_eigenvalues(k)
    t = k.shape[-1]
    singular = lam_min <= t * torch.finfo(k.dtype).eps * lam_max  # also true when K = 0
    ratio = lam_max / torch.where(singular, torch.ones_like(lam_min), lam_min)
    kappa = ratio if squared else ratio.sqrt()
    return torch.where(singular, torch.full_like(kappa, float("inf")), kappa.clamp_min(1.0))
