"""The trainer: epochs of ``repmtl.backward`` steps and evaluation, with exact resumption
(``docs/architecture.md``, "Training"). The run is built by ``build.py``, the epoch kept by
``selection.py``, checkpoints and results written by ``persistence.py``, progress shown by
``console.py``."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from rich.console import Console

from repmtl import logkeys as K
from repmtl.diagnostics import layer_alphas, step_diagnostics
from repmtl.nets.attention import attention_maps
from repmtl.step import BackwardRecord, backward
from repmtl.step.inputs import NonFiniteLoss
from repmtl.train import checkpoint as ckpt
from repmtl.train.build import build_run
from repmtl.train.config import TrainConfig
from repmtl.train.console import epoch_progress, print_epoch
from repmtl.train.data import MultiInputEpoch, eval_loader, to_device, train_loader
from repmtl.train.distributed import SilentLogger, ranks_from_env
from repmtl.train.faults import (
    BadSteps,
    SkippedStep,
    StateGuard,
    describe,
    nonfinite_gradients,
)
from repmtl.train.interrupt import StopFlag, TrainingInterrupted, stop_on_signals
from repmtl.train.persistence import (
    RunResult,
    load_best,
    restore_last,
    save_best,
    save_last,
    write_run_description,
)
from repmtl.train.resolve import resolve
from repmtl.train.runfolder import check_writable, clear_run, plan_start
from repmtl.train.runlog import RunLogger, name_vectors
from repmtl.train.selection import Scores, Selection

log = logging.getLogger(__name__)


class Trainer:
    """Trains the run of ``config`` (built by :func:`repmtl.train.build.build_run`).

    ``baseline_val``: single-task validation scores; the epoch is then selected by ``Δp_task``
    on validation against them (:mod:`repmtl.train.selection`).
    """

    def __init__(self, config: TrainConfig, baseline_val: Scores | None = None, console: Console | None = None) -> None:
        config = resolve(config)
        self.config = config
        #: this process among the run's processes (``torchrun``); rank 0 writes the run folder
        self.ranks = ranks_from_env(device=config.device)
        writer = self.ranks.is_writer
        self.console = console if (console is not None and writer) else Console(stderr=True, quiet=not writer)
        self.device = torch.device(config.device)
        self.run_dir = config.run_dir()
        self.run = build_run(config)
        self._guard = StateGuard(self.run)
        self._bad = BadSteps(config.max_bad_steps, self.run_dir)
        self.benchmark, self.tasks, self.task_names = self.run.benchmark, self.run.tasks, self.run.task_names
        self.model, self.method, self.optimizers = self.run.model, self.run.method, self.run.optimizers
        self.epochs, self.batch_size = config.epochs, config.batch_size
        self.eval_batch_size = self.benchmark.defaults.eval_batch_size or self.batch_size
        self.selection = Selection(self.tasks, baseline_val)
        self.epoch = 0  # epochs completed
        self.step = 0
        #: where an interrupted epoch stopped: batches done and the epoch's running sums
        self._position: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None

    # ---- the public entry point ------------------------------------------------------------

    def fit(self, resume: bool = False, overwrite: bool = False) -> RunResult:
        plan = plan_start(self.run_dir, resume=resume, overwrite=overwrite)
        if plan.note:
            self.console.print(f"[yellow]{plan.note}[/]")
        writer = self.ranks.is_writer
        self.ranks.barrier()  # every rank has read the folder's state before the writer changes it
        if writer:
            check_writable(self.run_dir)
            stale = ckpt.remove_stale_temporaries(self.run_dir / "checkpoints")
            if stale:
                self.console.print(f"removed {len(stale)} temporary file(s) of an interrupted checkpoint write")
            if plan.action != "resume":
                clear_run(self.run_dir)
        self.ranks.barrier()  # ... and has finished before any rank reads a checkpoint
        if plan.action == "resume":
            self._restore()
        else:
            self._warn_random_init()
        resumed = (self.epoch, self.step) if plan.action == "resume" else None
        if writer:
            write_run_description(self.run_dir, self.config, self.task_names)
        logger = RunLogger(self.run_dir, resume=resumed) if writer else SilentLogger()
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
        score = self.selection.score(val)
        improved = self.selection.consider(number, score)
        if improved and self.ranks.is_writer:
            save_best(self.run_dir, self.run, number, val)
        skipped = train_stats.pop("skipped")
        row = {**train_stats, **K.val_metrics(val), K.SELECTION_SCORE.key(): score, K.LR.key(): self.optimizers.lr,
               K.SKIPPED_STEPS.key(): skipped}
        if self.config.diagnostics_every:
            row.update(layer_alphas(self.model))
        logger.log_epoch(number, self.step, row)
        print_epoch(self.console, self.run_dir.name, number, self.epochs, val, score, improved)
        self.method.end_epoch()
        self.optimizers.end_epoch(score)
        self.epoch += 1
        self._save_last()

    # ---- training ------------------------------------------------------------------------

    def _batches(self):
        cfg = self.config
        shard = (self.ranks.rank, self.ranks.world_size)
        if self.benchmark.multi_input:
            train = {t: self.run.splits.train[t] for t in self.task_names}
            return MultiInputEpoch(train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers, shard=shard)
        return train_loader(self.run.splits.train, self.batch_size, cfg.seed, self.epoch, cfg.num_workers, shard=shard)

    def _train_epoch(self, logger: RunLogger, stop: StopFlag) -> dict[str, Any]:
        self.model.train()
        batches = self._batches()
        total = len(batches) if self.config.max_steps is None else min(len(batches), self.config.max_steps)
        position = self._position or {
            "batch": 0,
            "loss_sum": torch.zeros(len(self.task_names), device=self.device, dtype=torch.float64),
            "penalty_sum": {},
            "skipped": 0,
        }
        position.setdefault("skipped", 0)  # a checkpoint written before steps could be skipped
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
                if self.ranks.any(stop.requested):  # a signal may reach the ranks at different steps
                    self._save_last()
                    raise TrainingInterrupted(stop.signal_name or "SIGTERM", self.run_dir, self.epoch + 1, self.step)
                with self._own_randomness():
                    batch = next(iterator)
                every = self.config.diagnostics_every
                diagnose = every is not None and (self.step + 1) % every == 0
                log_now = diagnose or (self.step + 1) % self.config.log_every == 0
                record = self._train_step(to_device(batch, self.device), keep_saliency=diagnose, measure=log_now)
                if isinstance(record, SkippedStep):
                    self.step += 1
                    position["batch"] += 1
                    position["skipped"] += 1
                    self._log_skipped(logger, record)
                    advance(None)
                    continue
                self._bad.good()
                position["loss_sum"] += record.losses.to(torch.float64)
                for name, value in record.penalties.items():
                    position["penalty_sum"][name] = position["penalty_sum"].get(name, 0) + value.to(torch.float64)
                self.step += 1
                position["batch"] += 1
                loss = None
                if log_now:
                    values = self._step_values(record)
                    if diagnose:
                        values.update(step_diagnostics(record, level=self.config.diagnostics_level,
                                                       attention=attention_maps(self.model)))
                    row = logger.log_step(self.step, self.epoch + 1, values)
                    loss = sum(row[K.LOSS.key(t)] for t in self.task_names)
                advance(loss)
        good = max(total - position["skipped"], 1)
        stats: dict[str, Any] = {
            K.TRAIN_LOSS.key(t): position["loss_sum"][i] / good for i, t in enumerate(self.task_names)
        }
        stats.update({K.TRAIN_PENALTY.key(k): v / good for k, v in position["penalty_sum"].items()})
        stats["skipped"] = position["skipped"]
        stats[K.EPOCH_TIME.key()] = time.perf_counter() - started
        self._position = None
        return stats
    def _train_step(self, batch, keep_saliency: bool = False, measure: bool = False) -> BackwardRecord | SkippedStep:
        """One step; a non-finite loss or gradient skips it with no state changed
        (:mod:`repmtl.train.faults`). Under ``torchrun`` the method sees the global batch and
        the gradients are the ranks' mean (:mod:`repmtl.step.reduce`). ``measure``: a logged
        step, on which the penalties' gradient scale is measured."""
        inputs, targets = batch
        self._guard.save()
        with self._own_randomness(), self._autocast():
            output = self.model(inputs)
            losses = {}
            for task in self.tasks:
                losses[task.name] = task.loss(output.predictions[task.name], targets[task.name])
        self.optimizers.zero_grad()
        reduce = self.ranks.reducer({t: len(y) for t, y in targets.items() if t in losses})
        try:
            record = backward(
                losses,
                representation=output.representation,
                shared_params=self.run.shared,
                method=self.method,
                level=self.config.level,
                regularizers=self.run.regularizers,
                loss_transform=self.config.loss_transform,
                keep_saliency=keep_saliency,
                measure_penalties=measure and bool(self.run.regularizers),
                reduce=reduce,
            )
        except NonFiniteLoss as bad:
            self._guard.restore()
            return SkippedStep(bad.tasks)
        if reduce is not None:
            reduce.gradients(self.optimizers.parameters())
            record.penalties.update(self.ranks.mean(record.penalties))
        if nonfinite_gradients(self._named_parameters()):
            self._guard.restore()
            return SkippedStep(("gradient",))
        self.optimizers.step()
        self.ranks.average_buffers(self.model)
        return record

    def _named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [(names.get(id(p), "method/regularizer parameter"), p) for p in self.optimizers.parameters()]

    def _log_skipped(self, logger: RunLogger | SilentLogger, skipped: SkippedStep) -> None:
        logger.log_step(self.step, self.epoch + 1, {K.SKIPPED.key(c): 1.0 for c in skipped.causes})
        self.console.print(f"[yellow]step {self.step} skipped:[/] non-finite {describe(skipped.causes)}; nothing was updated "
                           f"({self._bad.consecutive + 1} in a row, the run stops at {self._bad.limit})")
        self._bad.record(self.step, skipped)

    def _autocast(self):
        """bf16 autocast for the forward and the losses (``--precision bf16``)."""
        if self.config.precision != "bf16":
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _own_randomness(self):
        return self.ranks.own_randomness(self.config.seed, self.epoch, self.step, [self.device])

    def _step_values(self, record: BackwardRecord) -> dict[str, Any]:
        values: dict[str, Any] = {K.LOSS.key(t): record.losses[i] for i, t in enumerate(record.tasks)}
        if record.weights is not None:
            values.update({K.WEIGHT.key(t): record.weights[i] for i, t in enumerate(record.tasks)})
        values.update({K.PENALTY.key(k): v for k, v in record.penalties.items()})
        values.update({K.PENALTY_SCALE.key(*k.split("/")): v for k, v in record.penalty_scale.items()})
        info = {K.INFO.key(k): v for k, v in record.info.items() if isinstance(v, (int, float, torch.Tensor))}
        values.update(name_vectors(info, record.tasks))
        values[K.LR.key()] = self.optimizers.lr
        return values

    # ---- evaluation and selection ---------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str) -> Scores:
        """Metrics of every task on ``split`` ("val" or "test")."""
        self.model.eval()
        data = getattr(self.run.splits, split)
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

    # ---- checkpoints -----------------------------------------------------------------------

    def _save_last(self) -> None:
        if not self.ranks.is_writer:
            return
        progress = {"epoch": self.epoch, "step": self.step, "position": self._position}
        save_last(self.run_dir, self.run, self.config, progress, self.selection)

    def _restore(self) -> None:
        state = restore_last(self.run_dir, self.run, self.config, self.selection, self.device)
        if "fallback" in state:
            self.console.print(f"[yellow]warning:[/] {state['fallback']}")
        self.epoch, self.step = state["epoch"], state["step"]
        self._position = state.get("position")
        if self._position is None:
            ckpt.set_rng_state(state["rng"])
        else:  # set once the interrupted epoch's finished batches are skipped again
            self._pending_rng = state["rng"]
        where = f"epoch {self.epoch + 1}, batch {self._position['batch']}" if self._position else f"epoch {self.epoch}"
        self.console.print(f"resuming {self.run_dir} after {where} (step {self.step})")

    def _finish(self) -> RunResult:
        self.ranks.barrier()  # the writer's best.pt is complete
        best = load_best(self.run_dir, self.run, self.device)
        result = RunResult(
            run_dir=self.run_dir,
            config=self.config,
            tasks=self.task_names,
            best_epoch=best["epoch"],
            val=best["val"],
            test=self.evaluate("test"),
            lower_is_better={t.name: dict(t.lower_is_better) for t in self.tasks},
        )
        if self.ranks.is_writer:
            result.write()
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
