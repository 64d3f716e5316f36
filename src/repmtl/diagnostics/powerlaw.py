"""Power-law exponent ``α`` of weight spectra (HT-SR / WeightWatcher style).

Formulas and decisions: ``docs/formulas.md#rep-mtl-power-law-exponent``.

For a weight matrix ``W`` the empirical spectral density (ESD) is the set of eigenvalues of
``WᵀW``, i.e. the squared singular values of ``W`` (not divided by ``N``; ``α`` is scale-free
anyway). Its tail is fitted with a power law ``ρ(λ) ∝ λ^−α`` for ``λ ≥ xmin``:

* every eigenvalue but the largest is tried as ``xmin``; with the ``n`` eigenvalues
  ``λ_0 ≤ … ≤ λ_{n−1}`` that are ``≥ xmin`` (``λ_0 = xmin``; all copies of a repeated value
  belong to the tail, so a repeated value is one candidate), the maximum-likelihood exponent is
  ``α = 1 + n / Σ_i log(λ_i / xmin)``;
* the fit's Kolmogorov–Smirnov distance is
  ``D = max_i |1 − (λ_i/xmin)^(1−α) − i/n|`` (fitted CDF against the empirical CDF ``i/n``,
  ``i = 0..n−1``, as WeightWatcher computes it);
* the candidate with the smallest ``D`` wins (the first one, i.e. the smallest ``xmin``, on
  ties). A candidate whose tail is all equal to ``xmin`` (``Σ log = 0``, ``α = ∞``) is skipped.

The scan over ``xmin`` candidates is vectorised (one masked ``candidates × eigenvalues`` array,
processed in chunks that bound memory), not a python loop over candidates. Unlike the
``powerlaw`` package's defaults, ``α`` is not capped: layer exponents of 2–15 are normal.

Convolution kernels (``out×in×k…``): ``conv="slices"`` (default, WeightWatcher's choice) splits
the kernel into its ``kh·kw`` slices ``W[:, :, a, b]`` (each ``out×in``) and pools their
eigenvalues; ``conv="reshape"`` uses the single matrix ``out×(in·kh·kw)`` (the
"reshaped" form). **Decision**: both are offered, slices by default.

Numerically zero singular values (``σ ≤ max(m, n)·eps·σ_max`` of their matrix, ``eps`` of the
weight's dtype, the ``matrix_rank`` rule) are dropped: they are rank deficiency, not part of
the spectrum, and ``log 0`` is undefined. A fit needs at least ``min_evals`` (≥ 2) remaining
eigenvalues; the module summaries skip layers with fewer (default 10) and say nothing about them.
Reading of ``α``: ``[2, 4]`` well trained, larger under-trained (the reading Wang et al., ICCV
2025, use in their power-law analysis).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

__all__ = [
    "ModelAlphas",
    "PowerLawFit",
    "esd",
    "fit_powerlaw",
    "model_alphas",
    "module_alphas",
    "powerlaw_alpha",
]

ConvMode = Literal["slices", "reshape"]

#: elements of one chunk of the candidates × eigenvalues array in the xmin scan (float64: 32 MiB)
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class PowerLawFit:
    """The winning fit: exponent ``alpha``, threshold ``xmin``, KS distance ``D``, tail size
    ``n_tail`` (eigenvalues ``≥ xmin``), ``num_evals`` fitted eigenvalues in all, and the
    standard error ``sigma = (α−1)/sqrt(n_tail)`` of the MLE at that ``xmin``."""

    alpha: float
    xmin: float
    D: float
    n_tail: int
    num_evals: int

    @property
    def sigma(self) -> float:
        return (self.alpha - 1.0) / math.sqrt(self.n_tail)


def esd(weight: torch.Tensor, *, conv: ConvMode = "slices", drop_zeros: bool = True) -> torch.Tensor:
    """Eigenvalues of ``WᵀW`` (squared singular values), float64, sorted ascending.

    ``weight``: a matrix (``out×in``) or a convolution kernel (``out×in×k…``), see the module
    doc for ``conv``. ``drop_zeros`` removes numerically zero singular values.
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a tensor, got {type(weight).__name__}")
    if weight.ndim < 2:
        raise ValueError(f"a weight matrix needs ≥ 2 dims, got shape {tuple(weight.shape)}")
    if conv not in ("slices", "reshape"):
        raise ValueError(f"conv must be 'slices' or 'reshape', got {conv!r}")
    w = weight.detach()
    eps = torch.finfo(w.dtype).eps if w.is_floating_point() else torch.finfo(torch.float64).eps
    w = w.to(torch.float64)
    if w.ndim == 2:
        mats = w.unsqueeze(0)
    elif conv == "slices":
        out_ch, in_ch = w.shape[:2]
        mats = w.permute(*range(2, w.ndim), 0, 1).reshape(-1, out_ch, in_ch)
    else:
        mats = w.reshape(1, w.shape[0], -1)
    sv = torch.linalg.svdvals(mats)  # (slices, min(m, n)), descending
    if drop_zeros:
        tol = max(mats.shape[-2:]) * eps * sv[:, :1]
        sv = sv[sv > tol]
    return torch.sort((sv * sv).reshape(-1)).values


