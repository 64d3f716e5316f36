"""The one place a run's configuration is checked and completed.

:func:`resolve` expands method presets (``repmtl``), fills every ``None`` with the benchmark's
or the method's default (epochs, batch size, learning rate, weight decay, level, loss
transform, encoder, run name) and refuses every value that does not fit, with a message naming
the field, what it expects and what it got. The run and its single-task baselines are both
built from resolved configs, so ``config.json`` shows the values a run really used.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.benchmarks import Benchmark, BuildOptions
from repmtl.data import get_benchmark
from repmtl.hparams import validate
from repmtl.nets.architectures import check_architecture
from repmtl.nets.backbones import check_encoder, is_external
from repmtl.train.config import TrainConfig
from repmtl.train.presets import resolve_presets
from repmtl.train.runfolder import check_run_name, default_run_name

#: the folder under ``--out`` where presets keep derived data (so a run writes nothing outside ``--out``)
CACHE_FOLDER = ".cache"


def build_options(config: TrainConfig) -> BuildOptions:
    """The benchmark build options of a config (the run and its baselines use the same)."""
    return BuildOptions(
        data_root=Path(config.data_root) if config.data_root else None,
        encoder=config.encoder,
        seed=config.seed,
        pretrained=Path(config.pretrained) if config.pretrained else None,
        extra=dict(config.options),
        cache_root=Path(config.out) / CACHE_FOLDER,
    )


def resolve(config: TrainConfig) -> TrainConfig:
    """A complete, checked copy of ``config`` (idempotent). Raises ``ValueError``/``KeyError``."""
    config = resolve_presets(config)
    bench = get_benchmark(config.benchmark)
    _check_numbers(config)
    _check_network(config, bench)
    bench.check_options(config.options)
    architecture_args = _check_architecture(config, bench)
    task_names = [t.name for t in bench.tasks(build_options(config))]
    if config.single_task is not None and config.single_task not in task_names:
        raise KeyError(f"unknown task {config.single_task!r} for {bench.name}; tasks: {task_names}")

    method = M.create(config.method, tasks=task_names, **config.method_args)
    # a loss weighting takes no task gradients: it has no level (a given one is still checked)
    level = method.resolve_level(config.level) if method.consumes != "losses" else config.level
    if level is not None:
        method.resolve_level(level)
    if config.freeze_encoder and level != "representation" and not isinstance(method, M.LossWeighting):
        raise ValueError(
            f"--freeze-encoder leaves no shared parameter to train, so method {method.name!r} at level {level!r} "
            "has no gradient to weigh: use --level representation (its gradients w.r.t. Z) or a loss weighting"
        )
    if config.regularizer:
        R.create(config.regularizer, **config.regularizer_args)
    if config.loss_transform not in (None, "none", "log"):
        raise ValueError(f"loss_transform must be 'none' or 'log', got {config.loss_transform!r}")

    name = check_run_name(config.name) if config.name is not None else default_run_name(config)
    defaults = bench.defaults
    return replace(
        config,
        name=name,
        epochs=config.epochs if config.epochs is not None else defaults.epochs,
        batch_size=config.batch_size if config.batch_size is not None else defaults.batch_size,
        lr=config.lr if config.lr is not None else defaults.lr,
        weight_decay=config.weight_decay if config.weight_decay is not None else defaults.weight_decay,
        level=level,
        loss_transform=config.loss_transform or method.loss_transform.transform,
        encoder=config.encoder or (bench.encoders[0] if bench.encoders else None),
        method_args=validate(f"method {method.name!r}", type(method), config.method_args),
        architecture_args=architecture_args,
    )


def _check_architecture(config: TrainConfig, bench: Benchmark) -> dict[str, object]:
    """The architecture's arguments, checked (the encoder itself is checked when it is built)."""
    if bench.multi_input and config.architecture != "hps":
        raise ValueError(
            f"architecture {config.architecture!r} needs one batch shared by every task; benchmark "
            f"{bench.name!r} is multi-input (one batch per task): use --architecture hps"
        )
    given = dict(config.architecture_args)
    resolved = check_architecture(config.architecture, given)
    return {k: v for k, v in resolved.items() if k in given}


def _check_numbers(config: TrainConfig) -> None:
    def need(ok: bool, field: str, expects: str, value: object) -> None:
        if not ok:
            raise ValueError(f"{field} expects {expects}, got {value!r}")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    need(is_int(config.seed) and config.seed >= 0, "seed", "an integer ≥ 0", config.seed)
    for field in ("epochs", "batch_size", "max_steps", "diagnostics_every"):
        value = getattr(config, field)
        need(value is None or (is_int(value) and value >= 1), field, "an integer ≥ 1", value)
    need(config.lr is None or (is_num(config.lr) and config.lr > 0), "lr", "a finite number > 0", config.lr)
    need(config.weight_decay is None or (is_num(config.weight_decay) and config.weight_decay >= 0),
         "weight_decay", "a finite number ≥ 0", config.weight_decay)
    need(is_int(config.log_every) and config.log_every >= 1, "log_every", "an integer ≥ 1", config.log_every)
    need(is_int(config.num_workers) and config.num_workers >= 0, "num_workers", "an integer ≥ 0", config.num_workers)
    need(config.precision in ("fp32", "bf16"), "precision", "fp32 or bf16", config.precision)
    need(is_int(config.max_bad_steps) and config.max_bad_steps >= 1, "max_bad_steps", "an integer ≥ 1",
         config.max_bad_steps)
    need(config.diagnostics_level in ("auto", "representation"), "diagnostics level", "auto or representation",
         config.diagnostics_level)
    try:
        device = torch.device(config.device)
    except RuntimeError as exc:
        raise ValueError(f"device expects cpu, cuda or cuda:N, got {config.device!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} asked for, but this machine has no CUDA device")


def _check_network(config: TrainConfig, bench: Benchmark) -> None:
    if bench.needs_data_root and not config.data_root:
        raise ValueError(f"benchmark {bench.name!r} needs --data-root (a folder of its preprocessed data)")
    if config.data_root and not Path(config.data_root).is_dir():
        raise FileNotFoundError(f"data root {config.data_root} is not a folder")
    if config.encoder and not bench.encoders:
        raise ValueError(f"benchmark {bench.name!r} has one fixed network; --encoder {config.encoder} does not apply")
    if is_external(config.encoder):
        if not bench.external_encoders:
            raise ValueError(f"benchmark {bench.name!r} takes no external backbone (timm:/clip:); "
                             f"its encoders: {list(bench.encoders)}")
        check_encoder(config.encoder)
    elif config.encoder and config.encoder not in bench.encoders:
        also = ", or timm:<model> / clip:<model>" if bench.external_encoders else ""
        raise ValueError(f"benchmark {bench.name!r} offers encoders {list(bench.encoders)}{also}, not {config.encoder!r}")
    if config.freeze_encoder and config.architecture != "hps":
        raise ValueError(f"--freeze-encoder freezes the shared encoder of hard sharing; architecture "
                         f"{config.architecture!r} builds its own shared modules: use --architecture hps")
    if config.pretrained and not bench.encoders:
        raise ValueError(f"benchmark {bench.name!r} has one fixed network; --pretrained does not apply")
    if config.pretrained and not Path(config.pretrained).is_file():
        raise FileNotFoundError(f"pretrained weights file {config.pretrained} does not exist")
