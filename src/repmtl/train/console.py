"""What a run prints: a progress bar per epoch (loss and steps per second) and one line per epoch.

Epochs are counted from 1 everywhere a person reads them: here, in ``epochs.jsonl`` /
``steps.jsonl`` and in the report's plots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Scores = dict[str, dict[str, float]]


class _StepsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} steps/s", style="progress.data.speed")


def training_progress(console: Console, enabled: bool = True) -> Progress:
    """Description, bar, steps done/total, steps per second, last logged loss, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _StepsPerSecond(),
        TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not enabled,
    )


@contextmanager
def epoch_progress(
    console: Console, description: str, total: int, done: int = 0, enabled: bool = True
) -> Iterator[Callable[[float | None], None]]:
    """A transient bar; the yielded ``advance(loss)`` moves it one step (``loss`` shown when given)."""
    progress = training_progress(console, enabled)
    task = progress.add_task(description, total=total, completed=done, loss="")

    def advance(loss: float | None = None) -> None:
        if loss is None:
            progress.advance(task)
        else:
            progress.update(task, advance=1, loss=f"loss {loss:.4g}")

    with progress:
        yield advance


def print_epoch(console: Console, run: str, epoch: int, epochs: int, val: Scores, score: float, improved: bool) -> None:
    """``[run] epoch 3/20  val task/metric=…  score … *`` (``*``: the best epoch so far)."""
    summary = "  ".join(f"{t}/{m}={v:.4g}" for t, ms in val.items() for m, v in ms.items())
    mark = " *" if improved else ""
    console.print(f"{escape('[' + run + ']')} epoch {epoch}/{epochs}  val {summary}  score {score:.3f}{mark}")
