"""synthscenes datasets: :class:`SynthScenes` (one split, samples rendered lazily and cached)
and :func:`synthscenes_splits` (the fixed train / val / test sets of a dataset seed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from repmtl.benchmarks import Splits
from repmtl.data.synthscenes.render import SPLIT_CODES, generate
from repmtl.data.synthscenes.scene import CLASSES
from repmtl.data.transforms import DenseAugment

TASK_OUTPUTS = {"segmentation": len(CLASSES), "depth": 1, "normal": 3}
TASK_KINDS = {"segmentation": "label", "depth": "depth", "normal": "normal"}


class SynthScenes(Dataset):
    """One split of synthscenes: ``(image 3×H×W, {task: target})`` like the NYUv2 loader.

    Args:
        split: ``"train" | "val" | "test"`` (independent random streams).
        length: number of samples.
        seed: dataset seed (not the run's seed: every run sees the same data).
        size: ``(H, W)``; multiples of 8 fit every encoder here.
        tasks: subset of ``segmentation``, ``depth``, ``normal``.
        cache: keep generated samples in memory (≈ 60 KB each at 48×64).
        augment: optional ``(image, targets) -> (image, targets)`` (e.g. ``DenseAugment``).
        views: camera views per room: samples ``V·s … V·s + V − 1`` show scene ``s``
            (:func:`~repmtl.data.synthscenes.render.generate`); ``length`` need not be a multiple.
    """

    def __init__(
        self,
        split: str,
        length: int,
        seed: int = 0,
        size: tuple[int, int] = (48, 64),
        tasks: Sequence[str] = ("segmentation", "depth", "normal"),
        holes: bool = True,
        cache: bool = True,
        augment: Callable | None = None,
        views: int = 1,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; choose from {list(SPLIT_CODES)}")
        unknown = [t for t in tasks if t not in TASK_OUTPUTS]
        if unknown:
            raise ValueError(f"unknown synthscenes tasks {unknown}; choose from {list(TASK_OUTPUTS)}")
        if int(views) < 1:
            raise ValueError(f"views must be an integer ≥ 1, got {views!r}")
        self.split, self.length, self.seed, self.views = split, int(length), int(seed), int(views)
        self.size = (int(size[0]), int(size[1]))
        self.tasks, self.holes, self.augment = tuple(tasks), holes, augment
        self._cache: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        s = generate(self.seed, self.split, index, self.size, self.holes, self.views)
        image = torch.from_numpy(s["image"].astype(np.float32)).permute(2, 0, 1).contiguous()
        all_targets = {
            "segmentation": torch.from_numpy(s["label"]),
            "depth": torch.from_numpy(s["depth"].astype(np.float32))[None],
            "normal": torch.from_numpy(s["normal"].astype(np.float32)).permute(2, 0, 1).contiguous(),
        }
        sample = (image, {t: all_targets[t] for t in self.tasks})
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def scene_ids(self) -> list[int]:
        """The scene (room) each sample shows, by index: what whole-scene subsets are drawn by."""
        return [i // self.views for i in range(self.length)]

    def materialize(self) -> SynthScenes:
        """Generate every sample now. Useful before ``DataLoader`` workers start: each worker
        otherwise fills its own copy of the cache (and loses it when the worker exits)."""
        for index in range(self.length):
            self.load(index)
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, targets = self.load(index)
        if self.augment is not None:
            image, targets = self.augment(image, targets)
        return image, targets


#: default split sizes and image size (those of the ``synthscenes`` preset)
SIZES = {"train": 2048, "val": 256, "test": 512}
IMAGE_SIZE = (48, 64)


def synthscenes_splits(
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    size: tuple[int, int] = IMAGE_SIZE,
    tasks: Sequence[str] = tuple(TASK_OUTPUTS),
    augment: bool = False,
    holes: bool = True,
    views: int = 1,
) -> Splits:
    """Fixed train / val / test sets from ``seed`` (the dataset seed, not the run's); ``views``
    camera views per room in every split."""
    sizes = {**SIZES, **(sizes or {})}
    aug = DenseAugment({t: TASK_KINDS[t] for t in tasks}) if augment else None

    def make(split: str, a: DenseAugment | None = None) -> SynthScenes:
        return SynthScenes(split, sizes[split], seed, size, tasks, holes, augment=a, views=views)

    return Splits(train=make("train", aug), val=make("val"), test=make("test"))
