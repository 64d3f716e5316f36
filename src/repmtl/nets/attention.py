"""Attention-augmented heads for top-down attribution (Mao et al., IEEE Access 2024, Eq. 8).

``H_i(A_i(Z) ⊙ Z)``: each task's head sees the shared representation gated by its own attention
module ``A_i``. The attention map ``A_i(Z)`` (same shape as ``Z``) is the top-down saliency
``M_i`` that Feature Disentanglement summarises
(:func:`repmtl.diagnostics.feature_disentanglement`).

``A_i`` follows the paper: a 3×3 convolution, then a depthwise-separable convolution (a 3×3
depthwise conv followed by a 1×1 pointwise conv). Decisions the paper leaves open
(``docs/formulas.md#diagnostics-feature-disentanglement``):

* a ReLU between the 3×3 conv and the depthwise-separable conv (without a non-linearity the
  two would compose into one linear convolution); no normalisation layer (batch-size free);
* a **sigmoid** at the end, so ``A_i(Z) ∈ (0, 1)`` is a gate on each feature, as in the
  attention-branch networks the paper follows. ``gate="none"`` leaves the map unbounded (FD uses
  ``|A_i(Z)|`` either way);
* vector features ``B×C`` are treated as ``B×C×1×1`` (the 3×3 kernels then act through their
  centre tap only, i.e. as per-channel linear maps).

Use :func:`with_attention` to turn a :class:`~repmtl.model.MultiTaskModel` into its
attention-augmented variant and :func:`attention_maps` to read the maps after a forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from repmtl.model import MultiTaskModel

__all__ = ["AttentionHead", "AttentionModule", "attention_maps", "with_attention"]

Gate = Literal["sigmoid", "none"]


class AttentionModule(nn.Module):
    """``A(Z)``: 3×3 conv → ReLU → depthwise 3×3 conv → pointwise 1×1 conv → sigmoid.

    Maps ``B×C×H×W`` (or ``B×C``) to a tensor of the same shape.
    """

    def __init__(self, channels: int, *, hidden: int | None = None, kernel_size: int = 3, gate: Gate = "sigmoid") -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be ≥ 1, got {channels}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
        if gate not in ("sigmoid", "none"):
            raise ValueError(f"gate must be 'sigmoid' or 'none', got {gate!r}")
        hidden = channels if hidden is None else hidden
        pad = kernel_size // 2
        self.channels = channels
        self.gate = gate
        self.conv = nn.Conv2d(channels, hidden, kernel_size, padding=pad)
        self.act = nn.ReLU()
        self.depthwise = nn.Conv2d(hidden, hidden, kernel_size, padding=pad, groups=hidden)
        self.pointwise = nn.Conv2d(hidden, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim not in (2, 4) or z.shape[1] != self.channels:
            raise ValueError(
                f"attention module for {self.channels} channels expects B×{self.channels}×H×W or "
                f"B×{self.channels}, got shape {tuple(z.shape)}"
            )
        x = z[:, :, None, None] if z.ndim == 2 else z
        a = self.pointwise(self.depthwise(self.act(self.conv(x))))
        if self.gate == "sigmoid":
            a = torch.sigmoid(a)
        return a.reshape(z.shape)

    def extra_repr(self) -> str:
        return f"gate={self.gate}"


class AttentionHead(nn.Module):
    """Wrap any head ``H``: ``forward(Z) = H(A(Z) ⊙ Z)``.

    ``last_attention`` holds ``A(Z)`` of the latest forward pass, detached (a diagnostic; it
    keeps no graph alive), or ``None`` before the first call.
    """

    def __init__(self, head: nn.Module, channels: int, **attention_kwargs) -> None:
        super().__init__()
        self.head = head
        self.attention = AttentionModule(channels, **attention_kwargs)
        self.last_attention: torch.Tensor | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = self.attention(z)
        self.last_attention = a.detach()
        return self.head(a * z)


def with_attention(model: MultiTaskModel, channels: int, **attention_kwargs) -> MultiTaskModel:
    """The model with every head wrapped in an :class:`AttentionHead` (new attention modules on
    the heads' device and dtype; encoder and heads are shared with ``model``, not copied).

    ``channels`` is ``C`` of the representation ``Z``. The attention modules belong to the heads
    (``model.task_parameters(t)``), so every MTL method treats them as task-specific.
    """
    heads: dict[str, nn.Module] = {}
    for name, head in model.heads.items():
        if isinstance(head, AttentionHead):
            raise ValueError(f"head {name!r} already has an attention module")  # noqa: TRY004 - a state, not a type error
        wrapped = AttentionHead(head, channels, **attention_kwargs)
        ref = next(iter(head.parameters()), None)
        if ref is not None:
            wrapped.attention.to(device=ref.device, dtype=ref.dtype)
        heads[name] = wrapped
    return MultiTaskModel(model.encoder, heads)


def attention_maps(model: nn.Module | Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Task -> ``A_t(Z)`` of the last forward pass, for every attention-augmented head.

    Accepts a model with ``heads`` (e.g. :class:`MultiTaskModel`, possibly wrapped in DDP) or
    a mapping of heads. Raises if a head has not run yet. Feed the result to
    :func:`repmtl.diagnostics.feature_disentanglement` for the top-down FD.
    """
    inner = getattr(model, "module", model)
    heads = inner if isinstance(inner, (Mapping, nn.ModuleDict)) else getattr(inner, "heads", None)
    if heads is None:
        raise TypeError("attention_maps needs a model with .heads or a mapping task -> head")
    maps: dict[str, torch.Tensor] = {}
    for name, head in heads.items():
        if not isinstance(head, AttentionHead):
            continue
        if head.last_attention is None:
            raise RuntimeError(f"head {name!r} has not run a forward pass yet")
        maps[name] = head.last_attention
    return maps
