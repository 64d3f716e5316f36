"""MGDA-UB: MGDA on the gradients of the shared representation (the upper-bound surrogate).

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, Eq. (7) /
Thm. 1: minimising ``‖Σ_t α_t ∇_Z L_t‖`` (gradients w.r.t. the representation ``Z``) instead of
the parameter-level norm gives a Pareto-improving direction at the cost of one backward through
the encoder. It is :class:`~repmtl.methods.mgda.MGDA` (same options) fixed to
``level="representation"``.
"""

from __future__ import annotations

from repmtl.methods.base import register
from repmtl.methods.mgda import MGDA


@register
class MGDAUB(MGDA):
    name = "mgda-ub"
    levels = ("representation",)
    description = "MGDA on representation gradients dL_t/dZ (upper-bound surrogate, one encoder backward)"
    reference = "Sener & Koltun, NeurIPS 2018, Eq. 7 / Thm. 1"
