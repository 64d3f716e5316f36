"""``repmtl sweep CONFIG``: plan a grid of runs, then train what is not finished.

Planning (:func:`plan`) expands the sweep file (:mod:`repmtl.experiments.sweepfile`) into run
jobs and the single-task baseline jobs they need, one per benchmark, task and budget
(``TrainConfig.budget_key``), shared by every run of that budget; it checks every method,
level and regularizer before anything trains. The driver (:class:`Driver`) then starts jobs in
grid order, baselines first, each once its baselines are finished, on one of three executors:

* in this process, one after the other (``workers=1``);
* ``N`` local worker processes (``python -m repmtl.experiments.sweep_worker``; each gets
  ``cpu_count // N`` torch threads unless told otherwise, and stops if the driver dies);
* submitit (``cluster="slurm"``, or ``"local"`` to try the same path on one machine; the
  ``[cluster]`` extra), with the sweep file's ``[cluster]`` table as executor parameters.

Restarting the same command is how a sweep resumes: finished runs are skipped (their folders
are read, see :func:`repmtl.experiments.sweepjobs.folder_state`), interrupted ones continue
from their last checkpoint, and a folder being trained by another live process is left to it
(its lock is held) and picked up when that process is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from repmtl.data import get_benchmark
from repmtl.experiments.sweep_worker import run_job
from repmtl.experiments.sweepfile import SweepError, SweepSpec, load_sweep
from repmtl.experiments.sweepjobs import (
    Job,
    folder_state,
    lock_is_held,
    log_path,
    read_status,
    write_manifest,
)
from repmtl.train.config import TrainConfig
from repmtl.train.resolve import build_options, resolve
from repmtl.train.trainer import single_task_config

__all__ = ["Driver", "Outcome", "plan", "run_spec", "run_sweep"]

#: job states shown in the summary
STATES = ("skipped", "done", "running", "waiting", "pending", "failed", "blocked")


# ---- planning --------------------------------------------------------------------------------


def _job_id(config: TrainConfig) -> str:
    return f"{config.benchmark}/{config.run_name()}"


def plan(spec: SweepSpec, out: Path) -> list[Job]:
    """Baseline jobs (deduplicated) then run jobs, in grid order. Raises :class:`SweepError`
    naming the run when a benchmark, method, level, regularizer or option is invalid."""
    out = Path(out).resolve()
    baselines: dict[str, Job] = {}
    runs: list[Job] = []
    for given in spec.configs(out):
        try:
            config = resolve(given)  # checks everything; the same names and budgets as `repmtl train`
            bench = get_benchmark(config.benchmark)
            tasks = [t.name for t in bench.tasks(build_options(config))]
        except (KeyError, ValueError, TypeError) as exc:
            where = given.name or f"{given.method} seed {given.seed}"
            raise SweepError(f"{spec.path}: run {given.benchmark}/{where}: {exc.args[0] if exc.args else exc}") from exc
        run_id = _job_id(config)
        needs = []
        if spec.baselines:
            for task in tasks:
                stl = resolve(single_task_config(config, task))
                stl_id = _job_id(stl)
                baselines.setdefault(stl_id, Job(stl_id, "baseline", stl, (), bench.defaults.epochs))
                needs.append(stl_id)
        runs.append(Job(run_id, "run", config, tuple(needs), bench.defaults.epochs))
    return list(baselines.values()) + runs


# ---- executors -------------------------------------------------------------------------------


class Backend(Protocol):
    """Starts jobs and reports the ones that ended."""

    capacity: int

    def start(self, job: Job) -> None: ...

    def poll(self) -> list[tuple[str, str | None]]:
        """Jobs that ended since the last call: ``(job id, error or None)``."""

    def stop(self) -> None:
        """Stop every job still running (the driver was interrupted)."""

    def where(self, job_id: str) -> str:
        """Where the job's output is, for messages."""


