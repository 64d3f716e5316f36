"""The streaming-metric protocol every task metric follows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch


class StreamingMetric(ABC):
    """Accumulates statistics over batches and reports named values at the end.

    ``update`` must not synchronise with the host (keep running sums as tensors on the
    prediction's device); ``compute`` may. ``lower_is_better`` maps every metric name that
    ``compute`` returns to its direction, used for Δp
    (``docs/formulas.md#evaluation-relative-improvement``).
    """

    lower_is_better: ClassVar[dict[str, bool]] = {}

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...
