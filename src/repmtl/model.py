"""A shared encoder with one head per task, exposing the shared representation ``Z``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

Representation = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class ModelOutput:
    """``representation``: ``Z`` (one tensor), or one ``Z_t`` per task for multi-input data.
    ``predictions``: task name -> head output."""

    representation: Representation
    predictions: dict[str, torch.Tensor]


class MultiTaskModel(nn.Module):
    """Hard parameter sharing: ``prediction_t = head_t(encoder(x))`` (``docs/formulas.md#notation``).

    ``forward`` takes either one batch shared by every task (single-input data) or a mapping
    task -> batch (multi-input data, e.g. Office-31 domains), in which case each task's batch
    goes through the encoder separately and ``representation`` is a dict ``task -> Z_t``.
    """

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("MultiTaskModel needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.heads.keys())

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.encoder.parameters() if p.requires_grad)

    def task_parameters(self, task: str | None = None) -> Iterator[nn.Parameter]:
        heads = self.heads.values() if task is None else [self.heads[task]]
        return (p for head in heads for p in head.parameters() if p.requires_grad)

    def forward(self, inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> ModelOutput:
        if isinstance(inputs, Mapping):
            unknown = set(inputs) - set(self.heads)
            if unknown:
                raise KeyError(
                    f"inputs for unknown tasks {sorted(unknown)}; the model's tasks are "
                    f"{list(self.heads)}"
                )
            reps = {t: self.encoder(x) for t, x in inputs.items()}
            return ModelOutput(reps, {t: self.heads[t](z) for t, z in reps.items()})
        z = self.encoder(inputs)
        return ModelOutput(z, {t: head(z) for t, head in self.heads.items()})
