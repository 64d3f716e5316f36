"""What the dense benchmark presets (NYUv2, Cityscapes, synthscenes) share on top of the
``.npy`` reader (:mod:`repmtl.data._npy`): the task names and :func:`dense_tasks` (losses +
metrics), :func:`carve_validation` (a fixed, seeded part of the training files held out for model
selection: the official ``val`` folder is the test split, as in the papers), :func:`npy_splits`,
and the ``--option`` parsing (:func:`parse_extra`, :func:`parse_size`, :func:`split_options`,
:func:`make_augment`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from repmtl.benchmarks import Splits
from repmtl.data._npy import NpyDenseDataset, TargetSpec
from repmtl.data.transforms import DenseAugment
from repmtl.metrics.depth import DepthMetric
from repmtl.metrics.losses import DepthL1Loss, NormalCosineLoss, SegmentationLoss
from repmtl.metrics.normals import NormalMetric
from repmtl.metrics.segmentation import SegmentationMetric
from repmtl.tasks import Task

#: the task names every dense benchmark uses (keys of heads, batch targets and losses)
SEGMENTATION, DEPTH, NORMAL = "segmentation", "depth", "normal"


def carve_validation(num_files: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(num_files)`` into (train, validation) positions: a seeded random
    ``fraction`` (rounded, at least one file when ``fraction > 0``) is held out. The same
    ``(num_files, fraction, seed)`` always gives the same split, whatever the run's seed."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    n_val = 0 if fraction == 0 else max(1, round(num_files * fraction))
    if n_val >= num_files:
        raise ValueError(f"cannot hold out {n_val} of {num_files} training files for validation")
    order = np.random.default_rng(seed).permutation(num_files)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def dense_tasks(
    names: Sequence[str], num_classes: int, median: str = "histogram", ignore_index: int = -1
) -> list[Task]:
    """Tasks ``segmentation`` (primary ``miou``), ``depth`` (``abs_err``), ``normal``
    (``mean_angle``) with the losses of :mod:`repmtl.metrics.losses`."""
    makers: dict[str, Callable[[], Task]] = {
        SEGMENTATION: lambda: Task(
            SEGMENTATION,
            SegmentationLoss(ignore_index),
            _Factory(SegmentationMetric, num_classes=num_classes, ignore_index=ignore_index),
            primary="miou",
        ),
        DEPTH: lambda: Task(DEPTH, DepthL1Loss(), _Factory(DepthMetric), primary="abs_err"),
        NORMAL: lambda: Task(NORMAL, NormalCosineLoss(), _Factory(NormalMetric, median=median), primary="mean_angle"),
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"unknown dense tasks {unknown}; choose from {list(makers)}")
    return [makers[n]() for n in names]


class _Factory:
    """A picklable ``() -> metric`` (lambdas cannot go to DataLoader workers / checkpoints)."""

    def __init__(self, cls: type, **kwargs: object) -> None:
        self.cls, self.kwargs = cls, kwargs

    def __call__(self) -> Any:
        return self.cls(**self.kwargs)

    def __repr__(self) -> str:
        return f"{self.cls.__name__}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


def parse_extra(extra: Mapping[str, object], key: str, default: Any, cast: Callable[[Any], Any] = lambda x: x) -> Any:
    """Read an option from ``BuildOptions.extra`` (strings from the CLI are parsed as Python
    literals: ``"0.1"``, ``"(64, 64)"``, ``"True"``)."""
    if key not in extra:
        return default
    value = extra[key]
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    return cast(value)


def parse_size(extra: Mapping[str, object], key: str, default: tuple[int, int] | None) -> tuple[int, int] | None:
    """An image size option: ``HxW`` (``48x64``), a pair (``(48, 64)`` or a TOML list), one
    integer (a square) or ``None``; anything else is refused with the option's name."""
    if key not in extra:
        return default
    value = extra[key]
    if isinstance(value, str):
        height, sep, width = value.lower().partition("x")
        if sep and height.strip().isdigit() and width.strip().isdigit():
            return int(height), int(width)
    value = parse_extra(extra, key, default)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"option {key}={extra[key]!r}: expected HEIGHTxWIDTH, e.g. 48x64")


def make_augment(specs: Sequence[TargetSpec], enabled: bool, scales: Sequence[float] = (1.0, 1.2, 1.5)) -> DenseAugment | None:
    """The training augmentation (scale-crop and flip) of ``specs``' targets, or ``None``."""
    if not enabled:
        return None
    return DenseAugment({s.task: s.kind for s in specs}, scales=scales, flip_p=0.5)


def npy_splits(
    root: str | Path,
    specs: Sequence[TargetSpec],
    num_classes: int,
    image_size: tuple[int, int] | None,
    val_fraction: float,
    split_seed: int,
    augment: bool,
    check_headers: bool,
) -> Splits:
    """Train (augmented) / validation (carved from ``train`` with ``split_seed``) / test (the
    official ``val`` folder) of a preprocessed ``.npy`` dataset."""
    common: dict[str, Any] = {"num_classes": num_classes, "image_size": image_size, "check_headers": False}
    full = NpyDenseDataset(root, "train", specs, **common)
    train_idx, val_idx = carve_validation(len(full), val_fraction, split_seed)
    train = NpyDenseDataset(root, "train", specs, indices=train_idx, augment=make_augment(specs, augment), **common)
    val = NpyDenseDataset(root, "train", specs, indices=val_idx, **common)
    test = NpyDenseDataset(root, "val", specs, **common)
    if check_headers:
        full.check_headers()
        test.check_headers()
    return Splits(train=train, val=val, test=test)


def split_options(extra: Mapping[str, object], image_size: tuple[int, int]) -> dict[str, object]:
    """The ``--option`` keys every ``.npy`` preset reads for its splits."""
    return {
        "val_fraction": float(parse_extra(extra, "val_fraction", 0.1)),
        "split_seed": int(parse_extra(extra, "split_seed", 0)),
        "augment": bool(parse_extra(extra, "augment", True)),
        "image_size": parse_size(extra, "image_size", image_size),
    }
