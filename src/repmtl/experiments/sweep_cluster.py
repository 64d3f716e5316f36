"""The submitit executor of ``repmtl sweep --cluster slurm|local`` (the ``[cluster]`` extra).

Each job is one submitit job running :func:`repmtl.experiments.sweep_worker.run_job`. Jobs are
:class:`submitit.helpers.Checkpointable`: when Slurm preempts one or its time limit comes,
submitit requeues it and the run resumes from its last checkpoint. submitit's own files
(scripts, pickles, logs) go to ``<sweep>/submitit/``. ``cluster="local"`` runs the same path
as subprocesses of this machine (how the tests exercise it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from repmtl.experiments.sweep_worker import run_job
from repmtl.experiments.sweepfile import SweepError
from repmtl.experiments.sweepjobs import Job

__all__ = ["SubmititBackend", "SweepJob"]


class SweepJob(Checkpointable):
    """A picklable, requeueable call of :func:`run_job`."""

    def __call__(self, sweep_dir: str, job_id: str) -> str:
        return run_job(sweep_dir, job_id)


class SubmititBackend:
    """Submits up to ``capacity`` jobs at a time through a submitit ``AutoExecutor``."""

    def __init__(self, cluster: str, out: Path, parameters: dict[str, Any], capacity: int) -> None:
        self.out, self.capacity = out, capacity
        self.executor = submitit.AutoExecutor(folder=str(out / "submitit" / "%j"), cluster=cluster)
        try:
            self.executor.update_parameters(name="repmtl-sweep", **parameters)
        except (NameError, TypeError, ValueError) as exc:  # submitit raises NameError for unknown keys
            raise SweepError(f"the sweep file's [cluster] table is not valid for submitit's {cluster} executor: "
                             f"{exc}") from exc
        self._jobs: dict[str, submitit.Job] = {}
        self._logs: dict[str, Path] = {}

    def start(self, job: Job) -> None:
        handle = self.executor.submit(SweepJob(), str(self.out), job.id)
        self._jobs[job.id] = handle
        self._logs[job.id] = handle.paths.stderr

    def poll(self) -> list[tuple[str, str | None]]:
        ended = []
        for job_id, handle in list(self._jobs.items()):
            if not handle.done():
                continue
            del self._jobs[job_id]
            error = handle.exception()
            ended.append((job_id, None if error is None else f"{type(error).__name__}: {str(error)[-2000:]}"))
        return ended

    def stop(self) -> None:
        for handle in self._jobs.values():
            handle.cancel(check=False)
        self._jobs.clear()

    def where(self, job_id: str) -> str:
        return str(self._logs.get(job_id, self.out / "submitit"))
