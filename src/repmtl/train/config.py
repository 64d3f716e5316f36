"""The resolved configuration of a training run (saved as ``config.json`` in the run folder)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repmtl.train.runfolder import default_run_name

#: informational keys written into config.json beside the fields (ignored when read back)
DERIVED_KEYS = {"tasks"}


@dataclass
class TrainConfig:
    """Everything that determines a run. ``None`` fields take the benchmark's defaults when
    the run is resolved (:meth:`resolved`)."""

    benchmark: str = "multidigits"
    method: str = "ew"
    method_args: dict[str, Any] = field(default_factory=dict)
    level: str | None = None
    regularizer: str | None = None
    regularizer_args: dict[str, Any] = field(default_factory=dict)
    loss_transform: str | None = None
    single_task: str | None = None
    seed: int = 0
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    device: str = "cpu"
    out: str = "runs"
    name: str | None = None
    data_root: str | None = None
    encoder: str | None = None
    pretrained: str | None = None
    #: keep the encoder's weights and normalisation statistics fixed (repmtl.nets.frozen)
    freeze_encoder: bool = False
    #: the multi-task architecture built around the benchmark's network (``docs/architectures.md``)
    architecture: str = "hps"
    architecture_args: dict[str, Any] = field(default_factory=dict)
    #: benchmark-specific options (``--option KEY=VALUE``), e.g. Cityscapes ``classes=19``
    options: dict[str, Any] = field(default_factory=dict)
    diagnostics_every: int | None = None
    #: "auto" (reuse the method's Gramian) or "representation" (comparable across methods)
    diagnostics_level: str = "auto"
    log_every: int = 10
    num_workers: int = 0
    progress: bool = True
    #: "fp32", or "bf16": the forward and losses under autocast (Gramians, solvers, penalties fp32)
    precision: str = "fp32"
    #: consecutive non-finite steps (each skipped) after which the run stops (1: at the first)
    max_bad_steps: int = 5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in DERIVED_KEYS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        return cls(**data)

    def run_name(self) -> str:
        """The run folder's name: ``name``, else :func:`~repmtl.train.runfolder.default_run_name`."""
        return self.name if self.name is not None else default_run_name(self)

    def run_dir(self) -> Path:
        return Path(self.out) / self.benchmark / self.run_name()

    def budget_key(self) -> str:
        """A short hash of what makes two runs' training budgets comparable (for STL caching)."""
        keys = ("benchmark", "seed", "epochs", "max_steps", "batch_size", "lr", "weight_decay",
                "data_root", "encoder", "pretrained", "options")
        if self.precision != "fp32":  # fp32 budgets keep the keys they had before precision existed
            keys += ("precision",)
        budget = {k: getattr(self, k) for k in keys}
        if self.freeze_encoder:  # only when set, so the keys of existing runs stay the same
            budget["freeze_encoder"] = True
        blob = json.dumps(budget, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]
