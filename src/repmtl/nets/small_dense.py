"""A small dilated CNN for dense tasks on CPU (the ``synthscenes`` benchmark).

Encoder: two stride-2 3×3 conv-BN-ReLU blocks (output stride 4) then three 3×3 conv-BN-ReLU
blocks dilated 1, 2, 4 (receptive field ≈ 70 input pixels, the whole 48×64 image), giving
``Z`` of shape ``B×width×H/4×W/4``. Each head: 3×3 conv-BN-ReLU, 1×1 conv, bilinear upsample ×4.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from repmtl.model import MultiTaskModel
from repmtl.nets.deeplab import Upsample


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1, inplace: bool = True) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=inplace),
    ]


class SmallDenseEncoder(nn.Sequential):
    """``B×in×H×W -> B×width×H/4×W/4`` (``H``, ``W`` multiples of 4)."""

    output_stride = 4

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        half = width // 2
        super().__init__(
            *_block(in_channels, half, stride=2),
            *_block(half, width, stride=2),
            *_block(width, width, dilation=1),
            *_block(width, width, dilation=2),
            *_block(width, width, dilation=4, inplace=False),  # Z is not overwritten in place
        )
        self.out_channels = width

    def forward(self, x):
        h, w = x.shape[-2:]
        if h % self.output_stride or w % self.output_stride:
            raise ValueError(f"SmallDenseEncoder needs input height and width divisible by 4, got {h}×{w}")
        return super().forward(x)


class SmallDenseHead(nn.Sequential):
    """``Z -> 3×3 conv-BN-ReLU -> 1×1 conv(out_channels) -> upsample(factor)``."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64, upsample: int = 4) -> None:
        super().__init__(*_block(in_channels, hidden), nn.Conv2d(hidden, out_channels, 1), Upsample(upsample, align_corners=False))


def build_small_dense(outputs: Mapping[str, int], width: int = 64, hidden: int = 64, in_channels: int = 3) -> MultiTaskModel:
    """Shared :class:`SmallDenseEncoder` + one :class:`SmallDenseHead` per task."""
    encoder = SmallDenseEncoder(in_channels, width)
    heads = {t: SmallDenseHead(width, c, hidden, SmallDenseEncoder.output_stride) for t, c in outputs.items()}
    return MultiTaskModel(encoder, heads)
