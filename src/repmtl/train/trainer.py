"""The trainer: epochs of ``repmtl.backward`` steps, evaluation, model selection on the
validation split, atomic checkpoints and exact resumption (DESIGN.md "Contracts")."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.backward import BackwardRecord, backward
from repmtl.diagnostics import layer_alphas, step_diagnostics
from repmtl.experiments.benchmarks import Benchmark, BuildOptions, get_benchmark
from repmtl.metrics.improvement import delta_p
from repmtl.tasks import Task
from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.data import MultiInputEpoch, eval_loader, to_device, train_loader
from repmtl.train.optim import build_optimizers
from repmtl.train.runlog import RunLogger, environment

log = logging.getLogger(__name__)
Scores = dict[str, dict[str, float]]

#: config fields that may change between a run and its resumption
RESUMABLE_CHANGES = {"epochs", "device", "progress", "num_workers", "log_every", "out"}


@dataclass
class RunResult:
    """The outcome of one run: metrics of the epoch selected on validation, on val and test."""

    run_dir: Path
    config: TrainConfig
    tasks: tuple[str, ...]
    best_epoch: int
    val: Scores
    test: Scores
    lower_is_better: dict[str, dict[str, bool]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "config": self.config.to_dict(),
            "tasks": list(self.tasks),
            "best_epoch": self.best_epoch,
            "val": self.val,
            "test": self.test,
            "lower_is_better": self.lower_is_better,
        }

    @classmethod
    def load(cls, run_dir: Path) -> RunResult:
        data = json.loads((Path(run_dir) / "results.json").read_text())
        return cls(
            run_dir=Path(run_dir),
            config=TrainConfig.from_dict(data["config"]),
            tasks=tuple(data["tasks"]),
            best_epoch=data["best_epoch"],
            val=data["val"],
            test=data["test"],
            lower_is_better=data["lower_is_better"],
        )


class Trainer:
    """Builds a run from its config and trains it.

    ``baseline_val``: single-task validation scores; when given, the epoch is selected by
    ``Δp_task`` on validation against them (SPEC §5), otherwise by the mean signed relative
    change of each task's primary metric against the first epoch.
    """

    def __init__(self, config: TrainConfig, baseline_val: Scores | None = None, console: Console | None = None) -> None:
        from repmtl.experiments.presets import resolve_presets

        config = resolve_presets(config)
        self.config = config
        self.console = console or Console(stderr=True)
        self.benchmark: Benchmark = get_benchmark(config.benchmark)
        self.baseline_val = baseline_val
        self.device = torch.device(config.device)
        self.run_dir = config.run_dir()

        bench = self.benchmark
        if bench.needs_data_root and not config.data_root:
            raise ValueError(f"benchmark {bench.name!r} needs --data-root (a folder of its preprocessed data)")
        if config.encoder and bench.encoders and config.encoder not in bench.encoders:
            raise ValueError(f"benchmark {bench.name!r} offers encoders {list(bench.encoders)}, not {config.encoder!r}")
        self.options = BuildOptions(
            data_root=Path(config.data_root) if config.data_root else None,
            encoder=config.encoder,
            seed=config.seed,
            pretrained=Path(config.pretrained) if config.pretrained else None,
            extra=dict(config.options),
        )
        bench.check_options(config.options)
        defaults = bench.defaults
        self.epochs = config.epochs if config.epochs is not None else defaults.epochs
        self.batch_size = config.batch_size or defaults.batch_size
        self.eval_batch_size = defaults.eval_batch_size or self.batch_size
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be positive")
        if config.max_steps is not None and config.max_steps < 1:
            raise ValueError("max_steps must be positive")
        if config.diagnostics_every is not None and config.diagnostics_every < 1:
            raise ValueError("diagnostics every=N needs N ≥ 1")
        if config.diagnostics_level not in ("auto", "representation"):
            raise ValueError(f"diagnostics level must be auto or representation, got {config.diagnostics_level!r}")

        tasks = bench.tasks(self.options)
        if config.single_task:
            names = [t.name for t in tasks]
            if config.single_task not in names:
                raise KeyError(f"unknown task {config.single_task!r} for {bench.name}; tasks: {names}")
            tasks = [t for t in tasks if t.name == config.single_task]
        self.tasks: list[Task] = tasks
        self.task_names = tuple(t.name for t in tasks)

        ckpt.seed_everything(config.seed)
        self.splits = bench.splits(self.options)
        self.model = bench.model(self.options, tasks).to(self.device)
        method_name = "ew" if config.single_task else config.method
        method_args = {} if config.single_task else config.method_args
        self.method = M.create(method_name, tasks=self.task_names, **method_args).to(self.device)
        self.level = config.level or self.method.default_level
        self.method.check_level(self.level)
        self.regularizers = [] if (config.single_task or not config.regularizer) else [
            R.create(config.regularizer, **config.regularizer_args).to(self.device)
        ]
        lr = config.lr if config.lr is not None else defaults.lr
        weight_decay = config.weight_decay if config.weight_decay is not None else defaults.weight_decay
        self.shared = [p for p in self.model.shared_parameters()]
        regularizer_params = [p for r in self.regularizers for p in r.parameters()]
        self.optimizers = build_optimizers(self.model, self.shared, self.method, regularizer_params,
                                           defaults, lr, weight_decay)
        self.epoch = 0  # epochs completed
        self.step = 0
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.reference_val: Scores | None = None

    # ---- the public entry point ------------------------------------------------------------

    def fit(self, resume: bool = False, overwrite: bool = False) -> RunResult:
        last = self.run_dir / "checkpoints" / "last.pt"
        resumed = False
        if last.exists():
            if resume:
                self._restore(ckpt.load(last, self.device))
                resumed = True
            elif not overwrite:
                raise FileExistsError(
                    f"{self.run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                    "start again, or --name for a new folder"
                )
        elif resume:
            self.console.print(f"[yellow]nothing to resume in {self.run_dir}; starting a new run[/]")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**self.config.to_dict(), "tasks": list(self.task_names)}
        (self.run_dir / "config.json").write_text(json.dumps(resolved, indent=2))
        (self.run_dir / "environment.json").write_text(json.dumps(environment(), indent=2, default=str))
        logger = RunLogger(self.run_dir, resume=(self.epoch - 1, self.step) if resumed else None)
        try:
            while self.epoch < self.epochs:
                train_stats = self._train_epoch(logger)
                val = self.evaluate("val")
                score = self._selection_score(val)
                improved = score > self.best_score
                if improved:
                    self.best_score, self.best_epoch = score, self.epoch
                    ckpt.assert_finite_parameters(self.model)
                    ckpt.save_atomic(
                        {"model": self.model.state_dict(), "epoch": self.epoch, "val": val},
                        self.run_dir / "checkpoints" / "best.pt",
                    )
                row = {**train_stats, **_flatten("val", val), "selection_score": score, "lr": self.optimizers.lr}
                if self.config.diagnostics_every:
                    row.update(layer_alphas(self.model))
                logger.log_epoch(self.epoch, self.step, row)
                self._print_epoch(val, score, improved)
                self.method.end_epoch()
                self.optimizers.end_epoch()
                self.epoch += 1
                self._save_last()
        finally:
            logger.close()
        return self._finish()

    # ---- training ------------------------------------------------------------------------

    def _batches(self):
        cfg = self.config
        if self.benchmark.multi_input:
            train = {t: self.splits.train[t] for t in self.task_names}
            return MultiInputEpoch(train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers)
        return train_loader(self.splits.train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers)

    def _train_epoch(self, logger: RunLogger) -> dict[str, torch.Tensor]:
        self.model.train()
        batches = self._batches()
        total = len(batches) if self.config.max_steps is None else min(len(batches), self.config.max_steps)
        loss_sum = torch.zeros(len(self.task_names), device=self.device, dtype=torch.float64)
        penalty_sum: dict[str, torch.Tensor] = {}
        started = time.perf_counter()
        with self._progress(f"epoch {self.epoch + 1}/{self.epochs}", total) as advance:
            for index, batch in enumerate(batches):
                if index >= total:
                    break
                every = self.config.diagnostics_every
                diagnose = every is not None and (self.step + 1) % every == 0
                record = self._train_step(to_device(batch, self.device), keep_saliency=diagnose)
                loss_sum += record.losses.to(torch.float64)
                for name, value in record.penalties.items():
                    penalty_sum[name] = penalty_sum.get(name, 0) + value.to(torch.float64)
                self.step += 1
                if diagnose or self.step % self.config.log_every == 0:
                    values = self._step_values(record)
                    if diagnose:
                        values.update(step_diagnostics(record, level=self.config.diagnostics_level))
                    logger.log_step(self.step, self.epoch, values)
                advance()
        stats: dict[str, Any] = {f"train/loss/{t}": loss_sum[i] / total for i, t in enumerate(self.task_names)}
        stats.update({f"train/penalty/{k}": v / total for k, v in penalty_sum.items()})
        stats["time/epoch_s"] = time.perf_counter() - started
        return stats

    def _train_step(self, batch, keep_saliency: bool = False) -> BackwardRecord:
        inputs, targets = batch
        output = self.model(inputs)
        losses = {}
        for task in self.tasks:
            losses[task.name] = task.loss(output.predictions[task.name], targets[task.name])
        self.optimizers.zero_grad()
        record = backward(
            losses,
            representation=output.representation,
            shared_params=self.shared,
            method=self.method,
            level=self.level,
            regularizers=self.regularizers,
            loss_transform=self.config.loss_transform,
            keep_saliency=keep_saliency,
        )
        self._check_gradients()
        self.optimizers.step()
        return record

    def _check_gradients(self) -> None:
        """Never let a non-finite gradient reach the weights (one host sync)."""
        grads = [p.grad for p in self.optimizers.parameters() if p.grad is not None]
        if not grads:
            raise RuntimeError("no parameter received a gradient this step")
        norms = torch.stack(torch._foreach_norm(grads))
        if not bool(torch.isfinite(norms).all()):
            raise FloatingPointError(
                f"non-finite gradient at step {self.step}; the weights were not updated and "
                f"{self.run_dir / 'checkpoints' / 'last.pt'} holds the last good state"
            )

    def _step_values(self, record: BackwardRecord) -> dict[str, Any]:
        values: dict[str, Any] = {f"loss/{t}": record.losses[i] for i, t in enumerate(record.tasks)}
        if record.weights is not None:
            values.update({f"weight/{t}": record.weights[i] for i, t in enumerate(record.tasks)})
        values.update({f"penalty/{k}": v for k, v in record.penalties.items()})
        values.update({f"info/{k}": v for k, v in record.info.items() if isinstance(v, (int, float, torch.Tensor))})
        values["lr"] = self.optimizers.lr
        return values

    # ---- evaluation and selection ---------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str) -> Scores:
        """Metrics of every task on ``split`` ("val" or "test")."""
        self.model.eval()
        data = getattr(self.splits, split)
        metrics = {t.name: t.metrics() for t in self.tasks}
        if self.benchmark.multi_input:
            for task in self.tasks:
                for x, y in eval_loader(data[task.name], self.eval_batch_size, self.config.num_workers):
                    out = self.model({task.name: x.to(self.device)})
                    metrics[task.name].update(out.predictions[task.name], y.to(self.device))
        else:
            for x, targets in eval_loader(data, self.eval_batch_size, self.config.num_workers):
                out = self.model(to_device(x, self.device))
                for task in self.tasks:
                    metrics[task.name].update(out.predictions[task.name], targets[task.name].to(self.device))
        return {t: m.compute() for t, m in metrics.items()}

    def _selection_score(self, val: Scores) -> float:
        directions = {t.name: t.lower_is_better for t in self.tasks}
        if len(self.tasks) == 1:
            task = self.tasks[0]
            value = val[task.name][task.primary]
            return -value if task.lower_is_better[task.primary] else value
        if self.baseline_val is not None:
            return delta_p(val, {t: self.baseline_val[t] for t in self.task_names}, directions).task
        if self.reference_val is None:
            self.reference_val = val
        primary = {t.name: {t.primary: self.reference_val[t.name][t.primary]} for t in self.tasks}
        return delta_p(val, primary, directions).task

    # ---- checkpoints -----------------------------------------------------------------------

    def _save_last(self) -> None:
        ckpt.assert_finite_parameters(self.model)
        state = {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizers": self.optimizers.state_dict(),
            "method": self.method.state_dict(),
            "regularizers": [r.state_dict() for r in self.regularizers],
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "reference_val": self.reference_val,
            "rng": ckpt.rng_state(),
        }
        ckpt.save_atomic(state, self.run_dir / "checkpoints" / "last.pt")

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state["config"]
        current = self.config.to_dict()
        changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
        if changed:
            raise ValueError(
                f"cannot resume {self.run_dir}: the configuration differs in {changed} "
                f"(saved: {[saved.get(k) for k in changed]}, now: {[current[k] for k in changed]})"
            )
        self.model.load_state_dict(state["model"])
        self.optimizers.load_state_dict(state["optimizers"])
        self.method.load_state_dict(state["method"])
        for reg, reg_state in zip(self.regularizers, state["regularizers"], strict=True):
            reg.load_state_dict(reg_state)
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.reference_val = state["reference_val"]
        ckpt.set_rng_state(state["rng"])
        self.console.print(f"resuming {self.run_dir} after epoch {self.epoch} (step {self.step})")

    def _finish(self) -> RunResult:
        best = ckpt.load(self.run_dir / "checkpoints" / "best.pt", self.device)
        self.model.load_state_dict(best["model"])
        result = RunResult(
            run_dir=self.run_dir,
            config=self.config,
            tasks=self.task_names,
            best_epoch=best["epoch"],
            val=best["val"],
            test=self.evaluate("test"),
            lower_is_better={t.name: dict(t.lower_is_better) for t in self.tasks},
        )
        (self.run_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2))
        return result

    # ---- console ---------------------------------------------------------------------------

    def _progress(self, description: str, total: int):
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
            disable=not self.config.progress,
        )
        return _ProgressContext(progress, description, total)

    def _print_epoch(self, val: Scores, score: float, improved: bool) -> None:
        summary = "  ".join(f"{t}/{m}={v:.4g}" for t, ms in val.items() for m, v in ms.items())
        mark = " *" if improved else ""
        self.console.print(f"{escape('[' + self.run_dir.name + ']')} epoch {self.epoch + 1}/{self.epochs}  val {summary}  score {score:.3f}{mark}")


class _ProgressContext:
    def __init__(self, progress: Progress, description: str, total: int) -> None:
        self.progress, self.description, self.total = progress, description, total

    def __enter__(self):
        self.progress.start()
        task = self.progress.add_task(self.description, total=self.total)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _flatten(prefix: str, scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f"{prefix}/{t}/{m}": v for t, ms in scores.items() for m, v in ms.items()}


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, baseline_val: Scores | None = None,
          console: Console | None = None) -> RunResult:
    """Train one run (multi-task, or single-task when ``config.single_task`` is set)."""
    return Trainer(config, baseline_val=baseline_val, console=console).fit(resume=resume, overwrite=overwrite)


def single_task_config(config: TrainConfig, task: str) -> TrainConfig:
    """The STL baseline of ``config``'s budget for ``task`` (cached by budget)."""
    return replace(
        config,
        single_task=task,
        method="ew",
        method_args={},
        level=None,
        regularizer=None,
        regularizer_args={},
        loss_transform=None,
        diagnostics_every=None,
        name=f"stl-{task}-{config.budget_key()}",
    )
