"""Reading one run folder for ``repmtl report``: ``config.json``, ``steps.jsonl`` and
``epochs.jsonl`` as the trainer writes them, with their keys found through the run-log schema
(:mod:`repmtl.logkeys`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repmtl.experiments.runs import read_jsonl
from repmtl.logkeys import DIAG_LEVEL, LOSS, TRAIN_LOSS, VAL_METRIC, KeyFamily

__all__ = ["Row", "RunLogs", "Series", "as_float", "keys_of", "load_run", "series"]

Row = dict[str, Any]


def as_float(value: Any) -> float | None:
    """``value`` as a float when it is a number (``inf`` and ``nan`` included), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class Series:
    """The finite values of one key against a counter (``step`` or ``epoch``)."""

    x: np.ndarray
    y: np.ndarray
    dropped: int = 0  # non-finite values left out


def series(rows: Sequence[Row], key: str, x_key: str) -> Series | None:
    """``key`` against ``x_key`` over the rows holding it (the row's position when ``x_key`` is
    missing); ``None`` when no row holds a number under ``key``."""
    xs, ys, dropped = [], [], 0
    for i, row in enumerate(rows):
        y = as_float(row.get(key))
        if y is None:
            continue
        if not math.isfinite(y):
            dropped += 1
            continue
        x = as_float(row.get(x_key))
        xs.append(float(i) if x is None else x)
        ys.append(y)
    if not xs and not dropped:
        return None
    return Series(np.asarray(xs), np.asarray(ys), dropped)


def keys_of(rows: Iterable[Row], family: KeyFamily) -> list[tuple[str, dict[str, str]]]:
    """The keys of ``family`` in the rows, in first-seen order, each with its fields by name."""
    seen: dict[str, dict[str, str]] = {}
    for row in rows:
        for key in row:
            if key not in seen and (fields := family.match(key)) is not None:
                seen[key] = fields
    return list(seen.items())


@dataclass
class RunLogs:
    """What a run folder holds; ``notes`` say what was missing or unreadable."""

    run_dir: Path
    config: dict[str, Any]
    steps: list[Row]
    epochs: list[Row]
    tasks: list[str]
    notes: list[str] = field(default_factory=list)

    def diagnostics_levels(self) -> list[str]:
        """The Gramian levels the step diagnostics were measured at, sorted."""
        key = DIAG_LEVEL.key()
        return sorted({str(r[key]) for r in self.steps if key in r})


def _task_names(config: dict[str, Any], steps: list[Row], epochs: list[Row]) -> list[str]:
    """The config's tasks, else those named by the loss and validation keys."""
    tasks = config.get("tasks")
    if isinstance(tasks, (list, tuple)) and tasks:
        names = [t.get("name") if isinstance(t, dict) else t for t in tasks]
        if all(isinstance(n, str) for n in names):
            return list(names)
    found: dict[str, None] = {}
    for _, fields in keys_of(steps, LOSS) + keys_of(epochs, TRAIN_LOSS) + keys_of(epochs, VAL_METRIC):
        found.setdefault(fields["task"], None)
    return list(found)


def load_run(run_dir: Path) -> RunLogs:
    """Read ``run_dir``; raises ``FileNotFoundError`` when it is missing or holds none of the
    three files. Unreadable log lines (a run killed mid-write) are skipped and counted."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    notes: list[str] = []
    config_path = run_dir / "config.json"
    config: dict[str, Any] = {}
    if config_path.exists():
        loaded = json.loads(config_path.read_text())
        config = loaded if isinstance(loaded, dict) else {}
    else:
        notes.append("`config.json` is missing: run settings unknown.")
    steps, bad_steps = read_jsonl(run_dir / "steps.jsonl")
    epochs, bad_epochs = read_jsonl(run_dir / "epochs.jsonl")
    if not (run_dir / "steps.jsonl").exists():
        notes.append("`steps.jsonl` is missing: no step-level plots.")
    if not (run_dir / "epochs.jsonl").exists():
        notes.append("`epochs.jsonl` is missing: no epoch-level plots.")
    if bad_steps or bad_epochs:
        notes.append(f"Skipped unreadable lines: {bad_steps} in `steps.jsonl`, {bad_epochs} in `epochs.jsonl`.")
    if not steps and not epochs and not config:
        raise FileNotFoundError(f"{run_dir} holds no config.json, steps.jsonl or epochs.jsonl")
    return RunLogs(run_dir, config, steps, epochs, _task_names(config, steps, epochs), notes)
