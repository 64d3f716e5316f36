"""Stopping cleanly on SIGINT / SIGTERM (Ctrl-C, or a cluster scheduler's pre-emption notice).

The first signal only sets a flag: the trainer finishes the step it is in, writes a checkpoint
and raises :class:`TrainingInterrupted`, from which ``--resume`` continues exactly. A second
SIGINT stops at once (Python's usual ``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the exit status a shell reports for a process stopped by each signal (128 + number)
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a resumable checkpoint."""

    def __init__(self, signal_name: str, run_dir: Path, epoch: int, step: int) -> None:
        super().__init__(f"{signal_name}: stopped {run_dir} during epoch {epoch} at step {step}; checkpoint written")
        self.signal_name, self.run_dir, self.epoch, self.step = signal_name, run_dir, epoch, step

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_name, 1)


class StopFlag:
    """Set by the signal handler; read by the training loop between steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Install the handlers for the duration of a ``with`` block (main thread only; elsewhere
    the flag simply never gets set)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if flag.requested and name == "SIGINT":
            raise KeyboardInterrupt
        flag.signal_name = name

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
