"""What the distributed tests run in each spawned rank (gloo, CPU), and the single-process
reference they are compared with: a few SGD steps of ``repmtl.backward`` on a small MLP."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.model import MultiTaskModel
from repmtl.regularizers.base import Penalty, Regularizer
from repmtl.step import backward
from repmtl.step.reduce import Reducer


@dataclass(frozen=True)
class Case:
    """One method at one level, trained ``steps`` SGD steps on global batches of ``batch``."""

    method: str
    level: str | None = None
    method_args: dict[str, Any] = field(default_factory=dict)
    regularizer: str | None = None
    loss_transform: str | None = None
    batch: int = 16
    steps: int = 3
    tasks: int = 2
    multi_input: bool = False


def model(tasks: int, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 6), nn.Tanh())
    return MultiTaskModel(encoder, {f"t{i}": nn.Linear(6, 2 + i % 3) for i in range(tasks)})


def data(case: Case, step: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The global batch of ``step`` (inputs and targets per task)."""
    g = torch.Generator().manual_seed(100 + step)
    xs, ys = {}, {}
    for i in range(case.tasks):
        n = case.batch + (3 * i if case.multi_input else 0)  # multi-input: batches of different sizes
        x = torch.randn(n, 8, generator=g) if case.multi_input or i == 0 else xs["t0"]
        xs[f"t{i}"], ys[f"t{i}"] = x, torch.randint(0, 2 + i % 3, (n,), generator=g)
    return xs, ys


class PerShard(Regularizer):
    """The single-process form of a penalty computed on each rank's local samples: the mean over
    ``shards`` contiguous chunks of the batch (what distributed Rep-MTL optimises)."""

    name = "per-shard-test"

    def __init__(self, inner, shards):  # unannotated: not a declared hyper-parameter
        super().__init__()
        self.inner, self.shards = inner, shards

    @property
    def needs_saliency(self) -> bool:  # type: ignore[override]
        return True

    def forward(self, saliency, losses, *, multi_input=False):
        parts = [self.inner(s, losses, multi_input=multi_input) for s in torch.tensor_split(saliency, self.shards, dim=1)]
        return [
            Penalty(first.name, torch.stack([p[i].value for p in parts]).mean(), first.weight, first.flow)
            for i, first in enumerate(parts[0])
        ]


def train(case: Case, rank: int = 0, world: int = 1, reference_shards: int = 1) -> dict[str, Any]:
    """Run ``case``; with ``world > 1`` this rank takes its contiguous chunk of each global batch."""
    net = model(case.tasks)
    names = tuple(net.heads)
    torch.manual_seed(7)  # the methods' random draws: the same stream on every rank
    method = M.create(case.method, tasks=names, **case.method_args)
    regs: list[Regularizer] = []
    if case.regularizer:
        inner = R.create(case.regularizer)
        regs = [PerShard(inner, reference_shards) if reference_shards > 1 else inner]
    params = list(net.parameters()) + list(method.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1)
    records = []
    for step in range(case.steps):
        xs, ys = data(case, step)
        if world > 1:
            xs = {t: torch.tensor_split(x, world)[rank] for t, x in xs.items()}
            ys = {t: torch.tensor_split(y, world)[rank] for t, y in ys.items()}
        out = net(xs if case.multi_input else xs["t0"])
        losses = {t: nn.functional.cross_entropy(out.predictions[t], ys[t]) for t in names}
        optimizer.zero_grad()
        reduce = None
        if world > 1:
            reduce = Reducer({t: len(y) for t, y in ys.items()})
        record = backward(losses, representation=out.representation, method=method, level=case.level,
                          regularizers=regs, loss_transform=case.loss_transform, reduce=reduce)
        if reduce is not None:
            reduce.gradients(params)
        optimizer.step()
        records.append({"losses": record.losses.clone(), "weights": record.weights})
    return {
        "params": [p.detach().clone() for p in net.parameters()],
        "method": method.state_dict(),
        "records": records,
    }


def worker(rank: int, world: int, init_file: str, cases: dict[str, Case], out: str) -> None:
    """One rank: every case in turn; results saved to ``out/rank<r>.pt``."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {name: train(case, rank, world) for name, case in cases.items()}
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(out) / f"rank{rank}.pt")


def trainer_worker(rank: int, world: int, port: int, configs: dict[str, Any], out: str) -> None:
    """One rank of ``repmtl train`` as ``torchrun`` starts it (the environment names the rank)."""
    from repmtl.train.config import TrainConfig
    from repmtl.train.trainer import Trainer
    from tests import _tiny  # noqa: F401  (registers the tiny benchmarks in the child)

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    finals = {}
    for name, config in configs.items():
        trainer = Trainer(TrainConfig(**config))
        result = trainer.fit()
        finals[name] = {"model": trainer.model.state_dict(), "test": result.test}
    torch.save(finals, Path(out) / f"trainer-rank{rank}.pt")
    dist.destroy_process_group()
