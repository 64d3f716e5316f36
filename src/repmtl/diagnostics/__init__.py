"""Imbalance diagnostics (``docs/formulas.md#diagnostics``): gradient geometry from a Gramian of
either level, Feature Disentanglement from saliency or attention maps, power-law exponents of
weight spectra, ranking similarity between measures and results, and the live helpers the
trainer calls."""

from repmtl.diagnostics.disentanglement import feature_disentanglement
from repmtl.diagnostics.geometry import (
    condition_number,
    cosine_matrix,
    cosine_to_update,
    gds,
    gms,
    gradient_norms,
)
from repmtl.diagnostics.live import layer_alphas, step_diagnostics
from repmtl.diagnostics.powerlaw import (
    ModelAlphas,
    PowerLawFit,
    esd,
    fit_powerlaw,
    model_alphas,
    module_alphas,
    powerlaw_alpha,
)
from repmtl.diagnostics.ranking import RankingSimilarity, ranking_similarity

__all__ = [
    "ModelAlphas",
    "PowerLawFit",
    "RankingSimilarity",
    "condition_number",
    "cosine_matrix",
    "cosine_to_update",
    "esd",
    "feature_disentanglement",
    "fit_powerlaw",
    "gds",
    "gms",
    "gradient_norms",
    "layer_alphas",
    "model_alphas",
    "module_alphas",
    "powerlaw_alpha",
    "ranking_similarity",
    "step_diagnostics",
]
