"""Fake run folders written the way the trainer writes them (config.json, results.json, logs),
with numbers the tests choose, so the aggregation maths can be checked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from repmtl.train.config import TrainConfig
from repmtl.train.trainer import single_task_config

LOWER = {"seg": {"miou": False, "acc": False}, "depth": {"abs_err": True}, "normal": {"mean": True}}


def _scores(test: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {t: dict(ms) for t, ms in test.items()}


def write_run(root: Path, config: TrainConfig, test: dict[str, dict[str, float]],
              lower: dict[str, dict[str, bool]] | None = None, *, steps: list[dict[str, Any]] | None = None,
              epochs: list[dict[str, Any]] | None = None, extras: dict[str, Any] | None = None) -> Path:
    """A finished run of ``config`` under ``root`` (its ``out`` is replaced by ``root``)."""
    config = TrainConfig(**{**config.to_dict(), "out": str(root)})
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    lower = lower or {t: {m: LOWER.get(t, {}).get(m, False) for m in ms} for t, ms in test.items()}
    tasks = list(test) if not config.single_task else [config.single_task]
    (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "tasks": tasks}))
    results = {"run_dir": str(run_dir), "config": config.to_dict(), "tasks": tasks, "best_epoch": 0,
               "val": _scores(test), "test": _scores(test), "lower_is_better": lower, **(extras or {})}
    (run_dir / "results.json").write_text(json.dumps(results))
    if steps is not None:
        (run_dir / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    if epochs is not None:
        (run_dir / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    return run_dir


def write_baselines(root: Path, config: TrainConfig, test: dict[str, dict[str, float]]) -> dict[str, Path]:
    """Single-task runs of ``config``'s budget, one per task of ``test``, named as the trainer names them."""
    out = {}
    for task, metrics in test.items():
        stl = single_task_config(config, task)
        out[task] = write_run(root, stl, {task: metrics}, {task: {m: LOWER.get(task, {}).get(m, False)
                                                                   for m in metrics}})
    return out