class InlineBackend:
    """Runs each job in the driver's own process, one at a time, training output on the console."""

    capacity = 1

    def __init__(self, out: Path, console: Console, threads: int | None) -> None:
        self.out, self.console, self.threads = out, console, threads
        self._ended: list[tuple[str, str | None]] = []

    def start(self, job: Job) -> None:
        try:
            run_job(self.out, job.id, threads=self.threads, progress=self.console.is_terminal, console=self.console)
        except Exception as exc:  # noqa: BLE001 - recorded as the job's failure; the sweep goes on with the others
            self.console.print_exception(max_frames=8)
            self._ended.append((job.id, f"{type(exc).__name__}: {exc}"))
        else:
            self._ended.append((job.id, None))

    def poll(self) -> list[tuple[str, str | None]]:
        ended, self._ended = self._ended, []
        return ended

    def stop(self) -> None:
        pass

    def where(self, job_id: str) -> str:
        return "the output above"


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, e.g. in a container)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ProcessBackend:
    """``capacity`` local worker processes, output in ``<out>/logs/<job>.log``."""

    def __init__(self, out: Path, capacity: int, threads: int | None) -> None:
        self.out, self.capacity = out, capacity
        self.threads = threads or max(1, _usable_cores() // capacity)
        self._procs: dict[str, subprocess.Popen] = {}

    def start(self, job: Job) -> None:
        log = log_path(self.out, job.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        command = [sys.executable, "-m", "repmtl.experiments.sweep_worker", str(self.out), job.id,
                   "--threads", str(self.threads), "--parent-pid", str(os.getpid())]
        with log.open("a") as handle:
            handle.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start {job.id}\n")
            handle.flush()
            self._procs[job.id] = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                                   stdin=subprocess.DEVNULL)

    def poll(self) -> list[tuple[str, str | None]]:
        ended = []
        for job_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[job_id]
            error = None
            if code != 0:
                recorded = read_status(self.out, job_id).get("error")
                error = f"exit code {code}" + (f": {recorded}" if recorded else "")
            ended.append((job_id, error))
        return ended

    def stop(self) -> None:
        for proc in self._procs.values():
            proc.terminate()
        deadline = time.time() + 15
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def where(self, job_id: str) -> str:
        return str(log_path(self.out, job_id))


def _cluster_backend(kind: str, out: Path, parameters: dict, capacity: int) -> Backend:
    try:
        from repmtl.experiments.sweep_cluster import SubmititBackend
    except ImportError as exc:
        raise SweepError("`repmtl sweep --cluster` needs submitit; install the extra: pip install 'repmtl[cluster]'") \
            from exc
    return SubmititBackend(kind, out, parameters, capacity)


# ---- the driver ------------------------------------------------------------------------------


@dataclass
class Outcome:
    counts: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / "epochs.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.strip())


class Driver:
    """Starts ready jobs on a backend until none is left; shows done / running / failed."""

    def __init__(self, jobs: Sequence[Job], backend: Backend, console: Console, *, tick: float = 0.5) -> None:
        self.jobs = {job.id: job for job in jobs}
        self.backend, self.console, self.tick = backend, console, tick
        self.state: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self._live: Live | None = None
        problems = []
        for job in jobs:
            try:
                self.state[job.id] = "skipped" if folder_state(job) == "done" else "pending"
            except SweepError as exc:
                problems.append(str(exc))
        if problems:
            raise SweepError("the sweep folder holds runs the sweep file does not describe:\n  " + "\n  ".join(problems))

    # ---- scheduling ----

    def _ready(self, job: Job) -> bool | None:
        """True: can start; False: not yet; None: never (a baseline failed)."""
        needs = [self.state[n] for n in job.needs]
        if any(s in ("failed", "blocked") for s in needs):
            return None
        return all(s in ("done", "skipped") for s in needs)

    def _launch(self) -> None:
        for job_id, job in self.jobs.items():
            if sum(s == "running" for s in self.state.values()) >= self.backend.capacity:
                return
            if self.state[job_id] not in ("pending", "waiting"):
                continue
            ready = self._ready(job)
            if ready is None:
                failed = [n for n in job.needs if self.state[n] in ("failed", "blocked")]
                self._set(job_id, "blocked", f"baseline {', '.join(failed)} failed")
                continue
            if not ready:
                continue
            if lock_is_held(job.run_dir):
                self._set(job_id, "waiting", "trained by another process")
                continue
            if self.state[job_id] == "waiting" and folder_state(job) == "done":
                self._set(job_id, "done")
                continue
            self._set(job_id, "running")
            self.started[job_id] = time.time()
            self.backend.start(job)
            self._collect()

    def _collect(self) -> None:
        for job_id, error in self.backend.poll():
            if error is None and folder_state(self.jobs[job_id]) == "done":
                self._set(job_id, "done")
            else:
                self._set(job_id, "failed", error or "the job ended without a finished run")

    def _set(self, job_id: str, state: str, reason: str | None = None) -> None:
        previous = self.state.get(job_id)
        self.state[job_id] = state
        if reason and state in ("failed", "blocked"):
            self.errors[job_id] = reason
        if previous != state and not (state == "waiting" and previous == "waiting"):
            self._event(job_id, state, reason)

    def _event(self, job_id: str, state: str, reason: str | None) -> None:
        total = len(self.jobs)
        finished = sum(s in ("done", "skipped", "failed", "blocked") for s in self.state.values())
        elapsed = f" ({time.time() - self.started[job_id]:.0f} s)" if state in ("done", "failed") and \
            job_id in self.started else ""
        where = f"; output: {self.backend.where(job_id)}" if state == "failed" else ""
        detail = f": {reason}" if reason else ""
        self.console.print(f"[{finished}/{total}] {state} {escape(job_id)}{elapsed}{escape(detail + where)}")

    # ---- display ----

    def counts(self) -> dict[str, int]:
        return {s: sum(v == s for v in self.state.values()) for s in STATES}

    def render(self) -> Group:
        counts = self.counts()
        line = " · ".join(f"{name} {n}" for name, n in counts.items() if n or name in ("done", "running", "failed"))
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("running", "kind", "epoch", "time"):
            table.add_column(column)
        now = time.time()
        for job_id, state in self.state.items():
            if state == "running":
                job = self.jobs[job_id]
                epochs = f"{_epochs_done(job.run_dir)}/{job.epochs}" if job.epochs else "?"
                table.add_row(escape(job_id), job.kind, epochs, f"{now - self.started[job_id]:.0f} s")
        parts: list = [f"[bold]sweep[/]: {line}  (of {len(self.jobs)} jobs)"]
        if table.row_count:
            parts.append(table)
        failed = [(j, self.errors.get(j, "")) for j, s in self.state.items() if s in ("failed", "blocked")]
        for job_id, reason in failed[-5:]:
            parts.append(f"[red]failed[/] {escape(job_id)}: {escape(reason[:160])}")
        return Group(*parts)

    # ---- main loop ----

    def run(self) -> Outcome:
        interrupted = False
        skipped = self.counts()["skipped"]
        if skipped:
            self.console.print(f"{skipped} of {len(self.jobs)} jobs already finished: skipped")
        resumed = [j for j, s in self.state.items() if s == "pending" and folder_state(self.jobs[j]) == "partial"]
        if resumed:
            self.console.print(f"{len(resumed)} interrupted job(s) will resume: {', '.join(resumed)}")
        try:
            with _sigterm_as_interrupt(), self._display():
                while any(s in ("pending", "waiting", "running") for s in self.state.values()):
                    self._launch()
                    self._collect()
                    if self._live is not None:
                        self._live.update(self.render())
                    if any(s in ("running", "waiting") for s in self.state.values()):
                        time.sleep(self.tick)
        except KeyboardInterrupt:
            interrupted = True
            self.backend.stop()
            for job_id, state in self.state.items():
                if state == "running":
                    self.state[job_id] = "pending"
        outcome = Outcome(self.counts(), sorted(self.errors.items()), interrupted)
        self.console.print(self.render())
        if interrupted:
            self.console.print("[yellow]interrupted[/]: run the same command again to resume")
        return outcome

    @contextmanager
    def _display(self) -> Iterator[None]:
        if not self.console.is_terminal or isinstance(self.backend, InlineBackend):
            yield
            return
        with Live(self.render(), console=self.console, refresh_per_second=2, transient=True) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the sweep like Ctrl-C: workers are stopped, the next run resumes."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- entry point -----------------------------------------------------------------------------


def _jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(title="sweep plan")
    for column in ("job", "kind", "state", "needs"):
        table.add_column(column)
    for job in jobs:
        state = folder_state(job)
        table.add_row(escape(job.id), job.kind, {"done": "finished (skip)", "partial": "resume", "new": "new"}[state],
                      str(len(job.needs)))
    return table


def run_sweep(sweep_file: str | Path, *, out: str | Path | None = None, workers: int = 1, cluster: str | None = None,
              threads: int | None = None, dry_run: bool = False, console: Console | None = None,
              backend_factory: Callable[[Path], Backend] | None = None) -> Outcome:
    """Plan the sweep and train what is not finished (see the module doc). ``out`` defaults to
    the file's ``out``, else ``sweeps/<file name>``. ``backend_factory`` replaces the executor
    (tests)."""
    return run_spec(load_sweep(sweep_file), out=out, workers=workers, cluster=cluster, threads=threads,
                    dry_run=dry_run, console=console, backend_factory=backend_factory)


def run_spec(spec: SweepSpec, *, out: str | Path | None = None, workers: int = 1, cluster: str | None = None,
             threads: int | None = None, dry_run: bool = False, console: Console | None = None,
             backend_factory: Callable[[Path], Backend] | None = None) -> Outcome:
    """:func:`run_sweep` for a parsed (possibly edited) sweep; ``spec.path`` is copied into the
    sweep folder as the record of what was asked."""
    console = console or Console(stderr=True)
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    if cluster not in (None, "local", "slurm"):
        raise SweepError(f"--cluster must be local or slurm, got {cluster!r}")
    folder = Path(out or spec.out or Path("sweeps") / spec.path.stem).resolve()
    jobs = plan(spec, folder)
    baselines = sum(j.kind == "baseline" for j in jobs)
    console.print(f"sweep {spec.name!r}: {len(jobs) - baselines} runs + {baselines} single-task baselines in {folder}")
    if dry_run:
        console.print(_jobs_table(jobs))
        return Outcome({s: 0 for s in STATES})
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / ".driver.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepError(f"another `repmtl sweep` is running in {folder}; wait for it or stop it first") from None
    try:
        write_manifest(folder, jobs, spec.path.resolve(), spec.name)
        copy = folder / f"sweep{spec.path.suffix.lower()}"
        if not copy.exists() or not copy.samefile(spec.path):
            shutil.copyfile(spec.path, copy)
        if backend_factory is not None:
            backend = backend_factory(folder)
        elif cluster is not None:
            backend = _cluster_backend(cluster, folder, spec.cluster, workers if workers > 1 else len(jobs))
        elif workers == 1:
            backend = InlineBackend(folder, console, threads)
        else:
            backend = ProcessBackend(folder, workers, threads)
        outcome = Driver(jobs, backend, console).run()
    finally:
        lock.release()
    if outcome.ok:
        console.print(f"all {len(jobs)} jobs finished; tables and plots: repmtl compare {folder}")
    return outcome
