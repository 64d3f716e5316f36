"""The files a sweep shares between its driver and its workers.

``<out>/sweep.json`` (the manifest) lists every job: its id (``<benchmark>/<run folder>``),
kind (``baseline`` or ``run``), full training config and the baseline jobs it needs. The
driver writes it; a worker (a local process, a submitit job, or the driver itself) reads its
job from it. ``<out>/jobs/<id>.json`` records each job's last attempt (state, host, pid, times,
error); ``<out>/logs/<id>.log`` holds a local worker's output.

Whether a job is finished is read from its run folder, never from those records: ``done``
when ``results.json`` is readable and was produced by the same configuration, ``partial``
when a checkpoint (or anything else) is there to resume from, ``new`` otherwise. A run folder
holding a *different* configuration is an error, not something to overwrite.

Every job trains under an exclusive lock on ``<run folder>/.lock`` (``filelock``: an OS lock,
released when its process dies, so a killed worker never leaves a stale lock). Two processes
therefore never train the same folder, whatever starts them.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from repmtl.experiments.runs import RunFolderError, read_run
from repmtl.experiments.sweepfile import SweepError
from repmtl.train.config import DERIVED_KEYS, TrainConfig
from repmtl.train.presets import resolve_presets

__all__ = ["Job", "folder_state", "lock_is_held", "read_job", "run_lock", "write_manifest", "write_status"]

JobKind = Literal["baseline", "run"]
FolderState = Literal["done", "partial", "new"]
#: config fields that may differ between a run folder and the job that resumes it (the
#: trainer's ``RESUMABLE_CHANGES``, but for ``epochs``, which is compared separately)
_EXECUTION_FIELDS = frozenset({"device", "progress", "num_workers", "log_every", "out"})
MANIFEST = "sweep.json"


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    config: TrainConfig
    needs: tuple[str, ...] = ()
    #: the benchmark's default epochs (what ``epochs = None`` means)
    default_epochs: int | None = None

    @property
    def epochs(self) -> int | None:
        """Epochs the run trains for."""
        return self.config.epochs if self.config.epochs is not None else self.default_epochs

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "config": self.config.to_dict(), "needs": list(self.needs),
                "default_epochs": self.default_epochs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(data["id"], data["kind"], TrainConfig.from_dict(data["config"]), tuple(data["needs"]),
                   data.get("default_epochs"))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(out: Path, jobs: Sequence[Job], sweep_file: Path, name: str) -> Path:
    path = out / MANIFEST
    data = {"name": name, "sweep_file": str(sweep_file), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "jobs": [job.to_dict() for job in jobs]}
    _write_atomic(path, json.dumps(data, indent=1))
    return path


def read_job(out: Path, job_id: str) -> Job:
    path = Path(out) / MANIFEST
    if not path.exists():
        raise SweepError(f"{out} holds no {MANIFEST}: not a sweep folder (run `repmtl sweep CONFIG` first)")
    for entry in json.loads(path.read_text())["jobs"]:
        if entry["id"] == job_id:
            return Job.from_dict(entry)
    raise SweepError(f"{path} lists no job {job_id!r}")


def _file_name(job_id: str) -> str:
    return job_id.replace("/", "__")


def status_path(out: Path, job_id: str) -> Path:
    return Path(out) / "jobs" / f"{_file_name(job_id)}.json"


def log_path(out: Path, job_id: str) -> Path:
    return Path(out) / "logs" / f"{_file_name(job_id)}.log"


def write_status(out: Path, job_id: str, state: str, **fields: Any) -> None:
    """Record a job attempt's state (``running``, ``done``, ``failed``) with host and pid."""
    path = status_path(out, job_id)
    previous = json.loads(path.read_text()) if path.exists() else {}
    record = {**previous, "job": job_id, "state": state, "host": socket.gethostname(), "pid": os.getpid(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    if state == "running":
        record.pop("error", None)
    _write_atomic(path, json.dumps(record, indent=1))


def read_status(out: Path, job_id: str) -> dict[str, Any]:
    path = status_path(out, job_id)
    return json.loads(path.read_text()) if path.exists() else {}


# ---- run folders -----------------------------------------------------------------------------


def _comparable(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in resolve_presets(config).to_dict().items() if k not in _EXECUTION_FIELDS}


def folder_state(job: Job) -> FolderState:
    """What the job's run folder holds (module doc). Raises :class:`SweepError` when it holds a
    run of another configuration, or one trained for more epochs than the job asks for."""
    run_dir = job.run_dir
    saved: dict[str, Any] | None = None
    finished = False
    try:
        saved = read_run(run_dir).config
        finished = True
    except RunFolderError:
        config_file = run_dir / "config.json"
        if config_file.exists():
            try:
                saved = {k: v for k, v in json.loads(config_file.read_text()).items() if k not in DERIVED_KEYS}
            except json.JSONDecodeError:
                saved = None  # torn while the trainer wrote it; the trainer rewrites it on start
    if saved is not None:
        expected = _comparable(job.config)
        found = _comparable(TrainConfig.from_dict(saved))
        changed = sorted(k for k in expected if k != "epochs" and expected[k] != found.get(k))
        if changed:
            differences = ", ".join(f"{k}: {found.get(k)!r} there, {expected[k]!r} in the sweep" for k in changed)
            raise SweepError(f"{run_dir} holds a run with other settings ({differences}); move that folder away "
                             "or sweep into another --out")
        there = found["epochs"] if found.get("epochs") is not None else job.default_epochs
        wanted = job.epochs
        if there is not None and wanted is not None and there > wanted:
            raise SweepError(f"{run_dir} holds a run of {there} epochs; the sweep asks for {wanted}. "
                             "Sweep into another --out to train shorter runs")
        if there != wanted:
            finished = False  # more epochs wanted: resume from the last checkpoint
    if finished:
        return "done"
    return "partial" if run_dir.exists() and any(p.name != ".lock" for p in run_dir.iterdir()) else "new"


def _lock_file(run_dir: Path) -> Path:
    return Path(run_dir) / ".lock"


def run_lock(run_dir: Path) -> FileLock:
    """The exclusive training lock of a run folder (created with the folder)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(str(_lock_file(run_dir)))


def lock_is_held(run_dir: Path) -> bool:
    """Whether another process trains ``run_dir`` right now."""
    if not _lock_file(run_dir).exists():
        return False
    lock = FileLock(str(_lock_file(run_dir)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False