def _scan_xmin(log_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, D)`` for every candidate ``xmin = x_i``, ``i = 0..N−2`` (``log_x`` ascending)."""
    n_all = log_x.numel()
    idx = torch.arange(n_all, device=log_x.device)
    suffix = torch.flip(torch.cumsum(torch.flip(log_x, (0,)), 0), (0,))  # Σ_{k≥i} log x_k
    cand = idx[:-1]
    n = (n_all - cand).to(log_x.dtype)
    log_sum = suffix[:-1] - n * log_x[:-1]  # Σ_{k≥i} log(x_k / x_i) ≥ 0
    # a repeated value is a candidate once, at its first index, so its tail holds every
    # eigenvalue ≥ xmin (docs/formulas.md) rather than some of the copies
    first = torch.ones_like(log_sum, dtype=torch.bool)
    first[1:] = log_x[1:-1] > log_x[:-2]
    valid = (log_sum > 0) & first
    alpha = torch.where(valid, 1.0 + n / torch.where(valid, log_sum, torch.ones_like(log_sum)), torch.full_like(n, math.inf))
    d = torch.empty_like(n)
    rows = max(1, _CHUNK_ELEMENTS // n_all)
    for start in range(0, n_all - 1, rows):  # chunks of candidates, to bound memory
        stop = min(start + rows, n_all - 1)
        cols = idx[start:]  # only eigenvalues ≥ the chunk's smallest candidate
        i = cand[start:stop, None]
        rank = (cols[None, :] - i).to(log_x.dtype)  # position within the tail
        in_tail = rank >= 0
        a = alpha[start:stop, None]
        expo = (1.0 - a) * (log_x[None, start:] - log_x[start:stop, None])
        fitted = 1.0 - torch.exp(torch.where(in_tail, expo, torch.zeros_like(expo)))
        gap = (fitted - rank / n[start:stop, None]).abs()
        d[start:stop] = torch.where(in_tail, gap, torch.zeros_like(gap)).amax(dim=1)
    d = torch.where(valid, d, torch.full_like(d, math.inf))
    return alpha, d


def fit_powerlaw(eigenvalues: torch.Tensor, *, min_evals: int = 2) -> PowerLawFit:
    """Fit ``ρ(λ) ∝ λ^−α`` to the tail of positive eigenvalues, choosing ``xmin`` by the KS
    distance (module doc). Raises ``ValueError`` with fewer than ``max(2, min_evals)`` values,
    non-positive or non-finite values, or when every candidate tail is constant."""
    x = torch.as_tensor(eigenvalues).detach().to(torch.float64).reshape(-1)
    need = max(2, int(min_evals))
    if x.numel() < need:
        raise ValueError(f"a power-law fit needs at least {need} eigenvalues, got {x.numel()}")
    x = torch.sort(x).values
    if not bool(torch.isfinite(x).all()) or bool(x[0] <= 0):
        raise ValueError("eigenvalues must be finite and > 0 (drop zeros first, e.g. esd(..., drop_zeros=True))")
    log_x = torch.log(x)
    alpha, d = _scan_xmin(log_x)
    best = int(torch.argmin(d))
    a, dist = float(alpha[best]), float(d[best])
    if not math.isfinite(dist):
        raise ValueError("every candidate tail is constant: no power law can be fitted")
    return PowerLawFit(alpha=a, xmin=float(x[best]), D=dist, n_tail=x.numel() - best, num_evals=x.numel())


def powerlaw_alpha(weight: torch.Tensor, *, conv: ConvMode = "slices", min_evals: int = 2) -> float:
    """The power-law exponent ``α`` of one weight matrix or conv kernel (module doc)."""
    return fit_powerlaw(esd(weight, conv=conv), min_evals=min_evals).alpha


def _weights(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(layer name, weight) for every parameter with ≥ 2 dims; ``"conv.weight"`` -> ``"conv"``."""
    for name, param in module.named_parameters():
        if param.ndim >= 2:
            yield (name.removesuffix(".weight")), param


def module_alphas(module: nn.Module, *, conv: ConvMode = "slices", min_evals: int = 10) -> dict[str, float]:
    """``α`` of every weight matrix / conv kernel of ``module`` with at least ``min_evals``
    non-zero eigenvalues, by layer name (in parameter order)."""
    out: dict[str, float] = {}
    for name, weight in _weights(module):
        evals = esd(weight, conv=conv)
        if evals.numel() < max(2, min_evals):
            continue
        try:
            out[name] = fit_powerlaw(evals, min_evals=min_evals).alpha
        except ValueError:  # a degenerate spectrum (all equal): no tail to fit
            continue
    return out


def _mean(values: dict[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


@dataclass(frozen=True)
class ModelAlphas:
    """Per-layer ``α`` of a :class:`~repmtl.model.MultiTaskModel`: the encoder's layers, each
    head's layers, and their means (``None`` when no layer of that part qualified)."""

    encoder: dict[str, float]
    heads: dict[str, dict[str, float]]
    encoder_mean: float | None = field(init=False)
    head_means: dict[str, float | None] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_mean", _mean(self.encoder))
        object.__setattr__(self, "head_means", {t: _mean(h) for t, h in self.heads.items()})


def model_alphas(model: nn.Module, *, conv: ConvMode = "slices", min_evals: int = 10) -> ModelAlphas:
    """``α`` per layer for a model with ``encoder`` and ``heads`` (a ``MultiTaskModel``, also
    inside a DDP wrapper), with the mean over the encoder and over each head (module doc)."""
    inner = getattr(model, "module", model)
    if not hasattr(inner, "encoder") or not hasattr(inner, "heads"):
        raise TypeError("model_alphas needs a model with .encoder and .heads (repmtl.MultiTaskModel)")
    return ModelAlphas(
        encoder=module_alphas(inner.encoder, conv=conv, min_evals=min_evals),
        heads={t: module_alphas(h, conv=conv, min_evals=min_evals) for t, h in inner.heads.items()},
    )
