"""GradVac: gradient vaccine, aligning task gradients to an adaptive similarity goal.

Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models", ICLR 2021, Alg. 1. For each task ``i``
and each other task ``j`` (random order), with ``φ_ij = cos(g_i^PC, g_j)`` and the goal ``φ̂_ij``:

    if φ_ij < φ̂_ij:  g_i^PC ← g_i^PC + ‖g_i^PC‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j
    φ̂_ij ← (1 − β) φ̂_ij + β φ_ij                                    (EMA, every visit)

after which ``cos(g_i^PC, g_j) = φ̂_ij`` (the goal before its EMA update). The update is
``Σ_i g_i^PC``; heads get their plain task gradients. ``φ̂`` starts at 0 (the first steps act like
PCGrad). The paper applies the procedure per layer, each with its own ``φ̂``.

``granularity``: ``"tensor"`` (default) runs it independently on every parameter tensor (the
``segments`` the backward passes; a layer's weight and bias are separate groups, LibMTL's
"all_matrix"), ``"model"`` on the whole shared-parameter vector. At ``level="representation"``
(the fast-surrogate GradVac of Mao et al., IEEE Access 2024, §II-E) there is one group: the
batch-flattened saliency.

Every corrected gradient stays in the span of its group's task gradients, so the method tracks
coefficients ``c_i`` (``g_i^PC = Σ_k c_ik g_k`` per group) and needs only the per-group Gramians;
the ``G×T×T`` problem runs on the host in float64 (one copy of the Gramians, as the other
Gramian methods' solves), and the update is ``Σ_i c_i`` applied to each group's columns.

Degenerate cases: a zero ``g_i^PC`` or ``g_j`` gives ``φ_ij = 0`` and no correction; ``φ̂ = ±1``
makes the correction's denominator vanish, so it is skipped then (the goal is then already met
or unreachable by adding ``g_j``).

Defaults: ``β = 0.01`` (the paper's setting; LibMTL and TorchJD default to 0.5). The goal's EMA
is updated at every visit of a pair (``ema="always"``), as in the paper's Alg. 1 and in LibMTL
since its GradVac fix of February 2024 (commit ``d2d84fa``). LibMTL code before that fix
update the goal only when a correction is applied; ``ema="on_correction"`` reproduces them.

Other differences from LibMTL's ``GradVac`` (for comparing runs): LibMTL defaults to one group
for the whole model (``GradVac_group_type=0``, our ``granularity="model"``) and also offers one
group per leaf module, which is not offered here; it adds ``1e-8`` to the denominators of the
cosine and of the correction weight, where this code has no epsilon and skips the correction
when a denominator vanishes (see above); it shuffles the visiting order with Python's
``random``, this code with the torch RNG; and it refuses representation-level gradients.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from repmtl.hparams import Probability
from repmtl.methods import _host as H
from repmtl.methods.base import JacobianContext, SegmentGramianAggregator, register

Granularity = Literal["tensor", "model"]


@register
class GradVac(SegmentGramianAggregator):
    name = "gradvac"
    family = "gradient manipulation"
    description = "Gradient vaccine: raise pairwise gradient cosines to an EMA goal, per parameter tensor"
    reference = "Wang et al., ICLR 2021, Alg. 1"

    def __init__(
        self,
        beta: Probability = 0.01,
        granularity: Granularity = "tensor",
        ema: Literal["always", "on_correction"] = "always",
    ) -> None:
        super().__init__()
        self.beta = beta
        self.granularity = granularity
        self.ema = ema

    def setup(self, num_tasks: int) -> None:
        self.state.goal = None  # (T, T, G) similarity goals; G (the number of groups) is known at the first step

    def segment_weights(self, gramians: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        """Each segment's weights ``Σ_i C[:, i, k]`` (``g_i^PC = Σ_k C_ik g_k``), one group per
        segment (``"tensor"``) or one for all (``"model"``: the segments' Gramians summed)."""
        gram = gramians.sum(dim=0, keepdim=True) if self.granularity == "model" else gramians  # G × T × T
        gram = gram.to(torch.float64)
        goal = self.state.zeros_like(
            "goal", gram.new_empty(self.num_tasks, self.num_tasks, gram.shape[0]),
            "GradVac (goals per pair of tasks and parameter groups)",
        ).to(gram.device)
        orders = [[j for j in torch.randperm(self.num_tasks).tolist() if j != i] for i in range(self.num_tasks)]
        coefficients, self.state.goal, corrections = vaccine_coefficients(gram, goal, orders, self.beta, self.ema)
        self.info = {"corrections": corrections}
        alpha = coefficients.sum(1)  # G × T: weight of each task gradient in each group
        return alpha.expand(gramians.shape[0], -1) if self.granularity == "model" else alpha


def vaccine_coefficients(
    gram: torch.Tensor, goal: torch.Tensor, orders: list[list[int]], beta: float, ema: str = "always"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Alg. 1 in coefficient space for ``G`` groups at once.

    ``gram``: ``G×T×T`` per-group Gramians; ``goal``: ``T×T×G`` goals ``φ̂``; ``orders[i]``: the
    ``T − 1`` tasks ``j ≠ i`` in visiting order. Returns ``C`` (``G×T×T``, ``g_i^PC = Σ_k C[:, i, k] g_k``)
    and the updated goals, both on ``gram``'s device, and the number of corrections applied.

    Runs on the host in float64 numpy (one copy of the ``G×T×T`` Gramians each way): on a device
    each visit's dozen tiny kernels would cost more than the copy.
    """
    grams, goals = H.to_host(gram), H.to_host(goal).copy()
    groups, tasks, _ = grams.shape
    coefficients = np.tile(np.eye(tasks), (groups, 1, 1))
    sq_norms = np.maximum(np.diagonal(grams, axis1=1, axis2=2), 0.0)  # G × T, ‖g_k‖²
    norms = np.sqrt(sq_norms)
    sq_corrected = sq_norms.copy()  # ‖g_i^PC‖², kept up to date without a quadratic form
    tasks_i = np.arange(tasks)
    corrections = 0
    # Task i's visits change only its own g_i^PC (the g_j are the original gradients), so the
    # k-th visit of every task runs at once: T − 1 vectorised steps instead of T(T − 1) visits.
    for step in range(tasks - 1):
        js = np.array([order[step] for order in orders])  # the task each i visits now
        c = coefficients[:, tasks_i, :]  # G × T(i) × T(k)
        dot = np.einsum("gik,gki->gi", c, grams[:, :, js])  # g_i^PC · g_j
        norm_i, norm_j = np.sqrt(np.maximum(sq_corrected, 0.0)), norms[:, js]
        both = (norm_i > 0) & (norm_j > 0)
        phi = np.clip(np.divide(dot, norm_i * norm_j, out=np.zeros_like(dot), where=both), -1.0, 1.0)
        target = goals[tasks_i, js].T  # G × T
        sin_target = np.sqrt(np.maximum(1.0 - target**2, 0.0))
        apply = both & (phi < target) & (sin_target > 0)
        numerator = norm_i * (target * np.sqrt(np.maximum(1.0 - phi**2, 0.0)) - phi * sin_target)
        weight = np.divide(numerator, norm_j * sin_target, out=np.zeros_like(phi), where=apply)
        coefficients[:, tasks_i, js] += weight
        sq_corrected += weight * (2.0 * dot + weight * sq_norms[:, js])  # ‖g + w g_j‖²
        corrections += int(apply.sum())
        updated = (1.0 - beta) * target + beta * phi
        goals[tasks_i, js] = (updated if ema == "always" else np.where(apply, updated, target)).T
    as_gram = gram.to(torch.float64)
    return H.to_device(coefficients, as_gram), H.to_device(goals, as_gram), corrections
