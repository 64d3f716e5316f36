"""The optimizers of a run: usually one; two when the method is itself an optimizer.

MTAdam returns an Adam-like step for the shared parameters, so those take plain SGD while the
heads keep the benchmark's optimizer (``Method.shared_optimizer = "sgd"``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from repmtl.benchmarks import PlateauSchedule, TrainDefaults
from repmtl.methods.base import Method


class Optimizers:
    """Optimizers stepped together, each with its lr schedule, stepped once per epoch: a step
    schedule (``StepLR``) or a plateau schedule (``ReduceLROnPlateau`` on the validation selection
    score, see :class:`~repmtl.benchmarks.PlateauSchedule`)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], lr_step: int | None, lr_gamma: float,
                 plateau: PlateauSchedule | None = None) -> None:
        if lr_step and plateau is not None:
            raise ValueError("a benchmark's defaults name a step schedule (lr_step) and a plateau schedule; choose one")
        self.optimizers = optimizers
        self.schedulers: list[Any] = [
            torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_step else None for opt in optimizers
        ]
        if plateau is not None:
            self.schedulers = [
                torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt, mode="min", factor=plateau.factor, patience=plateau.patience, min_lr=plateau.min_lr,
                    threshold=plateau.threshold, threshold_mode=plateau.threshold_mode,
                )
                for opt in optimizers
            ]
        self.plateau = plateau

    @property
    def lr(self) -> float:
        return self.optimizers[0].param_groups[0]["lr"]

    def parameters(self) -> Iterable[torch.Tensor]:
        return (p for opt in self.optimizers for group in opt.param_groups for p in group["params"])

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def end_epoch(self, score: float | None = None) -> None:
        """Step the schedules; ``score``: the epoch's validation selection score (higher is
        better), which a plateau schedule needs."""
        if self.plateau is not None and score is None:
            raise ValueError("a plateau lr schedule is stepped with the epoch's validation selection score")
        for scheduler in self.schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(-score)  # the papers step on the validation Δm (lower is better)
            elif scheduler is not None:
                scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [None if s is None else s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for opt, opt_state in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        for scheduler, sched_state in zip(self.schedulers, state["schedulers"], strict=True):
            if scheduler is not None:
                scheduler.load_state_dict(sched_state)


def build_optimizers(
    model: nn.Module, shared: list[torch.Tensor], method: Method, extra: list[torch.Tensor],
    defaults: TrainDefaults, lr: float, weight_decay: float,
) -> Optimizers:
    """The benchmark's optimizer over the model (and the method's learnable parameters, e.g.
    UW's log-variances); shared parameters move to plain SGD when the method asks for it."""
    method_params = list(method.parameters())  # learnable methods (UW, IMTL, GradNorm); empty otherwise
    shared_ids = {id(p) for p in shared}
    separate_shared = method.shared_optimizer == "sgd"
    main = [
        p for p in model.parameters()
        if p.requires_grad and not (separate_shared and id(p) in shared_ids)
    ] + method_params + extra
    if defaults.optimizer == "adam":
        optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(main, lr=lr, weight_decay=weight_decay)]
    elif defaults.optimizer == "sgd":
        optimizers = [torch.optim.SGD(main, lr=lr, weight_decay=weight_decay, momentum=0.9)]
    else:
        raise ValueError(f"unknown optimizer {defaults.optimizer!r}")
    if separate_shared:
        optimizers.append(torch.optim.SGD(shared, lr=lr, weight_decay=weight_decay))
    elif method.shared_optimizer is not None:
        raise ValueError(f"unknown shared optimizer {method.shared_optimizer!r} of method {method.name!r}")
    return Optimizers(optimizers, defaults.lr_step, defaults.lr_gamma, defaults.lr_plateau)
