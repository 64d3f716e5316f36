"""Run one job of a sweep: ``python -m repmtl.experiments.sweep_worker OUT JOB_ID``.

The same :func:`run_job` serves the three executors: the driver calls it in-process
(sequential sweeps), local worker processes run this module, and submitit pickles the
function for its jobs. Under the run folder's lock it re-reads the folder: a finished run is
left alone, an interrupted one resumes from ``checkpoints/last.pt``, a new one starts. A run
job only starts once its single-task baselines are finished (the driver schedules them
first); it then trains through :func:`repmtl.train.experiment.run_experiment`, exactly as
``repmtl train`` would.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch
from filelock import Timeout
from rich.console import Console

from repmtl.experiments.sweepfile import SweepError
from repmtl.experiments.sweepjobs import (
    Job,
    folder_state,
    read_job,
    run_lock,
    write_status,
)
from repmtl.train.experiment import run_experiment
from repmtl.train.trainer import train

__all__ = ["run_job"]


def _train(job: Job, sweep_dir: Path, console: Console) -> None:
    for need in job.needs:
        baseline = read_job(sweep_dir, need)
        if folder_state(baseline) != "done":
            raise RuntimeError(f"{job.id} needs the single-task baseline {need} ({baseline.run_dir}), "
                               "which has not finished")
    resume = (job.run_dir / "checkpoints" / "last.pt").exists()
    if job.kind == "baseline":
        train(job.config, resume=resume, console=console)
    else:
        run_experiment(job.config, resume=resume, baselines=bool(job.needs), console=console)


def run_job(sweep_dir: str | Path, job_id: str, *, threads: int | None = None, progress: bool = False,
            console: Console | None = None) -> str:
    """Train job ``job_id`` of the sweep in ``sweep_dir`` unless its folder already holds the
    finished run; returns ``"done"`` or ``"skipped"``. Raises what training raised (after
    recording it in ``<sweep>/jobs/<id>.json``)."""
    sweep_dir = Path(sweep_dir)
    console = console or Console(stderr=True)
    if threads is not None:
        torch.set_num_threads(threads)
    job = read_job(sweep_dir, job_id)
    job = replace(job, config=replace(job.config, progress=progress))
    lock = run_lock(job.run_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        console.print(f"{job.run_dir} is being trained by another process; waiting for it")
        lock.acquire()
    try:
        if folder_state(job) == "done":
            console.print(f"{job.id}: already finished, skipped")
            return "skipped"
        started = time.time()
        write_status(sweep_dir, job_id, "running", started=started)
        try:
            _train(job, sweep_dir, console)
        except BaseException as exc:
            write_status(sweep_dir, job_id, "failed", error=f"{type(exc).__name__}: {exc}", seconds=time.time() - started)
            raise
        write_status(sweep_dir, job_id, "done", seconds=time.time() - started)
        return "done"
    finally:
        lock.release()


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the driver (pid ``parent``) dies, so a killed driver leaves no
    orphan training (its checkpoints are atomic; the next sweep resumes the run)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the driver died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for this job")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process (the driver) dies")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        _die_with_parent(args.parent_pid)
    console = Console(stderr=True, width=160)
    try:
        state = run_job(args.sweep_dir, args.job_id, threads=args.threads, console=console)
    except SweepError as exc:
        console.print(f"error: {exc}")
        return 2
    except Exception:  # noqa: BLE001 - any training error: print it, exit 1 (the driver reports it)
        console.print(traceback.format_exc())
        return 1
    console.print(f"{args.job_id}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
