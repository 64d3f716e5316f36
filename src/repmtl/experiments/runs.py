"""Reading run folders as the trainer leaves them, without importing the trainer.

A run folder holds ``config.json`` (the resolved :class:`~repmtl.train.config.TrainConfig` plus
``tasks``), ``results.json`` once the run finished (``config``, ``tasks``, ``best_epoch``,
``val``, ``test``, ``lower_is_better``, and possibly more keys such as the baselines used),
``steps.jsonl`` / ``epochs.jsonl`` and ``checkpoints/last.pt`` while it trains. Everything
here reads those files only: folder names carry no meaning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repmtl.train.config import DERIVED_KEYS, TrainConfig

__all__ = ["RunFolderError", "RunRecord", "find_runs", "finite", "read_jsonl", "read_run"]

Scores = dict[str, dict[str, float]]

#: config fields that say where or how a run was executed, not what was trained
EXECUTION_FIELDS = frozenset({"out", "name", "device", "progress", "num_workers", "log_every"})


class RunFolderError(ValueError):
    """A run folder whose files cannot be read as a run (names the file and the problem)."""


@dataclass(frozen=True)
class RunRecord:
    """A finished run: its configuration and the test/validation metrics of the selected epoch."""

    path: Path
    config: dict[str, Any]
    tasks: tuple[str, ...]
    best_epoch: int
    val: Scores
    test: Scores
    lower_is_better: dict[str, dict[str, bool]]
    #: every other key of ``results.json`` (e.g. Δp figures, baseline folders), unchanged
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def benchmark(self) -> str:
        return str(self.config.get("benchmark"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def single_task(self) -> str | None:
        return self.config.get("single_task")

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config)

    def budget_key(self) -> str:
        """The budget hash single-task baselines are matched by (see ``TrainConfig.budget_key``)."""
        return self.train_config().budget_key()

    def identity(self) -> str:
        """What was trained, as canonical JSON: the config without the seed and without how or
        where it ran. Runs with equal identities are seeds of one setting."""
        config = self.train_config().to_dict()
        kept = {k: v for k, v in config.items() if k not in EXECUTION_FIELDS and k != "seed"}
        return json.dumps(kept, sort_keys=True)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                             "the run may have been killed while writing it") from exc


def _scores(value: Any, path: Path, key: str) -> Scores:
    if not isinstance(value, dict) or not all(isinstance(m, dict) for m in value.values()):
        raise RunFolderError(f"{path}: `{key}` must map task -> metric -> value")
    out: Scores = {}
    for task, metrics in value.items():
        out[task] = {}
        for name, number in metrics.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise RunFolderError(f"{path}: `{key}.{task}.{name}` is {number!r}, not a number")
            out[task][name] = float(number)
    return out


def read_run(run_dir: str | Path) -> RunRecord:
    """The finished run in ``run_dir``; :class:`RunFolderError` when ``results.json`` is
    missing, torn or lacks a field."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.exists():
        raise RunFolderError(f"{run_dir} holds no results.json: the run has not finished")
    data = _load_json(path)
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a JSON object")
    missing = [k for k in ("config", "tasks", "best_epoch", "test", "lower_is_better") if k not in data]
    if missing:
        raise RunFolderError(f"{path} lacks {missing}")
    config = {k: v for k, v in data["config"].items() if k not in DERIVED_KEYS}
    try:
        TrainConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise RunFolderError(f"{path}: `config` is not a training configuration ({exc})") from exc
    tasks = tuple(data["tasks"])
    test = _scores(data["test"], path, "test")
    val = _scores(data.get("val", {}), path, "val")
    if set(test) != set(tasks):
        raise RunFolderError(f"{path}: test metrics for {sorted(test)} but tasks {list(tasks)}")
    lower = {t: {m: bool(v) for m, v in ms.items()} for t, ms in data["lower_is_better"].items()}
    for task, metrics in test.items():
        unknown = sorted(set(metrics) - set(lower.get(task, {})))
        if unknown:
            raise RunFolderError(f"{path}: no lower_is_better entry for {task} metrics {unknown}")
    known = {"config", "tasks", "best_epoch", "val", "test", "lower_is_better", "run_dir"}
    extras = {k: v for k, v in data.items() if k not in known}
    return RunRecord(run_dir, config, tasks, int(data["best_epoch"]), val, test, lower, extras)


_NOT_RUNS = frozenset({"checkpoints", "tb", "report", "logs", "jobs", "submitit"})


def _result_files(root: Path) -> Iterator[Path]:
    if (root / "results.json").exists():
        yield root / "results.json"
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.is_symlink() and child.name not in _NOT_RUNS:
            yield from _result_files(child)


def find_runs(paths: Iterable[str | Path]) -> tuple[list[RunRecord], list[str]]:
    """Every finished run in ``paths`` and a message for each ``results.json`` that could not
    be read. A path is a run folder, or any folder above run folders (a sweep folder, a
    ``runs/`` tree) that is searched recursively; each run appears once. A path that is not
    a folder raises :class:`RunFolderError`."""
    seen: dict[Path, RunRecord] = {}
    problems: list[str] = []
    for given in paths:
        root = Path(given)
        if not root.is_dir():
            raise RunFolderError(f"{root} is not a folder")
        for results in _result_files(root):
            key = results.parent.resolve()
            if key in seen:
                continue
            try:
                seen[key] = read_run(results.parent)
            except RunFolderError as exc:
                problems.append(str(exc))
    return list(seen.values()), problems


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of a JSON-lines log and the number of unreadable lines (a run killed mid-write)."""
    if not path.exists():
        return [], 0
    rows: list[dict[str, Any]] = []
    bad = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
