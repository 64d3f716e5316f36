"""Dilated torchvision ResNet encoders (the MTL community's DeepLab backbone).

:class:`ResNetEncoder` is a torchvision ResNet without its pooling / classifier, with the
strides of its last stages replaced by dilation so that the output stride is 8 (or 16, 32).
For bottleneck ResNets (50/101) torchvision's ``replace_stride_with_dilation`` does it; torchvision
refuses dilation in ``BasicBlock`` (ResNet-18/34), so there the strided convolutions are set to
stride 1 and the 3×3 convolutions dilated after construction, with the same pattern as
torchvision's (the first block of a dilated stage keeps the previous dilation in its first conv)
— the scheme LibMTL / MTAN's ``resnet_dilated`` use.

ImageNet weights are only ever read from a local file (``pretrained=path``): nothing is
downloaded. The file may hold a torchvision state dict (``resnet50-*.pth``), or a dict with a
``state_dict`` / ``model`` entry; ``module.`` prefixes (DataParallel) are stripped and the
classifier (``fc.*``) is ignored. Any other missing, unexpected or mis-shaped key is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

#: name -> (torchvision constructor, output channels, block type is Bottleneck)
ARCHITECTURES = {
    "resnet18": (tv_resnet.resnet18, 512, False),
    "resnet34": (tv_resnet.resnet34, 512, False),
    "resnet50": (tv_resnet.resnet50, 2048, True),
    "resnet101": (tv_resnet.resnet101, 2048, True),
}


def _dilate_basic_stage(stage: nn.Sequential, dilation: int) -> None:
    """Turn a strided ``BasicBlock`` stage into a dilated one of stride 1."""
    previous = max(1, dilation // 2)
    for b, block in enumerate(stage):
        for name in ("conv1", "conv2"):
            conv: nn.Conv2d = getattr(block, name)
            d = previous if (b == 0 and name == "conv1") else dilation
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


def build_resnet(name: str, output_stride: int = 8) -> tv_resnet.ResNet:
    """A randomly initialised torchvision ResNet with the given output stride (8, 16 or 32)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown ResNet {name!r}; choose from {sorted(ARCHITECTURES)}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    constructor, _, bottleneck = ARCHITECTURES[name]
    dilate = [False, output_stride <= 8, output_stride <= 16]
    if bottleneck:
        return constructor(weights=None, replace_stride_with_dilation=dilate)
    model = constructor(weights=None)
    if dilate[1]:
        _dilate_basic_stage(model.layer3, 2)
    if dilate[2]:
        _dilate_basic_stage(model.layer4, 4 if dilate[1] else 2)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load ImageNet weights for ``model`` (a torchvision ResNet) from a local file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} not found; weights are never downloaded: put a "
            "torchvision ResNet state dict (e.g. resnet50-0676ba61.pth) at that path, or train "
            "from random initialisation"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as a PyTorch weights file ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not match {type(model).__name__} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(mismatched)} mis-shaped keys); "
            f"missing: {missing[:5]} unexpected: {unexpected[:5]} mis-shaped: {mismatched[:5]}. "
            "Is it the weights of another ResNet depth?"
        )
    model.load_state_dict(state, strict=False)


class ResNetEncoder(nn.Module):
    """``x (B×3×H×W) -> Z (B×C×H/s×W/s)``: a dilated ResNet trunk (no pooling, no classifier).

    ``H`` and ``W`` must be multiples of the output stride ``s`` (checked), so heads that upsample
    by ``s`` return exactly the input size. ``out_channels`` is 2048 (ResNet-50/101) or 512.
    """

    def __init__(self, name: str = "resnet50", output_stride: int = 8, pretrained: str | Path | None = None) -> None:
        super().__init__()
        model = build_resnet(name, output_stride)
        if pretrained is not None:
            load_pretrained(model, pretrained)
        self.name = name
        self.output_stride = output_stride
        self.out_channels = ARCHITECTURES[name][1]
        self.stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = model.layer1, model.layer2, model.layer3, model.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.output_stride or w % self.output_stride:
            raise ValueError(
                f"{self.name} encoder (output stride {self.output_stride}) needs input height and "
                f"width divisible by {self.output_stride}, got {h}×{w}"
            )
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
