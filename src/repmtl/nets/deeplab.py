"""DeepLabV3-style multi-task network as LibMTL / MTAN's NYUv2 and Cityscapes baselines use it.

A dilated ResNet encoder (output stride 8) is shared; each task has its own ASPP head
(torchvision's ``ASPP`` with rates 12/24/36, then 3×3 conv-BN-ReLU and a 1×1 classifier: the
same layers as torchvision's ``DeepLabHead``) whose output is bilinearly upsampled by the
output stride back to the input size (``align_corners=True``, as LibMTL). The encoder output is
the shared representation ``Z`` (``B×2048×H/8×W/8`` for ResNet-50).

Upsampling lives inside each head, so ``head(Z)`` alone gives the full-resolution prediction:
the heads are functions of ``Z`` only, which is what ``repmtl.backward`` and representation-
level methods assume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from repmtl.model import MultiTaskModel
from repmtl.nets.backbones import build_dense_encoder, is_external
from repmtl.nets.resnet import ResNetEncoder


class Upsample(nn.Module):
    """Bilinear upsampling by an integer factor."""

    def __init__(self, factor: int, align_corners: bool = True) -> None:
        super().__init__()
        self.factor, self.align_corners = int(factor), align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, align_corners={self.align_corners}"


class ASPPHead(nn.Sequential):
    """``ASPP -> 3×3 conv(256)-BN-ReLU -> 1×1 conv(out_channels) -> upsample(factor)``.

    Note: ASPP's image-pooling branch has a BatchNorm over a 1×1 map, so training needs a batch
    of at least 2 (a PyTorch error otherwise), as in torchvision's DeepLab.
    """

    def __init__(
        self, in_channels: int, out_channels: int, upsample: int = 8, rates: Sequence[int] = (12, 24, 36), width: int = 256
    ) -> None:
        super().__init__(
            ASPP(in_channels, list(rates), width),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, out_channels, 1),
            Upsample(upsample),
        )


def build_deeplab(
    outputs: Mapping[str, int],
    encoder: str = "resnet50",
    pretrained: str | Path | None = None,
    output_stride: int = 8,
    rates: Sequence[int] | None = None,
) -> MultiTaskModel:
    """A shared dilated ResNet with one :class:`ASPPHead` per task.

    Args:
        outputs: task name -> output channels (classes for segmentation, 1 depth, 3 normals).
        encoder: ``resnet18 | resnet34 | resnet50 | resnet101``, or an external backbone
            ``timm:<model>`` / ``clip:<model>`` (:mod:`repmtl.nets.backbones`).
        pretrained: local weights file for the encoder (never downloaded).
        output_stride: 8 (the papers'), 16 or 32.
        rates: ASPP atrous rates; default (12, 24, 36) at stride 8, halved at 16, quartered at 32.
    """
    if rates is None:
        rates = tuple(r * 8 // output_stride for r in (12, 24, 36))
    if is_external(encoder):
        enc: nn.Module = build_dense_encoder(encoder, pretrained, output_stride)
    else:
        enc = ResNetEncoder(encoder, output_stride=output_stride, pretrained=pretrained)
    heads = {task: ASPPHead(enc.out_channels, channels, output_stride, rates) for task, channels in outputs.items()}
    return MultiTaskModel(enc, heads)
