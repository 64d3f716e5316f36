"""Small CPU networks for the embedded benchmarks."""

from __future__ import annotations

from torch import nn


class SmallConvEncoder(nn.Sequential):
    """Three 3×3 conv-BN-ReLU blocks, the first two followed by 2×2 max-pooling:
    ``(B, in, H, W) -> (B, width2, H/4, W/4)``, a spatial representation ``Z``."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, int, int] = (32, 64, 64)) -> None:
        c1, c2, c3 = widths
        super().__init__(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(),
        )
        self.out_channels = c3


class ClassifierHead(nn.Sequential):
    """Flatten a ``C×H×W`` representation, then a one-hidden-layer MLP to ``num_classes`` logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )
