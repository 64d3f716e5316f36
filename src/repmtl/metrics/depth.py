"""Depth: absolute and relative error on pixels with valid ground truth
(``docs/formulas.md#evaluation-metrics``).

**Validity rule**: a pixel is valid when its ground-truth depth is finite and ``> 0``
(:func:`valid_depth`). In the NYUv2 / Cityscapes releases invalid pixels are stored as exactly
``0`` and no value is negative, so this equals the community's ``depth != 0`` rule on them;
``> 0`` is used because the relative error divides by the ground truth. The same rule is used
by the masked L1 loss (``repmtl.metrics.losses``).

``abs_err = Σ|d̂ − d| / N`` and ``rel_err = Σ |d̂ − d| / d / N`` over every valid pixel seen
since ``reset`` (an exact pixel average over the whole evaluation set; LibMTL averages
per-batch means weighted by batch size instead, which differs slightly when batches hold
different numbers of valid pixels). Both are plain fractions (no ×100). For Cityscapes the
"depth" is inverse depth (disparity) and the errors are taken on it, as in the papers.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from repmtl.metrics.base import StreamingMetric


def valid_depth(target: torch.Tensor) -> torch.Tensor:
    """Boolean mask of valid ground-truth depth: finite and ``> 0``."""
    return torch.isfinite(target) & (target > 0)


def _check_depth_shapes(prediction: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"{name} expects prediction and target of the same shape (B, 1, H, W), got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )


class DepthMetric(StreamingMetric):
    """``abs_err`` and ``rel_err`` (both lower-is-better) over valid pixels."""

    lower_is_better: ClassVar[dict[str, bool]] = {"abs_err": True, "rel_err": True}

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: torch.Tensor | None = None  # [Σ abs, Σ rel, count] in float64

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        _check_depth_shapes(prediction, target, type(self).__name__)
        pred = prediction.detach().double()
        gt = target.detach().double()
        valid = valid_depth(gt)
        safe_gt = torch.where(valid, gt, torch.ones_like(gt))
        err = torch.where(valid, (pred - gt).abs(), torch.zeros_like(gt))
        sums = torch.stack([err.sum(), (err / safe_gt).sum(), valid.sum().double()])
        self._sums = sums if self._sums is None else self._sums + sums

    def compute(self) -> dict[str, float]:
        if self._sums is None:
            raise RuntimeError("DepthMetric.compute() called before any update()")
        abs_sum, rel_sum, count = self._sums.tolist()
        if count == 0:
            raise RuntimeError("DepthMetric saw no valid depth pixel (ground truth finite and > 0)")
        return {"abs_err": abs_sum / count, "rel_err": rel_sum / count}
