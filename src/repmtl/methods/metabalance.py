"""MetaBalance: bring auxiliary-task gradient magnitudes towards the target task's, per tensor.

He et al., "MetaBalance: Improving Multi-Task Recommendations via Adapting Gradient Magnitudes
of Auxiliary Tasks", WWW 2022, Alg. 1 and the official code. For every shared parameter tensor, with the
moving averages of gradient norms ``m_i ← β m_i + (1 − β) ‖g_i‖`` (from 0, as in the official
code), the auxiliary gradients become

    g_i ← r (m_target / m_i) g_i + (1 − r) g_i

(``r`` the relax factor) and the update is ``g_target + Σ_aux g_i``. ``strategy`` selects the
paper's three variants: ``"both"`` (adapt every auxiliary gradient; the official code),
``"reduce"`` (only those larger than the target's, ``m_i > m_target``) and ``"enlarge"`` (only
the smaller ones). Heads get their plain task gradients (the official example updates the heads
with a separate optimizer).

Defaults: ``relax_factor = 0.7``, ``beta = 0.9`` (the official code's defaults); the target is
the first task unless ``target`` names another.

Levels: per-tensor norms come from the ``segments`` at parameter level; at representation level
the whole batch-flattened saliency is one group (its norm is a batch aggregate, so the moving
average is meaningful across batches). A task whose averaged norm is 0 is left unscaled.
"""

from __future__ import annotations

from typing import Literal

import torch

from repmtl.hparams import Decay, NonNegativeInt, Probability
from repmtl.methods.base import JacobianContext, SegmentGramianAggregator, register

Strategy = Literal["both", "reduce", "enlarge"]


@register
class MetaBalance(SegmentGramianAggregator):
    name = "metabalance"
    family = "gradient manipulation"
    description = "Scale auxiliary-task gradients towards the target task's moving-average norm, per parameter tensor"
    reference = "He et al., WWW 2022, Alg. 1"

    def __init__(
        self,
        relax_factor: Probability = 0.7,
        beta: Decay = 0.9,
        strategy: Strategy = "both",
        target: NonNegativeInt | str = 0,
    ) -> None:
        """``target``: the target task, by index or name."""
        super().__init__()
        self.relax_factor = relax_factor
        self.beta = beta
        self.strategy = strategy
        self.target = target

    def setup(self, num_tasks: int) -> None:
        if isinstance(self.target, str):
            if self.target not in self.task_names:
                raise ValueError(f"target task {self.target!r} is not one of {list(self.task_names)}")
            self.target_index = self.task_names.index(self.target)
        else:
            if not 0 <= int(self.target) < num_tasks:
                raise ValueError(f"target index {self.target} out of range for {num_tasks} tasks")
            self.target_index = int(self.target)
        self.state.norm_average = None  # (T, G) moving averages of per-group gradient norms; G from the first step

    def segment_weights(self, gramians: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        """The factors of :meth:`scales` per segment (``S×T``), from the segments' gradient norms
        ``‖g_t‖ = √K_tt``."""
        dtype = torch.promote_types(gramians.dtype, torch.float32)  # the state's dtype on every path
        norms = torch.diagonal(gramians.to(dtype), dim1=1, dim2=2).clamp_min(0.0).sqrt().T  # T × G
        average = self.state.zeros_like("norm_average", norms, self.name).to(norms)
        self.state.norm_average = self.beta * average + (1.0 - self.beta) * norms
        return self.scales(self.state.norm_average).T

    def scales(self, averages: torch.Tensor) -> torch.Tensor:
        """``T×G`` factors ``r m_target/m_i + 1 − r`` (1 for the target, for unadapted and for
        zero-norm groups)."""
        target = averages[self.target_index].unsqueeze(0)
        positive = averages > 0
        ratio = torch.where(positive, target / torch.where(positive, averages, torch.ones_like(averages)), 1.0)
        adapt = positive
        if self.strategy == "reduce":
            adapt = adapt & (averages > target)
        elif self.strategy == "enlarge":
            adapt = adapt & (averages < target)
        factor = torch.where(adapt, self.relax_factor * ratio + (1.0 - self.relax_factor), torch.ones_like(ratio))
        factor[self.target_index] = 1.0
        return factor
