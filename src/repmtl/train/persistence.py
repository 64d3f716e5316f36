"""What a run writes to its folder and reads back: the resolved config and environment, the
``best.pt`` / ``last.pt`` checkpoints (atomic, finite weights only) and ``results.json``.

``last.pt`` holds everything an exact resume needs (``docs/robustness.md``): model, optimizers,
method and regularizer state, counters, the selection state, the RNG states and, for an epoch
interrupted part way, its position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repmtl.train import checkpoint as ckpt
from repmtl.train.build import Run
from repmtl.train.config import TrainConfig
from repmtl.train.runlog import environment, write_json_atomic
from repmtl.train.selection import Scores, Selection

#: config fields that may change between a run and its resumption
RESUMABLE_CHANGES = {"epochs", "device", "progress", "num_workers", "log_every", "out", "max_bad_steps"}


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

    def write(self) -> None:
        write_json_atomic(self.run_dir / "results.json", self.to_dict())


def write_run_description(run_dir: Path, config: TrainConfig, tasks: tuple[str, ...]) -> None:
    """``config.json`` (the resolved config and the tasks) and ``environment.json``."""
    (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "tasks": list(tasks)}, indent=2))
    (run_dir / "environment.json").write_text(json.dumps(environment(), indent=2, default=str))


def save_best(run_dir: Path, run: Run, epoch: int, val: Scores) -> None:
    ckpt.assert_finite_parameters(run.model)
    ckpt.save_atomic({"model": run.model.state_dict(), "epoch": epoch, "val": val}, run_dir / "checkpoints" / "best.pt")


def save_last(run_dir: Path, run: Run, config: TrainConfig, progress: dict[str, Any], selection: Selection) -> None:
    """``progress``: ``epoch`` (completed), ``step`` and ``position`` (an interrupted epoch's)."""
    ckpt.assert_finite_parameters(run.model)
    state = {
        **progress,
        "config": config.to_dict(),
        "model": run.model.state_dict(),
        "optimizers": run.optimizers.state_dict(),
        "method": run.method.state_dict(),
        "regularizers": [r.state_dict() for r in run.regularizers],
        **selection.state_dict(),
        "rng": ckpt.rng_state(),
    }
    ckpt.save_atomic(state, run_dir / "checkpoints" / "last.pt", keep_previous=True)


def restore_last(run_dir: Path, run: Run, config: TrainConfig, selection: Selection, device: torch.device) -> dict[str, Any]:
    """Load ``last.pt`` into ``run`` and ``selection``; refuse a config that changed beyond
    :data:`RESUMABLE_CHANGES`. Returns the saved state (progress and RNG states); when
    ``last.pt`` could not be read and ``last.prev.pt`` was used, ``state["fallback"]`` says why."""
    state, _, failed = ckpt.load_newest(run_dir / "checkpoints" / "last.pt", device)
    if failed is not None:
        state["fallback"] = f"{failed}; resumed from {ckpt.previous(run_dir / 'checkpoints' / 'last.pt')} instead"
    saved, current = state["config"], config.to_dict()
    defaults = TrainConfig().to_dict()  # a field added after the checkpoint was written: its default
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != current[k])
    if changed:
        raise ValueError(
            f"cannot resume {run_dir}: the configuration differs in {changed} "
            f"(saved: {[saved.get(k) for k in changed]}, now: {[current[k] for k in changed]})"
        )
    run.model.load_state_dict(state["model"])
    run.optimizers.load_state_dict(state["optimizers"])
    run.method.load_state_dict(state["method"])
    for regularizer, saved_state in zip(run.regularizers, state["regularizers"], strict=True):
        regularizer.load_state_dict(saved_state)
    selection.load_state_dict(state)
    return state


def load_best(run_dir: Path, run: Run, device: torch.device) -> dict[str, Any]:
    best = ckpt.load(run_dir / "checkpoints" / "best.pt", device)
    run.model.load_state_dict(best["model"])
    return best
