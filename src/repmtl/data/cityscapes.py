"""Cityscapes (7- or 19-class segmentation, disparity) in the MTAN / LibMTL preprocessed layout.

On disk (``docs/formulas.md#evaluation-on-disk-formats``)::

    root/train/{image,label,depth}/<i>.npy   2975 samples
    root/val/{image,label,depth}/<i>.npy     500 samples (the test split)

``image`` ``128×256×3`` float, ``label`` ``128×256`` (−1 = ignore). The 7-class labels are in
``label/`` or, in some releases, ``label_7/`` (both accepted; ``label/`` wins when both exist);
``classes=19`` reads ``label_19/``. ``depth`` ``128×256×1`` is **inverse depth (disparity)**,
about 0–0.5, 0 = invalid; the depth task and its metrics work on it directly, as the papers do.

Splits as NYUv2: official ``val`` = test, a fixed seeded 10% of ``train`` = validation.

Augmentation (random scale-crop + flip): on a zoom by ``s`` disparity is **multiplied** by
``s`` (the scene looks ``s`` times closer, so inverse depth grows). MTAN / LibMTL divide it as if
it were depth; ``extra["disparity_scaling"] = "divide"`` reproduces that. ``BuildOptions.extra``
also takes ``classes`` (7 or 19), ``val_fraction``, ``split_seed``, ``augment``, ``image_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.data._dense import (
    DEPTH,
    SEGMENTATION,
    dense_tasks,
    npy_splits,
    parse_extra,
    split_options,
)
from repmtl.data._npy import TargetSpec
from repmtl.model import MultiTaskModel
from repmtl.nets.deeplab import build_deeplab
from repmtl.tasks import Task

IMAGE_SIZE = (128, 256)
TASKS = (SEGMENTATION, DEPTH)
LABEL_FOLDERS = {7: ("label", "label_7"), 19: ("label_19",)}


def specs(classes: int = 7, disparity_scaling: str = "multiply") -> list[TargetSpec]:
    if classes not in LABEL_FOLDERS:
        raise ValueError(f"Cityscapes has 7- or 19-class labels, not {classes}")
    if disparity_scaling not in ("multiply", "divide"):
        raise ValueError(f"disparity_scaling must be 'multiply' or 'divide', got {disparity_scaling!r}")
    kind = "disparity" if disparity_scaling == "multiply" else "depth"
    return [
        TargetSpec(SEGMENTATION, LABEL_FOLDERS[classes], "label", f"H×W class map (0..{classes - 1}, -1 = ignore)"),
        TargetSpec(DEPTH, ("depth",), kind, "H×W×1 inverse depth / disparity (0 = invalid)"),
    ]


def cityscapes_splits(
    root: str | Path,
    classes: int = 7,
    tasks: Sequence[str] = TASKS,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    augment: bool = True,
    disparity_scaling: str = "multiply",
    check_headers: bool = True,
    image_size: tuple[int, int] | None = IMAGE_SIZE,
) -> Splits:
    """Train (augmented) / validation (held out from train) / test (official ``val``)."""
    chosen = [s for s in specs(classes, disparity_scaling) if s.task in tasks]
    return npy_splits(root, chosen, classes, image_size, val_fraction, split_seed, augment, check_headers)


def _classes(options: BuildOptions) -> int:
    return int(parse_extra(options.extra, "classes", 7))


def _tasks(options: BuildOptions) -> list[Task]:
    return dense_tasks(TASKS, _classes(options))


def _splits(options: BuildOptions) -> Splits:
    if options.data_root is None:
        raise ValueError("cityscapes needs a data root (the folder holding train/ and val/)")
    extra = options.extra
    return cityscapes_splits(
        options.data_root,
        classes=_classes(options),
        **split_options(extra, IMAGE_SIZE),
        disparity_scaling=str(parse_extra(extra, "disparity_scaling", "multiply")),
    )


def _model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    outputs = {SEGMENTATION: _classes(options), DEPTH: 1}
    return build_deeplab(
        {t.name: outputs[t.name] for t in tasks}, encoder=options.encoder or "resnet50", pretrained=options.pretrained
    )


CITYSCAPES = register_benchmark(
    Benchmark(
        name="cityscapes",
        description="Cityscapes 128×256: 7-class segmentation, disparity; DeepLabV3 (dilated ResNet, ASPP heads)",
        tasks=_tasks,
        splits=_splits,
        model=_model,
        defaults=TrainDefaults(epochs=200, batch_size=64, lr=1e-4, weight_decay=1e-5, optimizer="adam", lr_step=100, lr_gamma=0.5),
        needs_data_root=True,
        encoders=("resnet50", "resnet18"),
        external_encoders=True,
        expects_pretrained=True,
        options=("classes", "val_fraction", "split_seed", "augment", "image_size", "disparity_scaling"),
    )
)
