"""``multidigits``: a MultiMNIST-style two-task problem built from real handwritten digits.

The 1,797 8×8 handwritten digits that ship inside scikit-learn (UCI optical recognition of
handwritten digits; no download) are upsampled 2× to 16×16 and pasted into a 22×22 canvas, one
near the upper left (offset 0–2 px) and one near the lower right (offset 4–6 px), so they
overlap in a 10–14 px square (pixel-wise max), as MultiMNIST does with MNIST (Sabour et al.,
2017; Sener & Koltun, 2018). Task ``left`` classifies the upper-left digit, task ``right``
the lower-right one. The jitter keeps single-task test accuracy near 95% after the default
budget, so that methods can differ.

Splits are fixed and deterministic: the source digits are first divided 60/20/20 into
disjoint train/val/test pools (seed 0), so no handwritten digit appears in two splits; pairs
are then drawn within each pool (6,000 / 1,000 / 1,000 pairs).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.metrics.classification import Accuracy
from repmtl.model import MultiTaskModel
from repmtl.nets.small import ClassifierHead, SmallConvEncoder
from repmtl.tasks import Task

TASKS = ("left", "right")
CANVAS = 22
DIGIT = 16
OFFSET = 4  # the lower-right digit's base offset
JITTER = 2  # each digit moves by 0..JITTER px in both directions
PAIRS = {"train": 6000, "val": 1000, "test": 1000}


class PairDataset(TensorDataset):
    """Items ``(image (1, 22, 22), {"left": label, "right": label})``."""

    def __getitem__(self, index: int):
        image, left, right = super().__getitem__(index)
        return image, {"left": left, "right": right}


@lru_cache(maxsize=1)
def _pairs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    images = images.repeat(2, axis=1).repeat(2, axis=2)  # 16×16, nearest-neighbour
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_train, n_val = int(0.6 * len(order)), int(0.2 * len(order))
    pools = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    out = {}
    for split, pool in pools.items():
        first = rng.choice(pool, PAIRS[split])
        second = rng.choice(pool, PAIRS[split])
        shifts = rng.integers(0, JITTER + 1, size=(PAIRS[split], 4))
        canvas = np.zeros((PAIRS[split], 1, CANVAS, CANVAS), dtype=np.float32)
        for k, (ay, ax, by, bx) in enumerate(shifts):
            canvas[k, 0, ay : ay + DIGIT, ax : ax + DIGIT] = images[first[k]]
            window = canvas[k, 0, OFFSET + by : OFFSET + by + DIGIT, OFFSET + bx : OFFSET + bx + DIGIT]
            np.maximum(window, images[second[k]], out=window)
        out[split] = (canvas, np.stack([labels[first], labels[second]], axis=1))
    return out


def multidigits_splits(options: BuildOptions | None = None) -> Splits:
    """The fixed train/val/test splits (independent of the run seed)."""
    pairs = _pairs()

    def dataset(split: str) -> PairDataset:
        images, labels = pairs[split]
        return PairDataset(torch.from_numpy(images), torch.from_numpy(labels[:, 0]), torch.from_numpy(labels[:, 1]))

    return Splits(dataset("train"), dataset("val"), dataset("test"))


def multidigits_tasks(options: BuildOptions | None = None) -> list[Task]:
    return [Task(name, nn.functional.cross_entropy, Accuracy) for name in TASKS]


def multidigits_model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    encoder = SmallConvEncoder(in_channels=1)
    side = CANVAS // 4
    return MultiTaskModel(encoder, {t.name: ClassifierHead(encoder.out_channels * side * side, 10) for t in tasks})


MULTIDIGITS = register_benchmark(
    Benchmark(
        name="multidigits",
        description="Two overlapping handwritten digits (scikit-learn digits), classify each: 2 tasks, CPU-sized",
        tasks=multidigits_tasks,
        splits=multidigits_splits,
        model=multidigits_model,
        defaults=TrainDefaults(epochs=6, batch_size=128, lr=1e-3, weight_decay=0.0, eval_batch_size=500),
    )
)
