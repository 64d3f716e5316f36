"""Batches for single- and multi-input benchmarks, in an order fixed by (seed, epoch).

The shuffling generator of every epoch is seeded from the run seed and the epoch number, so
a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

Batch = tuple[Any, dict[str, torch.Tensor]]

#: ``(rank, world size)``: which share of every global batch a process loads
Shard = tuple[int, int]


class ShardedBatches(Sampler[list[int]]):
    """Rank ``r``'s contiguous chunk of every global batch of ``batches`` (sizes differ by at
    most one), so ``R`` ranks together see exactly the batches, in the order, of one process."""

    def __init__(self, batches: BatchSampler, shard: Shard) -> None:
        self.batches, (self.rank, self.world) = batches, shard

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            if len(batch) < self.world:
                raise ValueError(f"a global batch of {len(batch)} samples cannot be shared by {self.world} ranks; "
                                 "raise --batch-size (it is the global batch) or use fewer processes")
            yield torch.tensor_split(torch.tensor(batch), self.world)[self.rank].tolist()


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch * 7_919 + salt) % (2**63 - 1))
    return generator


def train_loader(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, num_workers: int, salt: int = 0, shard: Shard = (0, 1)
) -> DataLoader:
    """The epoch's shuffled batches of ``batch_size`` (the global batch); with ``shard``, this
    rank's part of each (:class:`ShardedBatches`), in the same order on every rank."""
    generator = epoch_generator(seed, epoch, salt)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=len(dataset) > batch_size)
    return DataLoader(
        dataset,
        batch_sampler=batches if shard[1] == 1 else ShardedBatches(batches, shard),
        num_workers=num_workers,
        generator=generator,
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


class MultiInputEpoch:
    """One epoch over per-task datasets: ``max_t len(loader_t)`` steps, each yielding
    ``({task: x_t}, {task: y_t})``; shorter tasks restart (with a fresh order) when exhausted."""

    def __init__(
        self, datasets: Mapping[str, Dataset], batch_size: int, seed: int, epoch: int, num_workers: int,
        shard: Shard = (0, 1),
    ) -> None:
        self.datasets = dict(datasets)
        self.batch_size, self.seed, self.epoch, self.num_workers = batch_size, seed, epoch, num_workers
        self.shard = shard
        self.loaders = {
            t: train_loader(ds, batch_size, seed, epoch, num_workers, salt=1000 * i, shard=shard)
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
                        salt=1000 * i + restarts[task], shard=self.shard,
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
