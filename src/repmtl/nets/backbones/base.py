"""The parts every external backbone shares: the encoder spec, the dense and pooled wrappers, errors.

See :mod:`repmtl.nets.backbones` for what the two shapes of ``Z`` are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: spec prefix -> the optional extra that provides it
LIBRARIES = {"timm": "timm", "clip": "clip"}


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed ``<library>:<model name>`` encoder value."""

    library: str
    model: str

    def __str__(self) -> str:
        return f"{self.library}:{self.model}"


def is_external(encoder: str | None) -> bool:
    """Whether an ``--encoder`` value names an external backbone (``timm:…`` or ``clip:…``)."""
    return encoder is not None and encoder.split(":", 1)[0] in LIBRARIES and ":" in encoder


def parse_spec(encoder: str) -> EncoderSpec:
    """``"timm:resnet18"`` -> ``EncoderSpec("timm", "resnet18")``; a ``ValueError`` for anything else."""
    library, sep, model = encoder.partition(":")
    if not sep or library not in LIBRARIES or not model.strip():
        raise ValueError(
            f"encoder {encoder!r}: an external backbone is written <library>:<model>, library one of "
            f"{sorted(LIBRARIES)}, e.g. timm:resnet18, timm:vit_small_patch14_dinov2, clip:ViT-B-32"
        )
    return EncoderSpec(library, model.strip())


def missing_extra(library: str, exc: ImportError) -> ImportError:
    """The error raised when an optional backbone library is not installed."""
    extra = LIBRARIES[library]
    package = {"timm": "timm", "clip": "open_clip_torch"}[library]
    return ImportError(
        f"encoder {library}:… needs the optional extra [{extra}]: pip install 'repmtl[{extra}]' "
        f"(or pip install {package}); importing it failed: {exc}"
    )


#: ``features(trunk, x)``: a module-level function (not a closure), so copies of an encoder
#: (``copy.deepcopy``, as some architectures make) call their own trunk
Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def probe(features: Features, trunk: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """``features(trunk, ·)`` on one zero image of ``size`` in eval mode without gradient (to read
    output shapes); ``trunk``'s training mode is restored."""
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            return features(trunk, torch.zeros(1, 3, *size))
    finally:
        trunk.train(was_training)


class DenseBackbone(nn.Module):
    """``x (B×3×H×W) -> Z (B×C×H/s×W/s)``: an external trunk's feature map, resampled to stride ``s``.

    ``trunk`` is the module holding the parameters; ``features(trunk, x)`` returns its ``B×C×h×w`` map.
    ``out_channels`` is ``C``, ``output_stride`` is ``s``, ``native_stride`` the trunk's own.
    """

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        features: Features,
        output_stride: int,
        probe_size: tuple[int, int] = (224, 224),
    ) -> None:
        super().__init__()
        if output_stride < 1:
            raise ValueError(f"output_stride must be ≥ 1, got {output_stride}")
        self.name, self.trunk, self._features = name, trunk, features
        self.output_stride = int(output_stride)
        z = probe(features, trunk, probe_size)
        if z.dim() != 4:
            raise ValueError(f"encoder {name}: expected a B×C×h×w feature map, the model gives shape {tuple(z.shape)}")
        self.out_channels = int(z.shape[1])
        self.native_stride = probe_size[0] // int(z.shape[-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.output_stride
        if h % s or w % s:
            raise ValueError(f"encoder {self.name} (output stride {s}) needs input height and width divisible by {s}, got {h}×{w}")
        try:
            z = self._features(self.trunk, x)
        except RuntimeError as exc:
            raise RuntimeError(
                f"encoder {self.name} failed on a {h}×{w} input (native stride {self.native_stride}; some models, "
                f"e.g. HRNets, need sizes divisible by it): {exc}"
            ) from exc
        if z.shape[-2:] != (h // s, w // s):
            z = F.interpolate(z, size=(h // s, w // s), mode="bilinear", align_corners=False)
        return z

    def extra_repr(self) -> str:
        return f"name={self.name}, out_channels={self.out_channels}, output_stride={self.output_stride}"


class PooledBackbone(nn.Module):
    """``x (B×3×H×W) -> Z (B×F)``: an external model's pooled feature vector (``out_channels = F``)."""

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        features: Features,
        probe_size: tuple[int, int] = (224, 224),
    ) -> None:
        super().__init__()
        self.name, self.trunk, self._features = name, trunk, features
        z = probe(features, trunk, probe_size)
        if z.dim() != 2:
            raise ValueError(f"encoder {name}: expected a pooled B×F vector, the model gives shape {tuple(z.shape)}")
        self.out_channels = int(z.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(self.trunk, x)

    def extra_repr(self) -> str:
        return f"name={self.name}, out_channels={self.out_channels}"
