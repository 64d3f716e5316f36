"""Benchmark presets: data, tasks, network and the paper's training settings, by name.

A preset module (``data/<name>.py`` or here) calls :func:`register_benchmark` with a
:class:`Benchmark`. The trainer and the CLI only use this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from repmtl.model import MultiTaskModel
from repmtl.tasks import Task


@dataclass(frozen=True)
class Splits:
    """Train / validation (model selection) / test data.

    Single-input benchmarks: each split is one ``Dataset`` yielding ``(input, {task: target})``.
    Multi-input benchmarks: each split is a mapping ``task -> Dataset`` yielding
    ``(input, target)`` for that task.
    """

    train: Dataset | Mapping[str, Dataset]
    val: Dataset | Mapping[str, Dataset]
    test: Dataset | Mapping[str, Dataset]


@dataclass(frozen=True)
class PlateauSchedule:
    """Reduce the lr when the validation selection score stops improving (PyTorch's
    ``ReduceLROnPlateau`` in ``mode="min"`` on the negated score, i.e. on the validation Δm when
    single-task baselines exist), stepped once per epoch. The fields are ``ReduceLROnPlateau``'s."""

    factor: float
    patience: int
    min_lr: float = 0.0
    threshold: float = 1e-4
    threshold_mode: str = "rel"  # rel | abs


@dataclass(frozen=True)
class TrainDefaults:
    """The paper's optimisation settings for a benchmark (all overridable from the CLI)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | sgd
    #: StepLR: multiply the lr by ``lr_gamma`` every ``lr_step`` epochs (None: constant lr)
    lr_step: int | None = None
    lr_gamma: float = 0.5
    #: ReduceLROnPlateau on the validation selection score (None: no plateau schedule)
    lr_plateau: PlateauSchedule | None = None
    eval_batch_size: int | None = None


@dataclass(frozen=True)
class BuildOptions:
    """Options a user may pass when building a benchmark."""

    data_root: Path | None = None
    encoder: str | None = None
    seed: int = 0
    pretrained: Path | None = None  # local weights file for the encoder (never downloaded)
    extra: dict[str, object] = field(default_factory=dict)
    #: where a preset may keep files derived from its data (a parsed data set): the run's output
    #: root ``<out>/.cache``, shared by every run under that ``--out``; ``None``: keep nothing
    cache_root: Path | None = None


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: how to build its tasks, data and network."""

    name: str
    description: str
    tasks: Callable[[BuildOptions], list[Task]]
    splits: Callable[[BuildOptions], Splits]
    model: Callable[[BuildOptions, list[Task]], MultiTaskModel]
    defaults: TrainDefaults
    multi_input: bool = False
    needs_data_root: bool = False
    encoders: tuple[str, ...] = ()
    #: also accepts external backbones ``timm:<model>`` / ``clip:<model>`` (``docs/backbones.md``)
    external_encoders: bool = False
    #: the published results start from ImageNet weights: warn when a run trains from random init
    expects_pretrained: bool = False
    #: the keys of ``BuildOptions.extra`` (``--option KEY=VALUE``) the preset reads
    options: tuple[str, ...] = ()

    def check_options(self, extra: Mapping[str, object]) -> None:
        unknown = sorted(set(extra) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) if self.options else "none"
            raise ValueError(f"benchmark {self.name!r} has no option(s) {unknown}; it accepts: {accepted}")


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    if benchmark.name in _BENCHMARKS:
        raise ValueError(f"benchmark {benchmark.name!r} registered twice")
    _BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def registered() -> dict[str, Benchmark]:
    """The benchmarks registered so far (``repmtl.data`` registers the presets on import)."""
    return dict(sorted(_BENCHMARKS.items()))
