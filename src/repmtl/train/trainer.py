"""The trainer: epochs of ``repmtl.backward`` steps, evaluation, model selection on the
validation split, atomic checkpoints and exact resumption (``docs/architecture.md``, "Training")."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from repmtl import logkeys as K
from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.benchmarks import Benchmark
from repmtl.data import get_benchmark
from repmtl.diagnostics import layer_alphas, step_diagnostics
from repmtl.metrics.improvement import delta_p
from repmtl.step import BackwardRecord, backward
from repmtl.tasks import Task
from repmtl.train import checkpoint as ckpt
from repmtl.train.config import TrainConfig
from repmtl.train.console import epoch_progress, print_epoch
from repmtl.train.data import MultiInputEpoch, eval_loader, to_device, train_loader
from repmtl.train.interrupt import StopFlag, TrainingInterrupted, stop_on_signals
from repmtl.train.optim import build_optimizers
from repmtl.train.resolve import build_options, resolve
from repmtl.train.runfolder import check_writable, clear_run, plan_start
from repmtl.train.runlog import RunLogger, environment, name_vectors, write_json_atomic

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
    ``Δp_task`` on validation against them, otherwise by the mean signed relative change of each
    task's primary metric against the first epoch.
    """

    def __init__(self, config: TrainConfig, baseline_val: Scores | None = None, console: Console | None = None) -> None:
        config = resolve(config)
        self.config = config
        self.console = console or Console(stderr=True)
        self.benchmark: Benchmark = get_benchmark(config.benchmark)
        self.baseline_val = baseline_val
        self.device = torch.device(config.device)
        self.run_dir = config.run_dir()
        self.options = build_options(config)
        bench = self.benchmark
        self.epochs, self.batch_size = config.epochs, config.batch_size
        self.eval_batch_size = bench.defaults.eval_batch_size or self.batch_size

        tasks = bench.tasks(self.options)
        if config.single_task:
            tasks = [t for t in tasks if t.name == config.single_task]
        self.tasks: list[Task] = tasks
        self.task_names = tuple(t.name for t in tasks)

        ckpt.seed_everything(config.seed)
        self.splits = bench.splits(self.options)
        self.model = bench.model(self.options, tasks).to(self.device)
        method_name = "ew" if config.single_task else config.method
        method_args = {} if config.single_task else config.method_args
        self.method = M.create(method_name, tasks=self.task_names, **method_args).to(self.device)
        self.level = config.level
        self.regularizers = [] if (config.single_task or not config.regularizer) else [
            R.create(config.regularizer, **config.regularizer_args).to(self.device)
        ]
        self.shared = [p for p in self.model.shared_parameters()]
        regularizer_params = [p for r in self.regularizers for p in r.parameters()]
        self.optimizers = build_optimizers(self.model, self.shared, self.method, regularizer_params,
                                           bench.defaults, config.lr, config.weight_decay)
        self.epoch = 0  # epochs completed
        self.step = 0
        self.best_score = -float("inf")
        self.best_epoch = -1  # 1-based epoch of best.pt
        self.reference_val: Scores | None = None
        #: where an interrupted epoch stopped: batches done and the epoch's running sums
        self._position: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None

    # ---- the public entry point ------------------------------------------------------------

    def fit(self, resume: bool = False, overwrite: bool = False) -> RunResult:
        plan = plan_start(self.run_dir, resume=resume, overwrite=overwrite)
        if plan.note:
            self.console.print(f"[yellow]{plan.note}[/]")
        check_writable(self.run_dir)
        stale = ckpt.remove_stale_temporaries(self.run_dir / "checkpoints")
        if stale:
            self.console.print(f"removed {len(stale)} temporary file(s) of an interrupted checkpoint write")
        if plan.action == "resume":
            self._restore(ckpt.load(self.run_dir / "checkpoints" / "last.pt", self.device))
        else:
            clear_run(self.run_dir)
            self._warn_random_init()
        resolved = {**self.config.to_dict(), "tasks": list(self.task_names)}
        (self.run_dir / "config.json").write_text(json.dumps(resolved, indent=2))
        (self.run_dir / "environment.json").write_text(json.dumps(environment(), indent=2, default=str))
        logger = RunLogger(self.run_dir, resume=(self.epoch, self.step) if plan.action == "resume" else None)
        try:
            with stop_on_signals() as stop:
                while self.epoch < self.epochs:
                    self._run_epoch(logger, stop)
        finally:
            logger.close()
        return self._finish()

    def _run_epoch(self, logger: RunLogger, stop: StopFlag) -> None:
        number = self.epoch + 1  # epochs are counted from 1 wherever a person reads them
        train_stats = self._train_epoch(logger, stop)
        val = self.evaluate("val")
        score = self._selection_score(val)
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, number
            ckpt.assert_finite_parameters(self.model)
            ckpt.save_atomic(
                {"model": self.model.state_dict(), "epoch": number, "val": val},
                self.run_dir / "checkpoints" / "best.pt",
            )
        row = {**train_stats, **K.val_metrics(val), K.SELECTION_SCORE.key(): score, K.LR.key(): self.optimizers.lr}
        if self.config.diagnostics_every:
            row.update(layer_alphas(self.model))
        logger.log_epoch(number, self.step, row)
        print_epoch(self.console, self.run_dir.name, number, self.epochs, val, score, improved)
        self.method.end_epoch()
        self.optimizers.end_epoch()
        self.epoch += 1
        self._save_last()

    # ---- training ------------------------------------------------------------------------

    def _batches(self):
        cfg = self.config
        if self.benchmark.multi_input:
            train = {t: self.splits.train[t] for t in self.task_names}
            return MultiInputEpoch(train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers)
        return train_loader(self.splits.train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers)

    def _train_epoch(self, logger: RunLogger, stop: StopFlag) -> dict[str, Any]:
        self.model.train()
        batches = self._batches()
        total = len(batches) if self.config.max_steps is None else min(len(batches), self.config.max_steps)
        position = self._position or {
            "batch": 0,
            "loss_sum": torch.zeros(len(self.task_names), device=self.device, dtype=torch.float64),
            "penalty_sum": {},
        }
        self._position = position
        started = time.perf_counter()
        iterator = iter(batches)
        for _ in range(position["batch"]):  # a resumed epoch: the same order, the same batches skipped
            next(iterator)
        if self._pending_rng is not None:
            ckpt.set_rng_state(self._pending_rng)  # after the skipped batches drew their augmentations
            self._pending_rng = None
        description = f"epoch {self.epoch + 1}/{self.epochs}"
        with epoch_progress(self.console, description, total, position["batch"], self.config.progress) as advance:
            while position["batch"] < total:
                if stop.requested:
                    self._save_last()
                    raise TrainingInterrupted(stop.signal_name, self.run_dir, self.epoch + 1, self.step)
                batch = next(iterator)
                every = self.config.diagnostics_every
                diagnose = every is not None and (self.step + 1) % every == 0
                record = self._train_step(to_device(batch, self.device), keep_saliency=diagnose)
                position["loss_sum"] += record.losses.to(torch.float64)
                for name, value in record.penalties.items():
                    position["penalty_sum"][name] = position["penalty_sum"].get(name, 0) + value.to(torch.float64)
                self.step += 1
                position["batch"] += 1
                loss = None
                if diagnose or self.step % self.config.log_every == 0:
                    values = self._step_values(record)
                    if diagnose:
                        values.update(step_diagnostics(record, level=self.config.diagnostics_level))
                    row = logger.log_step(self.step, self.epoch + 1, values)
                    loss = sum(row[K.LOSS.key(t)] for t in self.task_names)
                advance(loss)
        stats: dict[str, Any] = {
            K.TRAIN_LOSS.key(t): position["loss_sum"][i] / total for i, t in enumerate(self.task_names)
        }
        stats.update({K.TRAIN_PENALTY.key(k): v / total for k, v in position["penalty_sum"].items()})
        stats[K.EPOCH_TIME.key()] = time.perf_counter() - started
        self._position = None
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
        values: dict[str, Any] = {K.LOSS.key(t): record.losses[i] for i, t in enumerate(record.tasks)}
        if record.weights is not None:
            values.update({K.WEIGHT.key(t): record.weights[i] for i, t in enumerate(record.tasks)})
        values.update({K.PENALTY.key(k): v for k, v in record.penalties.items()})
        info = {K.INFO.key(k): v for k, v in record.info.items() if isinstance(v, (int, float, torch.Tensor))}
        values.update(name_vectors(info, record.tasks))
        values[K.LR.key()] = self.optimizers.lr
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
            "position": self._position,
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
        self._position = state.get("position")
        if self._position is None:
            ckpt.set_rng_state(state["rng"])
        else:  # set once the interrupted epoch's finished batches are skipped again
            self._pending_rng = state["rng"]
        where = f"epoch {self.epoch + 1}, batch {self._position['batch']}" if self._position else f"epoch {self.epoch}"
        self.console.print(f"resuming {self.run_dir} after {where} (step {self.step})")

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
        write_json_atomic(self.run_dir / "results.json", result.to_dict())
        return result

    def _warn_random_init(self) -> None:
        bench, config = self.benchmark, self.config
        if bench.expects_pretrained and not config.pretrained and not config.single_task:
            self.console.print(
                f"[yellow]warning:[/] {bench.name} trains its {config.encoder} encoder from random initialisation; "
                "the published numbers start from ImageNet weights (pass --pretrained FILE, a local state dict)"
            )


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
