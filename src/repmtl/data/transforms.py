"""Joint augmentation of an image and its dense targets (the papers' random scale-crop + flip).

Every target is tagged with a *kind* that says how geometry acts on it:

* ``"label"``: class map ``H×W`` (integers, −1 = ignore) — nearest neighbour.
* ``"depth"``: ``1×H×W`` metric depth — nearest neighbour, **divided** by the zoom ``s`` of a
  scale-crop (the crop makes the scene look ``s`` times closer).
* ``"disparity"``: ``1×H×W`` inverse depth — nearest neighbour, **multiplied** by ``s`` (the
  physically consistent counterpart of the depth rule). MTAN/LibMTL divide Cityscapes'
  disparity by ``s`` as if it were depth; ``kind="depth"`` on a disparity map reproduces that.
* ``"normal"``: ``3×H×W`` unit normals, x first — nearest neighbour (no mixing of valid and
  zero = invalid pixels, no shortening of unit vectors); a horizontal flip negates x.
  A scale-crop leaves normals unchanged (as in MTAN/LibMTL).

The image (``C×H×W`` float) is resampled bilinearly with ``align_corners=False`` and targets
with ``"nearest-exact"``: both use the same pixel-centre mapping, so after any crop every target
pixel comes from the source pixel nearest to where the image sample was taken (within half a
pixel; MTAN's ``align_corners=True`` image / ``"nearest"`` label pair can be a pixel apart).

Randomness comes from ``torch``'s generator (the global one unless one is passed), which
``DataLoader`` seeds per worker, so runs are reproducible from the run's seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Kind = Literal["label", "depth", "disparity", "normal"]
KINDS: tuple[str, ...] = ("label", "depth", "disparity", "normal")


def _check_kinds(kinds: Mapping[str, str]) -> None:
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ValueError(f"unknown target kinds {bad}; choose from {KINDS}")


def scale_crop(
    image: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    scale: float,
    top: int,
    left: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Crop an ``(H/scale)×(W/scale)`` window at ``(top, left)`` and resize it back to ``H×W``."""
    _check_kinds(kinds)
    height, width = image.shape[-2:]
    h, w = int(height / scale), int(width / scale)
    if not (0 <= top <= height - h and 0 <= left <= width - w):
        raise ValueError(f"crop {h}×{w} at ({top}, {left}) does not fit in {height}×{width}")
    size = (height, width)
    out_image = F.interpolate(
        image[None, :, top : top + h, left : left + w].float(), size=size, mode="bilinear", align_corners=False
    )[0].to(image.dtype)
    out: dict[str, torch.Tensor] = {}
    for name, target in targets.items():
        kind = kinds[name]
        window = target[..., top : top + h, left : left + w]
        if kind == "label":
            resized = F.interpolate(window[None, None].double(), size=size, mode="nearest-exact")[0, 0]
            out[name] = resized.round().to(target.dtype)
            continue
        resized = F.interpolate(window[None].double(), size=size, mode="nearest-exact")[0]
        if kind == "depth":
            resized = resized / scale
        elif kind == "disparity":
            resized = resized * scale
        out[name] = resized.to(target.dtype)
    return out_image, out


def hflip(
    image: torch.Tensor, targets: Mapping[str, torch.Tensor], kinds: Mapping[str, str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mirror left-right; normals get their x component negated."""
    _check_kinds(kinds)
    out: dict[str, torch.Tensor] = {}
    for name, target in targets.items():
        flipped = target.flip(-1)
        if kinds[name] == "normal":
            flipped = flipped.clone()
            flipped[0] = -flipped[0]
        out[name] = flipped
    return image.flip(-1), out


class DenseAugment:
    """Random scale-crop (a scale drawn from ``scales``; MTAN/LibMTL use 1.0, 1.2, 1.5) then a
    horizontal flip with probability ``flip_p``, applied identically to the image and every
    target.

    Args:
        kinds: target name -> kind (see the module docstring).
        scales: zoom factors ``≥ 1``; ``()`` disables the scale-crop.
        flip_p: probability of the horizontal flip; ``0`` disables it.
        generator: a ``torch.Generator`` (default: torch's global one).
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        scales: Sequence[float] = (1.0, 1.2, 1.5),
        flip_p: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_kinds(kinds)
        if any(s < 1 for s in scales):
            raise ValueError(f"scales must be >= 1 (zoom in), got {tuple(scales)}")
        if not 0 <= flip_p <= 1:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.kinds = dict(kinds)
        self.scales = tuple(float(s) for s in scales)
        self.flip_p = flip_p
        self.generator = generator

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def __call__(
        self, image: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out_targets = dict(targets)
        if self.scales:
            scale = self.scales[self._randint(len(self.scales))]
            height, width = image.shape[-2:]
            h, w = int(height / scale), int(width / scale)
            top, left = self._randint(height - h + 1), self._randint(width - w + 1)
            if scale != 1.0:
                image, out_targets = scale_crop(image, out_targets, self.kinds, scale, top, left)
        if self.flip_p > 0 and float(torch.rand((), generator=self.generator)) < self.flip_p:
            image, out_targets = hflip(image, out_targets, self.kinds)
        return image, out_targets

    def __repr__(self) -> str:
        return f"DenseAugment(kinds={self.kinds}, scales={self.scales}, flip_p={self.flip_p})"
