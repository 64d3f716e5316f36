"""Multiple-gradient descent (MGDA): the min-norm point of the convex hull of task gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, Eq. 3:
``min_α ‖Σ_t α_t g_t‖²`` s.t. ``α`` on the simplex; the update ``Σ_t α_t g_t`` is a common
descent direction of every task (or zero at a Pareto-stationary point). At
``level="representation"`` this is MGDA-UB (their Eq. 7, gradients w.r.t. ``Z``).

``normalization`` follows the official code's gradient normalisation before the solve:
``"none"`` (default), ``"l2"`` (unit gradients), ``"loss"`` (divide by ``L_t``) or ``"loss+"``
(divide by ``L_t ‖g_t‖``); the weights are mapped back so the update stays ``Σ α_t g_t/n_t``.
``solver``: ``"exact"`` (default, one NNLS solve) or ``"frank-wolfe"`` (the paper's iterative
family); see ``_minnorm.py`` for what each was measured to do.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from repmtl.hparams import Positive, PositiveInt
from repmtl.methods._gramian import nonfinite_fallback
from repmtl.methods._host import to_device, to_host
from repmtl.methods._minnorm import min_norm_weights
from repmtl.methods.base import GramianWeighting, register

log = logging.getLogger(__name__)
Normalization = Literal["none", "l2", "loss", "loss+"]


@register
class MGDA(GramianWeighting):
    name = "mgda"
    family = "gradient manipulation"
    description = "Min-norm convex combination of task gradients (exact or Frank-Wolfe); MGDA-UB at representation level"
    reference = "Sener & Koltun, NeurIPS 2018, Eq. 3 / Eq. 7"

    def __init__(
        self,
        normalization: Normalization = "none",
        solver: Literal["exact", "frank-wolfe"] = "exact",
        max_iter: PositiveInt = 250,
        tol: Positive = 1e-10,
    ) -> None:
        super().__init__()
        self.solver = solver
        self.normalization = normalization
        self.max_iter = max_iter
        self.tol = tol

    def weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        k = to_host(gramian)
        if not np.all(np.isfinite(k)):
            self.info = {"solver_iterations": 0, "solver_converged": False}
            return to_device(nonfinite_fallback(self, log, k.shape[0], 1.0 / k.shape[0]), gramian)
        scale = self._scales(k, None if losses is None else to_host(losses))
        result = min_norm_weights(k / np.outer(scale, scale), self.max_iter, self.tol, self.solver)
        if not result.converged:
            log.warning("MGDA min-norm solver stopped after %d iterations with gap %.3g", result.iterations, result.gap)
        self.info = {"solver_iterations": result.iterations, "solver_converged": result.converged, "fallback": False}
        return to_device(result.weights / scale, gramian)

    def _scales(self, k: np.ndarray, losses: np.ndarray | None) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(k), 0.0, None))
        if self.normalization == "none":
            scale = np.ones_like(norms)
        elif self.normalization == "l2":
            scale = norms
        else:
            if losses is None:
                raise ValueError(f"MGDA normalization {self.normalization!r} needs the losses")
            scale = losses if self.normalization == "loss" else losses * norms
        # A zero scale (zero gradient or loss) leaves that task unnormalised instead of dividing by 0.
        return np.where(np.abs(scale) > 0, np.abs(scale), 1.0)
