"""Run folders: safe names, what a folder holds, and whether a run may start, resume or must stop.

Every decision is taken before any training (single-task baselines included), so a conflict
is reported at once and nothing finished is ever overwritten without ``--overwrite``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.hparams import declared, validate
from repmtl.train.presets import resolve_presets

if TYPE_CHECKING:
    from repmtl.train.config import TrainConfig

#: characters a run name may hold (no separators, so a name can never leave the output folder)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,=+:@-]*")


class RunFolderError(ValueError):
    """A run name or output folder that cannot be used (the message says what to do)."""


class RunFolderConflict(FileExistsError):
    """The run folder's contents contradict what was asked (``--resume`` / ``--overwrite``)."""


def check_run_name(name: str) -> str:
    """Refuse names that are empty, hidden, hold a path separator or ``..``, or are absolute."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise RunFolderError(
            f"run name {name!r} is not allowed: use letters, digits and . _ , = + : @ - only "
            "(no '/', no '..', not starting with '.'); the run folder is always <out>/<benchmark>/<name>"
        )
    return name


def name_part(value: object) -> str:
    """A hyper-parameter value as it appears in a run name (unsafe characters become ``_``)."""
    if isinstance(value, (list, tuple)):
        text = ",".join(name_part(v) for v in value)
    elif isinstance(value, dict):
        text = ",".join(f"{k}:{name_part(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._,=+:@-]", "_", text)


def default_run_name(config: TrainConfig) -> str:
    """``stl-<task>-seed<s>``, or ``[<architecture>-]<method>[+<regularizer>][-<lev>][-<arg>=<value>…]-seed<s>``
    (the architecture when it is not ``hps``, then its arguments) with
    every method and regularizer argument that differs from its default (method presets such as
    ``repmtl`` expanded first, so a config is named the same before and after it is resolved)."""
    config = resolve_presets(config)
    if config.single_task:
        return check_run_name(f"stl-{config.single_task}-seed{config.seed}")
    head = config.method + (f"+{config.regularizer}" if config.regularizer else "")
    parts = [head] if config.architecture == "hps" else [config.architecture, head]
    parts += [f"{k}={name_part(v)}" for k, v in sorted(config.architecture_args.items())]
    if config.level:
        parts.append(config.level[:3])
    parts += _changed(M.lookup(config.method), config.method_args, f"method {config.method!r}")
    if config.regularizer:
        parts += _changed(R.lookup(config.regularizer), config.regularizer_args, f"regularizer {config.regularizer!r}")
    return check_run_name("-".join(parts) + f"-seed{config.seed}")


def _changed(cls: type, given: dict, owner: str) -> list[str]:
    values = validate(owner, cls, given)
    params = declared(cls)
    return [f"{k}={name_part(v)}" for k, v in sorted(values.items()) if _normal(v) != _normal(params[k].default)]


def _normal(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


class State(Enum):
    EMPTY = "empty"  # missing, or holds nothing of a run
    PARTIAL = "partial"  # has checkpoints/last.pt: resumable
    FINISHED = "finished"  # has results.json and last.pt
    ORPHAN = "orphan"  # has best.pt or results.json but no last.pt: nothing to resume from


def folder_state(run_dir: Path) -> State:
    last = run_dir / "checkpoints" / "last.pt"
    results = run_dir / "results.json"
    best = run_dir / "checkpoints" / "best.pt"
    if last.exists():
        return State.FINISHED if results.exists() else State.PARTIAL
    if results.exists() or best.exists():
        return State.ORPHAN
    return State.EMPTY


@dataclass(frozen=True)
class Plan:
    action: Literal["fresh", "resume"]
    note: str | None = None


def plan_start(run_dir: Path, *, resume: bool, overwrite: bool) -> Plan:
    """What starting the run in ``run_dir`` does; raises :class:`RunFolderConflict` on a conflict."""
    if resume and overwrite:
        raise RunFolderConflict("--resume and --overwrite contradict each other; choose one")
    state = folder_state(run_dir)
    if resume:
        if state in (State.PARTIAL, State.FINISHED):
            return Plan("resume")
        if state is State.ORPHAN and not (run_dir / "results.json").exists():
            # best.pt is written just before the first last.pt: a crash between the two
            return Plan("fresh", f"{run_dir} holds best.pt but no last.pt (stopped while writing its first "
                                 "checkpoints); starting again")
        if state is State.ORPHAN:
            raise RunFolderConflict(
                f"{run_dir} holds a run's results but no checkpoints/last.pt to resume from; nothing was "
                "changed. Pass --overwrite to train it again, or --name for a new folder"
            )
        return Plan("fresh", f"nothing to resume in {run_dir}; starting a new run")
    if state is not State.EMPTY and not overwrite:
        what = "a finished run" if state is State.FINISHED else "a run"
        raise RunFolderConflict(
            f"{run_dir} already holds {what}; pass --resume to continue it, --overwrite to start again, "
            "or --name for a new folder"
        )
    return Plan("fresh")


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's checkpoints and results (``--overwrite``); logs are reset by the logger."""
    if (run_dir / "checkpoints").exists():
        shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "results.json").unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written in it (one clear error otherwise)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".repmtl-write-test-"):
            pass
    except OSError as exc:
        raise RunFolderError(f"cannot write to {folder}: {exc.strerror or exc}; choose another --out") from exc
