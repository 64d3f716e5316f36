"""Feature distance to single-task models (Guo et al., "Revisit the Imbalance Optimization in
Multi-task Learning", Fig. 6): how far a multi-task model's shared features are from each
single-task model's, per method.

Recipe: several methods on one budget, with the single-task baselines (one per task and seed).

Analysis, for each multi-task run and each task ``t``, with the single-task model of ``t`` of the
same seed and budget (``checkpoints/best.pt``, loaded with ``weights_only=True``):

1. shared features ``Z_m`` (multi-task encoder) and ``Z_t`` (single-task encoder) of the same
   images: up to :data:`FIT_SAMPLES` validation images to fit the adaptor, up to
   :data:`EVAL_SAMPLES` test images to measure;
2. the adaptor is a 1×1 convolution (a linear map of the channels plus a bias, shared by all
   positions) from ``Z_m`` to ``Z_t``, fitted in closed form by ridge least squares (the
   optimum of the L2 loss an adaptor trained by SGD would approach);
3. the distance is the adaptor's mean squared error on the test images divided by the variance
   of ``Z_t`` (0: ``Z_m`` holds ``Z_t`` up to a linear map; 1: no better than ``Z_t``'s mean).

Distances are averaged over seeds. With two or more seeds, the same distance between two
single-task models of ``t`` (seeds ``s₀ → s₁``) is shown as a reference: what "as close as two
single-task trainings" means on this budget.

Single-input benchmarks only (multi-input benchmarks have one ``Z_t`` per task and input).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from repmtl.data import get_benchmark
from repmtl.experiments.aggregate import BaselineIndex, summarize
from repmtl.experiments.runs import RunRecord
from repmtl.experiments.studies.base import Budget, StudyOutput, StudyTable, fmt, header
from repmtl.model import MultiTaskModel
from repmtl.train.build import build_run
from repmtl.train.config import TrainConfig
from repmtl.train.resolve import build_options, resolve

__all__ = ["EVAL_SAMPLES", "FIT_SAMPLES", "METHODS", "adapted_distance", "analyse", "recipe"]

METHODS = ("ew", "avgnorm", "mgda", "pcgrad", "imtl", "nashmtl", "repmtl")
FIT_SAMPLES = 512
EVAL_SAMPLES = 256
RIDGE = 1e-3
_BATCH = 64


def recipe(benchmarks: Sequence[str], seeds: Sequence[int], budget: Budget) -> str:
    text = header("distance", "Feature distance to single-task models",
                  "Guo et al., Revisit the Imbalance Optimization in Multi-task Learning, Fig. 6", benchmarks, seeds)
    text += "\n" + budget.train_table()
    return text + "".join(f'\n[[methods]]\nname = "{m}"\n' for m in METHODS)


def adapted_distance(source_fit: torch.Tensor, target_fit: torch.Tensor, source_eval: torch.Tensor,
                     target_eval: torch.Tensor, ridge: float = RIDGE) -> float:
    """Relative error of the best 1×1 adaptor from ``source`` to ``target`` features (module
    doc, steps 2–3). Features are ``N×C`` or ``N×C×H×W``; ``source`` and ``target`` must have
    the same ``N`` and spatial size (channels may differ)."""
    def rows(z: torch.Tensor) -> torch.Tensor:
        z = z.double()
        return z.movedim(1, -1).reshape(-1, z.shape[1]) if z.dim() > 2 else z

    x, y = rows(source_fit), rows(target_fit)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"source and target features differ in positions: {tuple(source_fit.shape)} vs "
                         f"{tuple(target_fit.shape)}")
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc / len(xc)
    scale = float(gram.diagonal().mean()) or 1.0
    weights = torch.linalg.solve(gram + ridge * scale * torch.eye(len(gram), dtype=gram.dtype), xc.T @ yc / len(xc))
    xe, ye = rows(source_eval), rows(target_eval)
    prediction = (xe - x_mean) @ weights + y_mean
    variance = float(((ye - ye.mean(0)) ** 2).sum(1).mean())
    if variance == 0:
        raise ValueError("target features are constant on the evaluation images: the distance is undefined")
    return float(((prediction - ye) ** 2).sum(1).mean()) / variance


def _model(record: RunRecord) -> MultiTaskModel:
    """The run's network with its selected weights, built by the trainer's own
    :func:`~repmtl.train.build.build_run` from the run's ``config.json`` (so a single-task model
    and a multi-task one are made exactly as their runs made them), on the CPU. ``resolve`` is
    idempotent: a run's saved config passes through unchanged."""
    config = resolve(replace(record.train_config(), device="cpu"))
    model = build_run(config).model
    path = record.path / "checkpoints" / "best.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the distance study needs the runs' checkpoints")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def _images(config: TrainConfig, split: str, limit: int) -> torch.Tensor:
    data = getattr(get_benchmark(config.benchmark).splits(build_options(config)), split)
    return torch.stack([data[i][0] for i in range(min(limit, len(data)))])


