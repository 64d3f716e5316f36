"""NYUv2 (13-class segmentation, depth, surface normals) in the MTAN / LibMTL preprocessed layout.

On disk (``docs/formulas.md#evaluation-on-disk-formats``)::

    root/train/{image,label,depth,normal}/<i>.npy   795 samples
    root/val/{image,label,depth,normal}/<i>.npy     654 samples (the test split)

``image`` ``288×384×3`` float, ``label`` ``288×384`` (−1 = ignore, 0..12), ``depth``
``288×384×1`` (metres, 0 = invalid), ``normal`` ``288×384×3`` (unit, 0 = invalid).

Splits: the official ``val`` folder is the **test** split, as in the papers; a fixed 10% of
``train`` (seed 0, independent of the run's seed) is held out as the **validation** split for
model selection, and the rest is trained on with the papers' augmentation (random scale-crop
1.0/1.2/1.5 and horizontal flip; see :mod:`repmtl.data.transforms`). ``BuildOptions.extra``
may override ``val_fraction``, ``split_seed``, ``augment`` and ``image_size`` (``None``: any
size, consistent across files).
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
    NORMAL,
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

NUM_CLASSES = 13
IMAGE_SIZE = (288, 384)
TASKS = (SEGMENTATION, DEPTH, NORMAL)
TARGETS = {
    SEGMENTATION: TargetSpec(SEGMENTATION, ("label",), "label", "H×W class map (0..12, -1 = ignore)"),
    DEPTH: TargetSpec(DEPTH, ("depth",), "depth", "H×W×1 depth in metres (0 = invalid)"),
    NORMAL: TargetSpec(NORMAL, ("normal",), "normal", "H×W×3 unit normals (0 = invalid)"),
}
OUTPUTS = {SEGMENTATION: NUM_CLASSES, DEPTH: 1, NORMAL: 3}


def nyuv2_splits(
    root: str | Path,
    tasks: Sequence[str] = TASKS,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    augment: bool = True,
    check_headers: bool = True,
    image_size: tuple[int, int] | None = IMAGE_SIZE,
) -> Splits:
    """Train (augmented) / validation (held out from train) / test (official ``val``)."""
    specs = [TARGETS[t] for t in tasks]
    return npy_splits(root, specs, NUM_CLASSES, image_size, val_fraction, split_seed, augment, check_headers)


def _tasks(options: BuildOptions) -> list[Task]:
    return dense_tasks(TASKS, NUM_CLASSES, median=str(parse_extra(options.extra, "median", "histogram")))


def _splits(options: BuildOptions) -> Splits:
    if options.data_root is None:
        raise ValueError("nyuv2 needs a data root (the folder holding train/ and val/)")
    extra = options.extra
    return nyuv2_splits(
        options.data_root,
        **split_options(extra, IMAGE_SIZE),
    )


def _model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    return build_deeplab(
        {t.name: OUTPUTS[t.name] for t in tasks}, encoder=options.encoder or "resnet50", pretrained=options.pretrained
    )


NYUV2 = register_benchmark(
    Benchmark(
        name="nyuv2",
        description="NYUv2 288×384: 13-class segmentation, depth, normals; DeepLabV3 (dilated ResNet, ASPP heads)",
        tasks=_tasks,
        splits=_splits,
        model=_model,
        defaults=TrainDefaults(epochs=200, batch_size=8, lr=1e-4, weight_decay=1e-5, optimizer="adam", lr_step=100, lr_gamma=0.5),
        needs_data_root=True,
        encoders=("resnet50", "resnet18"),
        external_encoders=True,
        expects_pretrained=True,
        options=("val_fraction", "split_seed", "augment", "image_size", "median"),
    )
)
