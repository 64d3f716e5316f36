"""Classification accuracy (``docs/formulas.md#evaluation-metrics``)."""

from __future__ import annotations

from typing import ClassVar

import torch

from repmtl.metrics.base import StreamingMetric


class Accuracy(StreamingMetric):
    """Top-1 accuracy in percent over all samples seen since ``reset``."""

    lower_is_better: ClassVar[dict[str, bool]] = {"acc": False}

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._correct: torch.Tensor | None = None
        self._count = 0

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        if prediction.ndim != 2 or target.shape != prediction.shape[:1]:
            raise ValueError(
                f"Accuracy expects logits (B, K) and labels (B,), got {tuple(prediction.shape)} "
                f"and {tuple(target.shape)}"
            )
        correct = (prediction.argmax(dim=1) == target).sum()
        self._correct = correct if self._correct is None else self._correct + correct
        self._count += target.numel()

    def compute(self) -> dict[str, float]:
        if self._count == 0 or self._correct is None:
            raise RuntimeError("Accuracy.compute() called before any update()")
        return {"acc": 100.0 * self._correct.item() / self._count}