def _features(model: MultiTaskModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(images[i:i + _BATCH]).representation for i in range(0, len(images), _BATCH)])


class _Cache:
    """Images per data configuration, networks per run folder and features per (run folder,
    images), each computed once."""

    def __init__(self) -> None:
        self._models: dict[Path, MultiTaskModel] = {}
        self._features: dict[tuple[Path, str], torch.Tensor] = {}
        self._images: dict[str, torch.Tensor] = {}

    def _data(self, config: TrainConfig, split: str) -> str:
        key = repr((config.benchmark, config.data_root, config.encoder, sorted(config.options.items()), config.seed,
                    split))
        if key not in self._images:
            self._images[key] = _images(config, split, FIT_SAMPLES if split == "val" else EVAL_SAMPLES)
        return key

    def _get(self, record: RunRecord, data: str) -> torch.Tensor:
        key = (record.path.resolve(), data)
        if key not in self._features:
            if key[0] not in self._models:
                self._models[key[0]] = _model(record)
            self._features[key] = _features(self._models[key[0]], self._images[data])
        return self._features[key]

    def distance(self, source: RunRecord, target: RunRecord) -> float:
        """:func:`adapted_distance` from ``source``'s features to ``target``'s, both on the images
        of ``target``'s data configuration."""
        fit, test = (self._data(target.train_config(), split) for split in ("val", "test"))
        return adapted_distance(self._get(source, fit), self._get(target, fit), self._get(source, test),
                                self._get(target, test))


def analyse(records: Sequence[RunRecord]) -> StudyOutput:
    output = StudyOutput()
    index = BaselineIndex(records)
    cache = _Cache()
    for comparison in summarize(records):
        output.warnings += comparison.warnings
        if get_benchmark(comparison.benchmark).multi_input:
            output.warnings.append(f"{comparison.benchmark}: multi-input benchmark; the distance study needs one "
                                   "shared representation per image")
            continue
        tasks = list(comparison.tasks)
        rows, data = [], []
        series: dict[str, list[float | None]] = {t: [] for t in tasks}
        stl_by_task: dict[str, dict[int, RunRecord]] = {t: {} for t in tasks}
        for setting in comparison.settings:
            per_task: dict[str, list[float]] = {t: [] for t in tasks}
            for run in setting.runs:
                stl = index.baselines(run, output.warnings)
                if stl is None:
                    continue
                for task in tasks:
                    stl_by_task[task].setdefault(run.seed, stl[task])
                    per_task[task].append(cache.distance(run, stl[task]))
            means = {t: statistics.fmean(v) if v else None for t, v in per_task.items()}
            stds = {t: statistics.stdev(v) if len(v) > 1 else None for t, v in per_task.items()}
            rows.append([setting.label, *(fmt(means[t], 3, std=stds[t]) for t in tasks),
                         str(max((len(v) for v in per_task.values()), default=0))])
            data.append({"benchmark": comparison.benchmark, "setting": setting.label,
                         **{f"distance_{t}": means[t] for t in tasks}, **{f"distance_{t}_std": stds[t] for t in tasks}})
            for task in tasks:
                series[task].append(means[task])
        reference = {}
        for task, by_seed in stl_by_task.items():
            seeds = sorted(by_seed)
            if len(seeds) >= 2:
                reference[task] = cache.distance(by_seed[seeds[1]], by_seed[seeds[0]])
        notes = [("Mean squared error of the best 1×1 (ridge least-squares) adaptor from the multi-task "
                  "encoder's features to each single-task encoder's, divided by the single-task features' "
                  f"variance, on up to {EVAL_SAMPLES} test images (fitted on up to {FIT_SAMPLES} validation "
                  "images); 0: the same features up to a linear map, 1: no better than their mean; mean ± std "
                  "over seeds.")]
        if reference:
            rows.append(["STL, another seed (reference)", *(fmt(reference.get(t), 3) for t in tasks), "1"])
            data.append({"benchmark": comparison.benchmark, "setting": "STL, another seed (reference)",
                         **{f"distance_{t}": reference.get(t) for t in tasks}})
            notes.append("Reference row: the same distance from the single-task model of one seed to that of another.")
        output.tables.append(StudyTable(f"{comparison.benchmark}: feature distance to single-task models",
                                        ["setting", *(f"to STL {t}" for t in tasks), "seeds"], rows, data, notes))
        output.plot_data.setdefault("panels", []).append({
            "benchmark": comparison.benchmark, "methods": [s.label for s in comparison.settings], "series": series})
    return output
