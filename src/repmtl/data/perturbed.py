"""``perturbed-<benchmark>``: any single- or multi-input benchmark with corrupted labels of one
task and/or a fraction of its training data, for the data quality and quantity study (Guo et
al., "Revisit the Imbalance Optimization in Multi-task Learning", Sec. V-C and Table V).

Options (``--option KEY=VALUE`` or a sweep's ``options`` table), beside the base benchmark's:

* ``noise_task``: the task whose *training* labels are corrupted; ``noise``: how much.
  The corruption follows the target's kind (read from the target tensor):

  - classification (a scalar class index): symmetric label noise: with probability ``noise``
    the label becomes one of the *other* classes, uniformly;
  - segmentation (an ``H×W`` class map, ``−1`` ignored): per sample, up to five of the
    classes present are picked, and each picked class's pixels are relabelled, with
    probability ``noise`` (Guo et al.: 0.5), to another class drawn uniformly;
  - depth (``1×H×W``): Gaussian noise of standard deviation ``noise`` × the sample's standard
    deviation over valid (non-zero) pixels, on valid pixels only, clipped at 0;
  - surface normals (``3×H×W``): Gaussian noise of standard deviation ``noise`` on each
    component of valid (non-zero) pixels, renormalised to unit length.

  The corruption of sample ``i`` is drawn from a generator seeded by (``perturb_seed``, ``i``),
  so it is the same in every epoch and every run: a fixed noisy data set. Validation and test
  data stay clean.
* ``fraction``: keep this fraction of the training set (``0 < fraction ≤ 1``), a random subset
  drawn with ``perturb_seed``; for multi-input benchmarks, of every task's training set, or
  only of ``fraction_task``'s when that is given.
* ``scenes``: keep this many *whole scenes* of the training set: every sample of each kept
  scene, the scenes drawn with ``perturb_seed``. For benchmarks whose training data say which
  scene each sample shows (a ``scene_ids()`` method): ``synthscenes`` with its ``views``
  option (``views=4``: four camera views of each room; with ``views=1`` every sample is its
  own scene, so this is a subset of samples). Not with ``fraction`` (one subset at a time).
  Office has no whole-source subset: each source (domain) is a task of its own, so dropping a
  source drops a task; ``fraction`` with ``fraction_task`` shrinks one source instead.

The number of classes is read from the model's head output for one training sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    register_benchmark,
    registered,
)
from repmtl.data import cityscapes, multidigits, nyuv2, office, synthscenes  # noqa: F401  (registers the bases)
from repmtl.model import MultiTaskModel
from repmtl.tasks import Task

__all__ = ["BASES", "NoisyLabels", "corrupt", "perturbed", "whole_scenes", "whole_scenes_available"]

#: benchmarks that get a ``perturbed-`` variant
BASES = ("multidigits", "synthscenes", "nyuv2", "cityscapes", "office31", "officehome")
OPTIONS = ("noise_task", "noise", "fraction", "fraction_task", "scenes", "perturb_seed")
_MAX_SEGMENTATION_CLASSES = 5


def corrupt(target: torch.Tensor, noise: float, classes: int | None, rng: np.random.Generator) -> torch.Tensor:
    """One corrupted copy of ``target`` (module doc); ``classes`` is needed for class labels."""
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        if classes is None or classes < 2:
            raise ValueError(f"label noise on class labels needs at least 2 classes, got {classes}")
        if target.dim() == 0:
            if rng.random() >= noise:
                return target
            other = int(rng.integers(classes - 1))
            return torch.tensor(other + (other >= int(target)), dtype=target.dtype)
        out = target.clone()
        present = [int(c) for c in torch.unique(target) if c >= 0]
        picked = rng.permutation(present)[:_MAX_SEGMENTATION_CLASSES] if present else []
        for c in picked:
            if rng.random() < noise:
                other = int(rng.integers(classes - 1))
                out[target == c] = other + (other >= c)
        return out
    valid = target.abs().sum(0, keepdim=True) > 0 if target.dim() == 3 else target != 0
    if target.dim() == 3 and target.shape[0] == 3:  # surface normals
        noisy = target + torch.from_numpy(rng.normal(0.0, noise, target.shape).astype(np.float32))
        noisy = noisy / noisy.norm(dim=0, keepdim=True).clamp_min(1e-8)
        return torch.where(valid, noisy, target)
    values = target[valid.expand_as(target)]
    scale = float(values.std()) if values.numel() > 1 else 0.0
    noisy = target + torch.from_numpy(rng.normal(0.0, noise * scale, target.shape).astype(np.float32))
    return torch.where(valid.expand_as(target), noisy.clamp_min(0.0), target)


class NoisyLabels(Dataset):
    """``base`` with the targets of ``task`` corrupted, the same way at every access. Items are
    ``(input, {task: target})``, or ``(input, target)`` when ``task`` is ``None`` (one task's
    data set of a multi-input benchmark)."""

    def __init__(self, base: Dataset, task: str | None, noise: float, classes: int | None, seed: int) -> None:
        self.base, self.task, self.noise, self.classes, self.seed = base, task, noise, classes, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index]
        rng = np.random.default_rng([self.seed, index])
        if self.task is None:
            return x, corrupt(y, self.noise, self.classes, rng)
        return x, {**y, self.task: corrupt(y[self.task], self.noise, self.classes, rng)}


def _float(extra: Mapping[str, object], key: str, default: float | None) -> float | None:
    value = extra.get(key, default)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"option {key} must be a number, got {value!r}") from exc


def _base_options(options: BuildOptions) -> BuildOptions:
    return replace(options, extra={k: v for k, v in options.extra.items() if k not in OPTIONS})


def _classes(base: Benchmark, options: BuildOptions, tasks: list[Task], train, task: str) -> int:
    sample = train[task][0][0] if isinstance(train, Mapping) else train[0][0]
    model: MultiTaskModel = base.model(options, tasks)
    model.eval()
    with torch.no_grad():
        inputs = {task: sample[None]} if isinstance(train, Mapping) else sample[None]
        return int(model(inputs).predictions[task].shape[1])


def _subset(data: Dataset, fraction: float, seed: int) -> Dataset:
    keep = max(1, math.floor(fraction * len(data)))
    order = np.random.default_rng([seed, 1]).permutation(len(data))[:keep]
    return Subset(data, sorted(order.tolist()))


def whole_scenes(data: Dataset, scenes: int, seed: int, benchmark: str) -> Subset:
    """Every sample of ``scenes`` scenes of ``data`` drawn with ``seed`` (module doc, ``scenes``);
    the samples keep their order."""
    scene_ids = getattr(data, "scene_ids", None)
    if scene_ids is None:
        raise ValueError(f"option scenes: the training data of {benchmark} do not say which scene a sample shows; "
                         "use fraction instead (whole scenes exist for synthscenes)")
    ids = list(scene_ids())
    distinct = sorted(set(ids))
    if not 1 <= scenes <= len(distinct):
        raise ValueError(f"option scenes must be an integer in 1..{len(distinct)} (the training scenes of "
                         f"{benchmark}), got {scenes}")
    kept = {distinct[i] for i in np.random.default_rng([seed, 2]).permutation(len(distinct))[:scenes]}
    return Subset(data, [i for i, scene in enumerate(ids) if scene in kept])


def whole_scenes_available(benchmark: str, views: int) -> int:
    """How many whole training scenes ``benchmark`` has at ``views`` camera views per scene
    (its default sizes), or 0 when it has no ``views`` option or needs a data folder."""
    bench = registered()[benchmark]
    if "views" not in bench.options or bench.needs_data_root or bench.multi_input:
        return 0
    train = bench.splits(BuildOptions(extra={"views": views})).train
    scene_ids = getattr(train, "scene_ids", None)
    return len(set(scene_ids())) if scene_ids is not None else 0


def perturbed(base: Benchmark) -> Benchmark:
    """The ``perturbed-`` variant of ``base`` (module doc)."""

    def splits(options: BuildOptions) -> Splits:
        extra = options.extra
        inner = _base_options(options)
        result = base.splits(inner)
        seed = int(extra.get("perturb_seed", 0))
        task = extra.get("noise_task")
        noise = _float(extra, "noise", None)
        fraction = _float(extra, "fraction", 1.0)
        tasks = base.tasks(inner)
        names = [t.name for t in tasks]
        if (task is None) != (noise is None):
            raise ValueError("options noise_task and noise go together (e.g. noise_task=segmentation noise=0.5)")
        if task is not None and task not in names:
            raise ValueError(f"noise_task {task!r} is not a task of {base.name}; tasks: {names}")
        if noise is not None and not (0 <= noise and math.isfinite(noise)):
            raise ValueError(f"option noise must be a finite number ≥ 0, got {noise}")
        if not 0 < fraction <= 1:
            raise ValueError(f"option fraction must be in (0, 1], got {fraction}")
        fraction_task = extra.get("fraction_task")
        if fraction_task is not None and (not base.multi_input or fraction_task not in names):
            raise ValueError(f"fraction_task is for multi-input benchmarks and must name a task of {base.name}")
        scenes = extra.get("scenes")
        if scenes is not None:
            if isinstance(scenes, str) and scenes.strip().isdigit():
                scenes = int(scenes)
            if not isinstance(scenes, int) or isinstance(scenes, bool):
                raise ValueError(f"option scenes must be a whole number of scenes, got {scenes!r}")
            if fraction < 1:
                raise ValueError("options scenes and fraction are two kinds of subset: give one of them")
        train = result.train
        if task is not None:
            classes = None
            sample_target = (train[task][0][1] if base.multi_input else train[0][1][task])
            if not torch.is_floating_point(sample_target):
                classes = _classes(base, inner, tasks, train, task)
            if base.multi_input:
                train = {**train, task: NoisyLabels(train[task], None, noise, classes, seed)}
            else:
                train = NoisyLabels(train, task, noise, classes, seed)
        if fraction < 1:
            if base.multi_input:
                train = {t: _subset(d, fraction, seed) if fraction_task in (None, t) else d for t, d in train.items()}
            else:
                train = _subset(train, fraction, seed)
        if scenes is not None:
            if base.multi_input:
                raise ValueError(f"option scenes is for single-input benchmarks; {base.name} is multi-input")
            train = whole_scenes(train, scenes, seed, base.name)
        return Splits(train, result.val, result.test)

    return Benchmark(
        name=f"perturbed-{base.name}",
        description=f"{base.name} with label noise on one task and/or a training subset (data study)",
        tasks=lambda options: base.tasks(_base_options(options)),
        splits=splits,
        model=lambda options, tasks: base.model(_base_options(options), tasks),
        defaults=base.defaults,
        multi_input=base.multi_input,
        needs_data_root=base.needs_data_root,
        encoders=base.encoders,
        external_encoders=base.external_encoders,
        options=tuple(base.options) + OPTIONS,
    )


for _name in BASES:  # the bases are modules this one imports, so they are registered by now
    register_benchmark(perturbed(registered()[_name]))
