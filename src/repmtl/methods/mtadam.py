"""MTAdam: Adam with per-layer balancing of the loss terms' gradient magnitudes.

Malkiel & Wolf, "MTAdam: Automatic Balancing of Multiple Training Loss Terms", EMNLP 2021
(arXiv 2006.14683, 2020), Alg. 1, following the official implementation. Per parameter tensor, with
moving averages of each task's gradient norm (``n_i = ‖g_i‖`` at the first step, then
``n_i ← β₃ n_i + (1 − β₃) ‖g_i‖``), every task gradient is rescaled to the anchor's magnitude,

    g̃_i = r_i · n_anchor / n_i · g_i           (anchor: the first task with n > threshold)

and fed to its *own* Adam moments ``m_i, v_i`` (``β₁, β₂``, bias-corrected). The step combines
the tasks with the largest denominator, elementwise:

    step = Σ_i m̂_i / max_j (√v̂_j + ε).

MTAdam is an optimizer, not a gradient combiner. This method returns ``step`` as the shared
parameters' gradient, so that **plain SGD** (``torch.optim.SGD(shared, lr, momentum=0)``) applies
exactly MTAdam's update ``θ ← θ − lr · step``; another adaptive optimizer on top would apply
Adam twice (``shared_optimizer = "sgd"``: the trainer does this). The heads receive their plain task gradients; MTAdam's update of a head (only its
own task reaches it) is plain Adam, so give the heads ``torch.optim.Adam`` with the same
``lr, β₁, β₂, ε``. Weight decay is the optimizer's business (MTAdam's default is 0).

Defaults: ``betas = (0.9, 0.999, 0.9)``, ``eps = 1e-8``, ranks ``r_i = 1`` and the ``1e-10``
norm threshold of the official code. One simplification: the official code updates the norms
task by task, so when the first task's norm is below the threshold the anchor may be compared
using a norm from the previous step; here every task uses this step's norms.

Level: parameters only. Adam's per-coordinate moments of representation-level gradients would
average entries of ``Z`` that belong to different samples in different batches, which has no
meaning (and breaks when the batch size changes), so ``level="representation"`` is refused.
"""

from __future__ import annotations

import torch

from repmtl.hparams import Decay, Finite, NonNegative
from repmtl.methods.base import Aggregator, JacobianContext, register


@register
class MTAdam(Aggregator):
    name = "mtadam"
    family = "gradient manipulation"
    levels = ("parameters",)
    shared_optimizer = "sgd"  # the trainer applies MTAdam's step with plain SGD
    description = "Adam with per-layer magnitude balancing of task gradients (use with plain SGD on shared params)"
    reference = "Malkiel & Wolf, EMNLP 2021, Alg. 1"

    def __init__(
        self,
        betas: tuple[Decay, Decay, Decay] = (0.9, 0.999, 0.9),
        eps: NonNegative = 1e-8,
        ranks: list[Finite] | None = None,
        norm_threshold: NonNegative = 1e-10,
    ) -> None:
        super().__init__()
        self.betas = tuple(float(b) for b in betas)
        self.eps = eps
        self.ranks = None if ranks is None else [float(r) for r in ranks]
        self.norm_threshold = norm_threshold

    def setup(self, num_tasks: int) -> None:
        if self.ranks is not None and len(self.ranks) != num_tasks:
            raise ValueError(f"ranks has {len(self.ranks)} values for {num_tasks} tasks")
        # Shapes known at the first step: norms (T, G), moments (T, d).
        self.state.norms = None
        self.state.exp_avg = None
        self.state.exp_avg_sq = None
        self.state.steps = 0

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        segments = context.segments
        if segments is None:
            raise ValueError("MTAdam needs the parameter segments (it is defined at level='parameters' only)")
        sizes = [int(s) for s in segments]
        if sum(sizes) != jacobian.shape[1]:
            raise ValueError(f"segments sum to {sum(sizes)}, the Jacobian has {jacobian.shape[1]} columns")
        tasks, _width = jacobian.shape
        st = self.state
        previous_norms = st.zeros_like("norms", jacobian.new_zeros(tasks, len(sizes)), self.name).to(jacobian)
        exp_avg = st.zeros_like("exp_avg", jacobian, self.name).to(jacobian)
        exp_avg_sq = st.zeros_like("exp_avg_sq", jacobian, self.name).to(jacobian)
        beta1, beta2, beta3 = self.betas
        group_of_column = torch.repeat_interleave(
            torch.arange(len(sizes), device=jacobian.device), torch.tensor(sizes, device=jacobian.device)
        )
        norms = jacobian.new_zeros(tasks, len(sizes)).index_add_(1, group_of_column, jacobian.square()).sqrt()
        st.steps += 1
        st.norms = norms if st.steps == 1 else beta3 * previous_norms + (1.0 - beta3) * norms

        scale = balancing_scales(st.norms, self.norm_threshold, self._ranks(jacobian))
        balanced = scale[:, group_of_column] * jacobian
        st.exp_avg = beta1 * exp_avg + (1.0 - beta1) * balanced
        st.exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * balanced.square()
        correction1 = 1.0 - beta1**st.steps
        correction2 = 1.0 - beta2**st.steps
        denom = (st.exp_avg_sq.sqrt() / correction2**0.5 + self.eps).amax(0)
        return (st.exp_avg / correction1).sum(0) / denom

    def _ranks(self, like: torch.Tensor) -> torch.Tensor:
        if self.ranks is None:
            return torch.ones(self.num_tasks, dtype=like.dtype, device=like.device)
        return torch.tensor(self.ranks, dtype=like.dtype).to(like.device)


def balancing_scales(norms: torch.Tensor, threshold: float, ranks: torch.Tensor) -> torch.Tensor:
    """``T×G`` factors ``r_i n_anchor / n_i`` where ``n_i`` exceeds the threshold (the anchor is
    the first task above it), else 1 (the official code leaves such gradients as they are)."""
    above = norms > threshold  # a task above the threshold implies an anchor exists
    anchor = torch.argmax(above.to(norms.dtype), dim=0)  # argmax returns the first maximum
    anchor_norm = norms.gather(0, anchor.unsqueeze(0)).squeeze(0)
    safe = torch.where(above, norms, torch.ones_like(norms))
    return torch.where(above, ranks.unsqueeze(1) * anchor_norm.unsqueeze(0) / safe, torch.ones_like(norms))
