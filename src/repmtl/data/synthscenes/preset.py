"""The ``synthscenes`` benchmark preset: its tasks, splits from ``BuildOptions.extra``, models
and its registration (:func:`repmtl.benchmarks.register_benchmark`)."""

from __future__ import annotations

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.data._dense import dense_tasks, parse_extra, parse_size
from repmtl.data.synthscenes.dataset import (
    IMAGE_SIZE,
    SIZES,
    TASK_OUTPUTS,
    synthscenes_splits,
)
from repmtl.data.synthscenes.scene import CLASSES
from repmtl.model import MultiTaskModel
from repmtl.nets.deeplab import build_deeplab
from repmtl.nets.small_dense import build_small_dense
from repmtl.tasks import Task


def _tasks(options: BuildOptions) -> list[Task]:
    return dense_tasks(tuple(TASK_OUTPUTS), len(CLASSES))


def _splits(options: BuildOptions) -> Splits:
    extra = options.extra
    sizes = {k: int(parse_extra(extra, f"n_{k}", v)) for k, v in SIZES.items()}
    return synthscenes_splits(
        seed=int(parse_extra(extra, "data_seed", 0)),
        sizes=sizes,
        size=parse_size(extra, "size", IMAGE_SIZE),
        augment=bool(parse_extra(extra, "augment", False)),
        views=int(parse_extra(extra, "views", 1)),
    )


def _model(options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    outputs = {t.name: TASK_OUTPUTS[t.name] for t in tasks}
    encoder = options.encoder or "small"
    if encoder == "small":
        return build_small_dense(outputs)
    # a 48×64 input gives a 6×8 map at stride 8: small atrous rates
    return build_deeplab(outputs, encoder=encoder, pretrained=options.pretrained, rates=(1, 2, 3))


SYNTHSCENES = register_benchmark(
    Benchmark(
        name="synthscenes",
        description="Procedural rooms 48×64 (ray-cast, no data files): 6-class segmentation, depth, normals; CPU-sized",
        tasks=_tasks,
        splits=_splits,
        model=_model,
        defaults=TrainDefaults(epochs=20, batch_size=32, lr=1e-3, weight_decay=0.0, optimizer="adam", eval_batch_size=128),
        encoders=("small", "resnet18"),
        external_encoders=True,
        options=("n_train", "n_val", "n_test", "size", "data_seed", "augment", "views"),
    )
)
