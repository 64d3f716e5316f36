"""``build_run(config)``: everything a run trains, built from its resolved config.

The multi-task run and each of its single-task baselines are built here, the same way: the
baselines differ only in the config (``single_task``, EW, no regularizer), never in how the
network, its pretrained weights or the optimizers are made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.benchmarks import Benchmark, BuildOptions, Splits
from repmtl.data import get_benchmark
from repmtl.nets.architectures import build_architecture
from repmtl.nets.frozen import FrozenEncoder
from repmtl.regularizers.base import Regularizer
from repmtl.tasks import Task
from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.optim import Optimizers, build_optimizers
from repmtl.train.resolve import build_options


@dataclass
class Run:
    """The parts of one run: data, network, method, regularizers and optimizers."""

    benchmark: Benchmark
    options: BuildOptions
    tasks: list[Task]
    splits: Splits
    #: a MultiTaskModel (hps) or a repmtl.nets.architectures.MultiTaskArchitecture
    model: torch.nn.Module
    method: M.Method
    regularizers: list[Regularizer]
    shared: list[torch.nn.Parameter]
    optimizers: Optimizers

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)


def build_run(config: TrainConfig) -> Run:
    """Build the run of a resolved ``config`` (``repmtl.train.resolve.resolve``), seeded first."""
    bench = get_benchmark(config.benchmark)
    device = torch.device(config.device)
    options = build_options(config)
    tasks = bench.tasks(options)
    if config.single_task:
        tasks = [t for t in tasks if t.name == config.single_task]
    names = tuple(t.name for t in tasks)

    ckpt.seed_everything(config.seed)
    splits = bench.splits(options)
    model = bench.model(options, tasks)
    if config.freeze_encoder:
        model.encoder = FrozenEncoder(model.encoder)
    if not config.single_task:  # single-task baselines stay hard-sharing nets with one head
        model = build_architecture(
            config.architecture, model, reinit=options.pretrained is None, **config.architecture_args
        )
    model = model.to(device)
    if config.single_task:
        method = M.create("ew", tasks=names).to(device)
        regularizers: list[Regularizer] = []
    else:
        method = M.create(config.method, tasks=names, **config.method_args).to(device)
        regularizers = [R.create(config.regularizer, **config.regularizer_args).to(device)] if config.regularizer else []
    shared = list(model.shared_parameters())
    regularizer_params = [p for r in regularizers for p in r.parameters()]
    optimizers = build_optimizers(model, shared, method, regularizer_params, bench.defaults, config.lr, config.weight_decay)
    return Run(bench, options, tasks, splits, model, method, regularizers, shared, optimizers)
