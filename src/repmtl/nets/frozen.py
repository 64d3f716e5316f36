"""A frozen encoder (``--freeze-encoder``): fixed weights, fixed normalisation statistics.

The linear-probe / frozen-feature protocol of foundation-model studies: the encoder's parameters
do not require a gradient, it stays in eval mode (BatchNorm running statistics and dropout fixed
even while the model trains) and runs without building a graph. Its output ``Z`` is returned as a
leaf that requires a gradient, so the heads train and the representation-level quantities
(``S_t = ∂L_t/∂Z``, Rep-MTL's saliency penalties) stay defined; nothing flows past ``Z``.
"""

from __future__ import annotations

import torch
from torch import nn


class FrozenEncoder(nn.Module):
    """Wraps ``encoder`` (its ``out_channels`` / ``output_stride`` are kept when it has them)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.frozen = encoder.requires_grad_(False).eval()
        for name in ("out_channels", "output_stride"):
            if hasattr(encoder, name):
                setattr(self, name, getattr(encoder, name))

    def train(self, mode: bool = True) -> FrozenEncoder:
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = self.frozen(x)
        return z.requires_grad_()
