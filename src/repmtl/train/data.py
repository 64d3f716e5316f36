"""Batches for single- and multi-input benchmarks, in an order fixed by (seed, epoch).

The shuffling generator of every epoch is seeded from the run seed and the epoch number, so
a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

Batch = tuple[Any, dict[str, torch.Tensor]]


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch * 7_919 + salt) % (2**63 - 1))
    return generator


def train_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, num_workers: int, salt: int = 0) -> DataLoader:
    generator = epoch_generator(seed, epoch, salt)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=RandomSampler(dataset, generator=generator),
        num_workers=num_workers,
        drop_last=len(dataset) > batch_size,
        generator=generator,
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


class MultiInputEpoch:
    """One epoch over per-task datasets: ``max_t len(loader_t)`` steps, each yielding
    ``({task: x_t}, {task: y_t})``; shorter tasks restart (with a fresh order) when exhausted."""

    def __init__(
        self, datasets: Mapping[str, Dataset], batch_size: int, seed: int, epoch: int, num_workers: int
    ) -> None:
        self.datasets = dict(datasets)
        self.batch_size, self.seed, self.epoch, self.num_workers = batch_size, seed, epoch, num_workers
        self.loaders = {
            t: train_loader(ds, batch_size, seed, epoch, num_workers, salt=1000 * i)
            for i, (t, ds) in enumerate(self.datasets.items())
        }

    def __len__(self) -> int:
        return max(len(loader) for loader in self.loaders.values())

    def __iter__(self) -> Iterator[Batch]:
        iterators = {t: iter(loader) for t, loader in self.loaders.items()}
        restarts = dict.fromkeys(self.loaders, 0)
        for _ in range(len(self)):
            inputs, targets = {}, {}
            for i, task in enumerate(self.loaders):
                try:
                    x, y = next(iterators[task])
                except StopIteration:
                    restarts[task] += 1
                    loader = train_loader(
                        self.datasets[task], self.batch_size, self.seed, self.epoch, self.num_workers,
                        salt=1000 * i + restarts[task],
                    )
                    iterators[task] = iter(loader)
                    x, y = next(iterators[task])
                inputs[task], targets[task] = x, y
            yield inputs, targets


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value
