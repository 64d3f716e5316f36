"""Training losses of the dense tasks (MTAN / LibMTL conventions), masked like the metrics.

Every loss is a mean over the *counted* pixels of the batch (labelled, or with valid ground
truth: the rules of :mod:`repmtl.metrics.segmentation`, :func:`repmtl.metrics.depth.valid_depth`
and :func:`repmtl.metrics.normals.valid_normal`). A batch with no counted pixel gives a loss of
exactly 0 that still carries the graph (no NaN, no host synchronisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from repmtl.metrics.depth import valid_depth
from repmtl.metrics.normals import valid_normal


class SegmentationLoss:
    """Pixel-wise cross-entropy of logits ``B×K×H×W`` against labels ``B×H×W``, pixels labelled
    ``ignore_index`` excluded from the sum and from the count."""

    def __init__(self, ignore_index: int = -1) -> None:
        self.ignore_index = ignore_index

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        total = F.cross_entropy(prediction, target, ignore_index=self.ignore_index, reduction="sum")
        count = (target != self.ignore_index).sum().clamp(min=1)
        return total / count

    def __repr__(self) -> str:
        return f"SegmentationLoss(ignore_index={self.ignore_index})"


class DepthL1Loss:
    """Mean absolute error over pixels with valid depth (``B×1×H×W`` prediction and target)."""

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape:
            raise ValueError(f"depth prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        valid = valid_depth(target)
        diff = torch.where(valid, prediction - target, torch.zeros_like(prediction))
        return diff.abs().sum() / valid.sum().clamp(min=1)

    def __repr__(self) -> str:
        return "DepthL1Loss()"


class NormalCosineLoss:
    """``1 − mean cosine`` between predicted and true normals (``B×3×H×W``) over valid pixels;
    the prediction is normalised first (a head outputs an unnormalised 3-vector)."""

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape or prediction.shape[1] != 3:
            raise ValueError(
                f"normal prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must both be (B, 3, H, W)"
            )
        valid = valid_normal(target)
        safe_target = torch.where(valid.unsqueeze(1), target, torch.zeros_like(target))
        cosine = (F.normalize(prediction, dim=1) * F.normalize(safe_target, dim=1)).sum(dim=1)
        count = valid.sum().clamp(min=1)
        return (valid.sum() - (cosine * valid).sum()) / count

    def __repr__(self) -> str:
        return "NormalCosineLoss()"
