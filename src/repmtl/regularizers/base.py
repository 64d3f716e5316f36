"""The regularizer protocol used by :func:`repmtl.backward`.

A regularizer adds differentiable penalty terms to the objective. Those that set
``needs_saliency`` receive the stacked task saliencies ``S = ∂L_t/∂Z`` (``T×B×…``) computed
**with the graph kept**, so their terms differentiate w.r.t. the heads and, through ``Z``,
the encoder (SPEC §2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class Penalty:
    """One term ``weight · value`` of the objective; ``value`` is logged as ``name``."""

    name: str
    value: torch.Tensor
    weight: float


class Regularizer(nn.Module):
    name: ClassVar[str] = ""
    needs_saliency: ClassVar[bool] = True

    def forward(self, saliency: torch.Tensor, losses: torch.Tensor) -> list[Penalty]:
        """Penalties from saliencies ``(T, B, …)`` and the task losses ``(T,)``."""
        raise NotImplementedError
