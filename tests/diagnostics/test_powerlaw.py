"""Power-law α (docs/formulas.md#rep-mtl-power-law-exponent): the vectorised xmin scan against a
plain loop of those formulas, recovery of known tail exponents, the ESD of matrices and conv
kernels, summaries.

Stated tolerance (measured over 300 seeds per exponent with n = 2000 Pareto eigenvalues,
pdf ∝ λ^−α for λ ≥ 1): |α̂ − α| ≤ 10% of α for every fit (largest seen: 5.8%, 7.8%, 9.1% for
α = 2, 3, 4.5; medians 1.0–1.5%), and the mean over 10 seeds within 3% (bias ≤ 0.3%).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from repmtl.diagnostics import (
    esd,
    fit_powerlaw,
    model_alphas,
    module_alphas,
    powerlaw_alpha,
)
from repmtl.diagnostics import powerlaw as P
from repmtl.model import MultiTaskModel

TOLERANCE = 0.10  # relative, per fit, n = 2000
MEAN_TOLERANCE = 0.03  # relative, mean over 10 seeds


def pareto(alpha: float, n: int, seed: int, xmin: float = 1.0) -> np.ndarray:
    """Inverse-CDF samples of the continuous power law p(x) ∝ x^−α, x ≥ xmin."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


def loop_reference(x: np.ndarray):
    """The xmin scan of docs/formulas.md as a plain loop over xmin candidates: (alpha, xmin, D)."""
    x = np.sort(x)
    best = (math.inf, None, None)
    for i in range(len(x) - 1):
        tail = x[x >= x[i]]  # every eigenvalue ≥ xmin, repeated values included
        n = len(tail)
        s = np.log(tail / x[i]).sum()
        if s <= 0:
            continue
        alpha = 1 + n / s
        d = np.max(np.abs(1 - (tail / x[i]) ** (1 - alpha) - np.arange(n) / n))
        if d < best[0]:
            best = (d, alpha, x[i])
    return best[1], best[2], best[0]


@pytest.mark.parametrize("n,seed", [(3, 0), (17, 1), (300, 2), (900, 3)])
def test_vectorised_scan_equals_loop(n, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(0.1, 1, n), pareto(2.5, n, seed)])
    x[::7] = x[3]  # duplicated values too
    fit = fit_powerlaw(torch.tensor(x))
    alpha, xmin, d = loop_reference(x)
    assert fit.alpha == pytest.approx(alpha, rel=1e-10)
    assert fit.xmin == xmin
    assert fit.D == pytest.approx(d, rel=1e-10, abs=1e-14)
    assert fit.n_tail == int((x >= xmin).sum()) and fit.num_evals == x.size


def test_chunked_scan_is_the_same(monkeypatch):
    x = torch.tensor(pareto(3.0, 500, 7))
    whole = fit_powerlaw(x)
    monkeypatch.setattr(P, "_CHUNK_ELEMENTS", 1000)  # two candidates per chunk
    assert fit_powerlaw(x) == whole


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_recovers_known_exponent(alpha):
    fits = [fit_powerlaw(torch.tensor(pareto(alpha, 2000, seed))).alpha for seed in range(10)]
    errors = np.abs(np.array(fits) - alpha) / alpha
    assert errors.max() <= TOLERANCE, fits
    assert abs(np.mean(fits) - alpha) / alpha <= MEAN_TOLERANCE, fits


def test_not_capped_at_three():
    fit = fit_powerlaw(torch.tensor(pareto(6.0, 3000, 0)))
    assert fit.alpha > 5.0


@pytest.mark.parametrize("alpha", [2.0, 4.5])
def test_xmin_found_above_a_bulk(alpha):
    """A bulk below 1 (uniform) plus a Pareto tail from 1: the KS scan must find xmin ≈ 1."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(0.05, 1.0, 1500), pareto(alpha, 1000, 12)])
    fit = fit_powerlaw(torch.tensor(x))
    assert fit.xmin >= 0.5  # not inside the bulk (any xmin within the tail is a power law)
    assert abs(fit.alpha - alpha) / alpha <= TOLERANCE
    # fitting the whole sample as if it were a power law from its minimum is far off
    whole = 1 + x.size / np.log(x / x.min()).sum()
    assert abs(whole - alpha) / alpha > 3 * TOLERANCE


def matrix_with_spectrum(evals: np.ndarray, rows: int, seed: int) -> torch.Tensor:
    cols = evals.size
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(np.sqrt(evals))) @ v.T


def test_esd_of_matrix_is_squared_singular_values():
    evals = pareto(3.0, 400, 5)
    w = matrix_with_spectrum(evals, 600, 0)
    torch.testing.assert_close(esd(w), torch.tensor(np.sort(evals)), rtol=1e-9, atol=0)
    torch.testing.assert_close(esd(w.T), esd(w))
    assert powerlaw_alpha(w) == pytest.approx(fit_powerlaw(torch.tensor(evals)).alpha, rel=1e-8)
    assert powerlaw_alpha(w * 1e-3) == pytest.approx(powerlaw_alpha(w), rel=1e-8)  # scale-free


def test_conv_slices_are_pooled_and_reshape_is_one_matrix():
    spectra = [pareto(2.5, 30, s) for s in range(4)]
    kernel = torch.empty(30, 40, 2, 2, dtype=torch.float64)
    for idx, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        kernel[:, :, a, b] = matrix_with_spectrum(spectra[idx], 40, idx).T  # out × in = 30 × 40
    pooled = np.sort(np.concatenate(spectra))
    torch.testing.assert_close(esd(kernel), torch.tensor(pooled), rtol=1e-9, atol=0)
    sv = torch.linalg.svdvals(kernel.reshape(30, -1))
    torch.testing.assert_close(esd(kernel, conv="reshape"), torch.sort(sv**2).values)


def test_zero_singular_values_are_dropped():
    torch.manual_seed(0)
    low_rank = torch.randn(50, 5) @ torch.randn(5, 40)  # rank 5, float32
    assert esd(low_rank).numel() == 5
    assert esd(low_rank, drop_zeros=False).numel() == 40


def test_errors():
    with pytest.raises(ValueError, match="at least"):
        fit_powerlaw(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="at least 10"):
        fit_powerlaw(torch.tensor(pareto(3, 5, 0)), min_evals=10)
    with pytest.raises(ValueError, match="> 0"):
        fit_powerlaw(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="constant"):
        fit_powerlaw(torch.ones(5))
    with pytest.raises(ValueError, match="2 dims"):
        esd(torch.ones(4))


def test_module_and_model_summaries():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(3, 24, 3), nn.BatchNorm2d(24), nn.ReLU(), nn.Conv2d(24, 24, 3))
    heads = {"a": nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 2)), "b": nn.Linear(24, 30)}
    model = MultiTaskModel(encoder, heads)
    enc = module_alphas(encoder)
    assert list(enc) == ["0", "3"]  # the BatchNorm has no matrix
    assert enc["3"] == pytest.approx(powerlaw_alpha(encoder[3].weight))
    fits = model_alphas(model)
    assert fits.encoder == enc
    assert list(fits.heads["a"]) == ["0"]  # Linear(40, 2) has 2 eigenvalues < min_evals=10
    assert fits.encoder_mean == pytest.approx(np.mean(list(enc.values())))
    assert fits.head_means["b"] == pytest.approx(powerlaw_alpha(heads["b"].weight))
    assert all(a > 1 for a in enc.values())
    assert model_alphas(model, min_evals=2).heads["a"].keys() == {"0", "2"}
