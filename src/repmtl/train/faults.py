"""Non-finite steps: skipped without a trace in the run's state, and a clean stop after too many.

A step whose loss or gradient is not finite changes nothing: the optimizers do not step, and the
method's and regularizers' state and the model's buffers (BatchNorm statistics, which the
forward already moved) are put back as they were before the step. The skip is logged with the
task(s) whose loss was not finite, or ``gradient``, and the step number. After
``max_bad_steps`` consecutive skipped steps the run stops with :class:`TrainingDiverged`,
leaving ``last.pt`` as the last good checkpoint. Under ``torchrun`` every rank takes the same
decision: the losses and gradients it checks are the reduced, global ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from repmtl.train.build import Run

#: the exit status of a run stopped by :class:`TrainingDiverged`
DIVERGED_EXIT_CODE = 3


class TrainingDiverged(FloatingPointError):
    """Too many consecutive non-finite steps; ``last.pt`` holds the last good state."""

    def __init__(self, run_dir: Path, step: int, bad_steps: int, causes: tuple[str, ...]) -> None:
        super().__init__(
            f"{bad_steps} consecutive steps skipped (the last, step {step}: non-finite {describe(causes)}); "
            f"stopped. {run_dir / 'checkpoints' / 'last.pt'} holds the last good state: lower the "
            "learning rate (or check the data) and start again, or raise --max-bad-steps"
        )
        self.run_dir, self.step, self.bad_steps, self.causes = run_dir, step, bad_steps, causes

    @property
    def exit_code(self) -> int:
        return DIVERGED_EXIT_CODE


def describe(causes: tuple[str, ...]) -> str:
    """``gradient`` or ``loss of a, b``."""
    return "gradient" if causes == ("gradient",) else f"loss of {', '.join(causes)}"


@dataclass(frozen=True)
class SkippedStep:
    """What a skipped step returns instead of a record: why it was skipped."""

    #: the tasks whose loss was not finite, or ``("gradient",)``
    causes: tuple[str, ...]


class StateGuard:
    """A copy of what a step may change before the optimizers step (method and regularizer
    state, model buffers), to put back when the step is skipped."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._saved: dict[str, Any] | None = None

    def save(self) -> None:
        self._saved = {
            "method": copy.deepcopy(self.run.method.state_dict()),
            "regularizers": [copy.deepcopy(r.state_dict()) for r in self.run.regularizers],
            "buffers": [b.detach().clone() for b in self.run.model.buffers()],
        }

    @torch.no_grad()
    def restore(self) -> None:
        if self._saved is None:
            raise RuntimeError("StateGuard.restore before save")
        self.run.method.load_state_dict(self._saved["method"])
        for regularizer, state in zip(self.run.regularizers, self._saved["regularizers"], strict=True):
            regularizer.load_state_dict(state)
        for buffer, saved in zip(self.run.model.buffers(), self._saved["buffers"], strict=True):
            buffer.copy_(saved)
        self.run.optimizers.zero_grad()


@dataclass
class BadSteps:
    """Counts consecutive skipped steps; :meth:`record` raises at ``limit``."""

    limit: int
    run_dir: Path
    consecutive: int = 0
    total: int = 0
    causes: tuple[str, ...] = field(default=())

    def good(self) -> None:
        self.consecutive = 0

    def record(self, step: int, skipped: SkippedStep) -> None:
        self.consecutive += 1
        self.total += 1
        if self.consecutive >= self.limit:
            raise TrainingDiverged(self.run_dir, step, self.consecutive, skipped.causes)


def nonfinite_gradients(named: list[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the parameters whose gradient holds a non-finite value (one host sync)."""
    grads = [(n, p.grad) for n, p in named if p.grad is not None]
    if not grads:
        raise RuntimeError("no parameter received a gradient this step")
    norms = torch.stack(torch._foreach_norm([g for _, g in grads]))
    if bool(torch.isfinite(norms).all()):
        return []
    return [n for (n, _), ok in zip(grads, torch.isfinite(norms).tolist(), strict=True) if not ok]
