"""GradDrop: gradient sign dropout.

Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout",
NeurIPS 2020, Eq. 1 and Alg. 1. At every gradient entry the *positive sign purity* is

    P = ½ (1 + Σ_i ∇L_i / Σ_i |∇L_i|)          (Eq. 1)

a uniform draw ``U`` picks a sign (positive with probability ``P``), and each task keeps only the
entries whose sign agrees: ``M_i = 𝟙[P > U] 𝟙[∇L_i > 0] + 𝟙[P < U] 𝟙[∇L_i < 0]``. The update is
``Σ_i (ℓ_i + (1 − ℓ_i) M_i) ∇L_i`` with the leak ``ℓ_i`` (default 0: pure GradDrop, the paper's and
LibMTL's default). Heads get their plain task gradients.

Levels:

* ``"representation"`` (the paper applies GradDrop to the gradients of an activation layer;
  the default level). The batch is marginalised as in the
  paper's treatment of batched activations and LibMTL's implementation: purity and signs come from
  ``Σ_b sign(Z_b) ∘ ∇L_i[b]`` per feature position (consistent with the sign of the next weight
  gradient ``Σ_b Z_b ∇L_i[b]``) and one mask is shared across the batch. That needs ``Z``:
  :func:`repmtl.backward` passes the (detached) representation to :meth:`aggregate` in the
  context at this level; the trainer always gives ``backward`` the representation. A direct call
  to :meth:`aggregate` without a representation gives every entry of the batch-flattened saliency its own mask
  (batch-separated GradDrop). Multi-input data has no representation-level Jacobian
  (``backward`` refuses that level there), so the question does not arise.
* ``"parameters"``: the same rule applied per entry of the parameter-level task gradients (already
  summed over the batch, so no sign correction is needed).

Numerics: ``P = ½`` where every task gradient is zero (Eq. 1 is 0/0 there; no entry survives the
mask anyway, the gradient being zero). No additive epsilon is used, so the method is exactly
scale-equivariant (LibMTL adds ``1e-7`` to the denominator, which biases ``P`` towards ½ for tiny
gradients). ``U`` comes from the global torch RNG on the Jacobian's device.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from repmtl.hparams import Probability
from repmtl.methods.base import Aggregator, JacobianContext, register


@register
class GradDrop(Aggregator):
    name = "graddrop"
    family = "gradient manipulation"
    levels = ("representation", "parameters")
    description = "Gradient sign dropout: keep per entry only the task gradients of a randomly picked sign"
    reference = "Chen et al., NeurIPS 2020, Eq. 1, Alg. 1"

    def __init__(self, leak: Probability | Annotated[list[Probability], Field(min_length=1)] = 0.0) -> None:
        """``leak``: one value, or one per task."""
        super().__init__()
        self.leak = leak

    def setup(self, num_tasks: int) -> None:
        if not isinstance(self.leak, (int, float)) and len(self.leak) != num_tasks:
            raise ValueError(f"leak has {len(self.leak)} values for {num_tasks} tasks")

    def _leak(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        values = [float(self.leak)] * rows if isinstance(self.leak, (int, float)) else [float(v) for v in self.leak]
        return torch.tensor(values, dtype=like.dtype).to(like.device)

    def aggregate(self, jacobian: torch.Tensor, context: JacobianContext) -> torch.Tensor:
        """At representation level ``context.representation`` holds the activations ``Z`` the
        Jacobian was taken at: the paper's batch marginalisation with the ``sign(Z)`` correction."""
        rows = jacobian.shape[0]
        representation = context.representation
        if representation is not None:
            if context.segments is not None:
                raise ValueError("a representation only applies to the representation-level Jacobian")
            batch = representation.shape[0]
            if representation.numel() != jacobian.shape[1]:
                raise ValueError(
                    f"representation has {representation.numel()} entries, the Jacobian {jacobian.shape[1]} columns"
                )
            per_sample = jacobian.reshape(rows, batch, -1)
            signs = representation.detach().reshape(1, batch, -1).sign().to(jacobian.dtype)
            purity_source = (per_sample * signs).sum(1)  # T × (entries per sample)
        else:
            purity_source = jacobian
        mask = sign_dropout_mask(purity_source)
        if representation is not None:
            mask = mask.unsqueeze(1).expand(rows, representation.shape[0], -1).reshape(rows, -1)
        leak = self._leak(rows, jacobian).unsqueeze(1)
        keep = leak + (1.0 - leak) * mask.to(jacobian.dtype)
        self.info = {"kept_fraction": mask.to(jacobian.dtype).mean()}
        return (keep * jacobian).sum(0)


def positive_sign_purity(gradients: torch.Tensor) -> torch.Tensor:
    """Eq. 1 per column of ``gradients`` (``T×n``); ½ where every task gradient is zero."""
    total = gradients.sum(0)
    mass = gradients.abs().sum(0)
    ratio = torch.where(mass > 0, total / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.zeros_like(mass))
    return 0.5 * (1.0 + ratio)


def sign_dropout_mask(gradients: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``M`` (``T×n``) with a fresh ``U ~ Uniform[0, 1)`` per column."""
    purity = positive_sign_purity(gradients)
    draw = torch.rand(purity.shape, dtype=purity.dtype, device=purity.device)
    positive = (purity > draw).unsqueeze(0) & (gradients > 0)
    negative = (purity < draw).unsqueeze(0) & (gradients < 0)
    return positive | negative
