"""Tiny benchmarks registered for tests: two classification tasks on 8-d vectors, one with a
shared input (``tiny``) and one with a batch per task (``tiny-multi``). A run takes well under
a second, so tests can train every method through the trainer."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
    registered,
)
from repmtl.metrics.classification import Accuracy
from repmtl.model import MultiTaskModel
from repmtl.tasks import Task

TASKS = ("a", "b")
SIZES = {"train": 48, "val": 16, "test": 16}


class _Pairs(Dataset):
    def __init__(self, x: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor) -> None:
        self.x, self.ya, self.yb = x, ya, yb

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], {"a": self.ya[i], "b": self.yb[i]}


def _data(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(list(SIZES).index(split))
    x = torch.randn(SIZES[split], 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long(), (x[:, 2] + x[:, 3] > 0).long()


def _splits(options: BuildOptions) -> Splits:
    return Splits(*(_Pairs(*_data(s)) for s in SIZES))


def _multi_splits(options: BuildOptions) -> Splits:
    def split(name: str) -> dict[str, Dataset]:
        x, ya, yb = _data(name)
        return {"a": TensorDataset(x, ya), "b": TensorDataset(x[: len(x) // 2 + 3], yb[: len(x) // 2 + 3])}

    return Splits(*(split(s) for s in SIZES))


def _tasks(options: BuildOptions) -> list[Task]:
    return [Task(name, nn.functional.cross_entropy, Accuracy) for name in TASKS]


def _model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6), nn.ReLU())
    classes = {"a": 3, "b": 2}
    return MultiTaskModel(encoder, {t.name: nn.Linear(6, classes[t.name]) for t in tasks})


def register() -> None:
    if "tiny" in registered():
        return
    defaults = TrainDefaults(epochs=2, batch_size=16, lr=1e-2)
    register_benchmark(Benchmark("tiny", "test benchmark", _tasks, _splits, _model, defaults))
    register_benchmark(Benchmark("tiny-multi", "test benchmark, a batch per task", _tasks, _multi_splits, _model,
                                 TrainDefaults(epochs=2, batch_size=8, lr=1e-2), multi_input=True))
    register_benchmark(Benchmark("tiny-paper", "test benchmark that expects ImageNet weights", _tasks, _splits,
                                 _model, defaults, encoders=("mlp",), expects_pretrained=True))


register()
