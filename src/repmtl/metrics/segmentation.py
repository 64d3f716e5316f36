"""Semantic segmentation: mIoU and pixel accuracy from a streaming confusion matrix
(``docs/formulas.md#evaluation-metrics``).

Pixels whose label is ``ignore_index`` are not counted anywhere (neither in the confusion
matrix nor in the pixel count). The IoU of class ``c`` is ``TP / (TP + FP + FN)`` over the
counted pixels; a class with ``TP + FP + FN = 0`` (absent from both the prediction and the
label) is skipped, so mIoU is the mean over the classes that occur, never NaN. Both values are
reported in percent, like the paper tables.

``update`` never synchronises with the host: the confusion matrix is filled with
``index_add_`` on the prediction's device, and ignored pixels go to a spare "dump" bin instead
of being removed by boolean indexing (which would need the host to know how many remain).
Labels outside ``[0, num_classes)`` other than ``ignore_index`` are counted on the device and
reported by ``compute`` as an error, since checking them in ``update`` would need a sync.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from repmtl.metrics.base import StreamingMetric


def _as_class_map(prediction: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """Logits ``B×K×H×W`` -> class map ``B×H×W``; an integer class map passes through."""
    if prediction.is_floating_point():
        if prediction.ndim != target.ndim + 1 or prediction.shape[:1] + prediction.shape[2:] != target.shape:
            raise ValueError(
                f"{name} expects logits (B, K, H, W) and labels (B, H, W), got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        return prediction.argmax(dim=1)
    if prediction.shape != target.shape:
        raise ValueError(
            f"{name} expects an integer class map with the labels' shape {tuple(target.shape)}, "
            f"got {tuple(prediction.shape)}"
        )
    return prediction


class SegmentationMetric(StreamingMetric):
    """Confusion-matrix mIoU (``miou``) and pixel accuracy (``pix_acc``), both in percent.

    Args:
        num_classes: number of classes ``K``; labels are ``0..K-1``.
        ignore_index: label of unlabelled pixels (−1 in the NYUv2/Cityscapes releases).
    """

    lower_is_better: ClassVar[dict[str, bool]] = {"miou": False, "pix_acc": False}

    def __init__(self, num_classes: int, ignore_index: int = -1) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class in 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self._counts: torch.Tensor | None = None  # K*K confusion bins + 1 dump bin
        self._bad_labels: torch.Tensor | None = None

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        pred = _as_class_map(prediction.detach(), target, type(self).__name__).reshape(-1).long()
        label = target.detach().reshape(-1).long()
        k = self.num_classes
        if self._counts is None:
            self._counts = torch.zeros(k * k + 1, dtype=torch.int64, device=label.device)
            self._bad_labels = torch.zeros((), dtype=torch.int64, device=label.device)
        in_range = (label >= 0) & (label < k)
        self._bad_labels += (~in_range & (label != self.ignore_index)).sum()
        # a prediction outside 0..K-1 (impossible from logits) counts as wrong for its label
        pred_ok = (pred >= 0) & (pred < k)
        index = label.clamp(0, k - 1) * k + pred.clamp(0, k - 1)
        wrong_pred = in_range & ~pred_ok
        # route an invalid prediction to a different class than the label (any off-diagonal bin)
        index = torch.where(wrong_pred, label.clamp(0, k - 1) * k + (label.clamp(0, k - 1) + 1) % k, index)
        index = torch.where(in_range, index, torch.full_like(index, k * k))
        self._counts.index_add_(0, index, torch.ones_like(index))

    def confusion_matrix(self) -> torch.Tensor:
        """``K×K`` counts, rows = label, columns = prediction (ignored pixels excluded)."""
        if self._counts is None:
            raise RuntimeError(f"{type(self).__name__}.confusion_matrix() called before any update()")
        k = self.num_classes
        return self._counts[: k * k].view(k, k)

    def compute(self) -> dict[str, float]:
        if self._counts is None:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        bad = int(self._bad_labels.item())
        if bad:
            raise ValueError(
                f"{bad} pixels have labels outside 0..{self.num_classes - 1} that are not the "
                f"ignore_index {self.ignore_index}"
            )
        cm = self.confusion_matrix().double().cpu()
        total = cm.sum()
        if total == 0:
            raise RuntimeError("SegmentationMetric saw no labelled pixel (every label was ignore_index)")
        tp = cm.diagonal()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = tp[present] / union[present]
        return {"miou": 100.0 * iou.mean().item(), "pix_acc": 100.0 * (tp.sum() / total).item()}
