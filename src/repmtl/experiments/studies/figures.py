"""The studies' figures (the ``[plots]`` extra), in the style of :mod:`repmtl.experiments.figstyle`.

Each function takes a study's ``plot_data`` and the output folder and returns the figures it
wrote (none when there is nothing to draw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from repmtl.experiments.figstyle import (
    Figure,
    Patch,
    grouped_bars,
    new_figure,
    palette,
    save,
    style,
)

__all__ = ["data_bars", "distance_bars", "gridsearch_bars", "ranking_heatmap", "surrogate_bars"]


def ranking_heatmap(data: Mapping[str, Any], out: Path) -> list[Figure]:
    """|S − 0.5| per task metric (rows) and diagnostic (columns), one panel per benchmark."""
    panels = data.get("panels", [])
    if not panels:
        return []
    with style():
        width = sum(1.6 + 1.1 * len(p["columns"]) for p in panels) + 1.2
        height = 1.4 + 0.45 * max(len(p["rows"]) for p in panels)
        fig = new_figure(width, max(3.0, height))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        image = None
        for ax, panel in zip(axes, panels):
            values = np.array(panel["values"])
            image = ax.imshow(values, vmin=0.0, vmax=0.5, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(panel["columns"])), panel["columns"])
            ax.set_yticks(range(len(panel["rows"])), panel["rows"])
            ax.grid(False)
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.3 else "black")
            ax.set_title(f"{panel['benchmark']}, {panel.get('variant', 'bottom-up')} ({panel['methods']} methods)")
            ax.set_xlabel("diagnostic (final value)")
        axes[0].set_ylabel("task metric")
        fig.colorbar(image, ax=list(axes), label="|S − 0.5|", shrink=0.9)
        fig.suptitle("Ranking similarity of diagnostics and test metrics")
        return [save(fig, out, "ranking", "Ranking similarity",
                     "|S − 0.5| between the ranking of the methods by each diagnostic's final value and by each "
                     "task metric (0: unrelated, 0.5: the same or the reversed order; Mao et al. Eq. 11).")]


def _bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[float | None]], colours) -> None:
    grouped_bars(ax, groups, series, colours)
    ax.axhline(0, color="0.2", lw=0.9)


def surrogate_bars(data: Mapping[str, Any], out: Path) -> list[Figure]:
    """Relative change of each metric, representation level vs parameter level, per method."""
    bars = data.get("bars", [])
    if not bars:
        return []
    benchmarks = list(dict.fromkeys(b["benchmark"] for b in bars))
    with style():
        fig = new_figure(max(6.5, 0.7 * max(sum(b["benchmark"] == n for b in bars) for n in benchmarks) + 3.5),
                         3.6 * len(benchmarks))
        axes = fig.subplots(len(benchmarks), 1, squeeze=False)[:, 0]
        for ax, benchmark in zip(axes, benchmarks):
            rows = [b for b in bars if b["benchmark"] == benchmark]
            metrics = rows[0]["metrics"]
            colours = palette(metrics)
            series = {m: [r["changes"][i] for r in rows] for i, m in enumerate(metrics)}
            _bars(ax, [r["method"] for r in rows], series, colours)
            ax.set_ylabel("change, rep. vs param. (%)")
            ax.set_title(benchmark)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle("Representation-level surrogate: relative change of each test metric")
        return [save(fig, out, "surrogate", "Representation-level surrogate",
                     "Relative change of each test metric when the method runs on the representation-level "
                     "Gramian instead of the parameter-level one (mean over seeds; positive: better).")]


_KIND_COLOURS = {"grid best": "tab:red", "grid": "0.7", "fixed at AvgNorm mean": "tab:purple", "avgnorm": "tab:orange",
                 "ew": "0.3", "dynamic": "tab:blue"}


def gridsearch_bars(data: Mapping[str, Any], out: Path) -> list[Figure]:
    """Test Δp_task per setting, coloured by kind (grid, grid best, AvgNorm, dynamic)."""
    panels = [p for p in data.get("benchmarks", []) if p["labels"]]
    if not panels:
        return []
    with style():
        fig = new_figure(max(6.5, 0.45 * max(len(p["labels"]) for p in panels) + 3.0), 3.8 * len(panels))
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels):
            x = np.arange(len(panel["labels"]))
            ax.bar(x, panel["means"], 0.8, yerr=panel["stds"], capsize=3,
                   color=[_KIND_COLOURS[k] for k in panel["kinds"]], error_kw={"lw": 1, "ecolor": "0.25"})
            ax.axhline(0, color="0.2", lw=0.9, ls="--")
            ax.set_xticks(x, panel["labels"], rotation=40, ha="right", fontsize=8)
            ax.set_ylabel("test Δp_task (Δ_m) %")
            ax.set_title(panel["benchmark"])
            ax.grid(axis="x", visible=False)
        kinds = list(dict.fromkeys(k for p in panels for k in p["kinds"]))
        handles = [Patch(color=_KIND_COLOURS[k], label=k) for k in kinds]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), frameon=False)
        fig.suptitle("Fixed-weight grid vs AvgNorm vs dynamic weighting")
        return [save(fig, out, "gridsearch", "Grid search vs AvgNorm vs dynamic methods",
                     "Test Δp_task against single-task learning, mean ± std over seeds; the grid's winner "
                     "(red) is chosen on validation.")]


def data_bars(data: Mapping[str, Any], out: Path) -> list[Figure]:
    """Per-task test metric change against the clean / full-data run, per condition."""
    panels = data.get("panels", [])
    if not panels:
        return []
    with style():
        fig = new_figure(max(7.0, 0.8 * max(len(p["conditions"]) for p in panels) + 4.0), 3.8 * len(panels))
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels):
            colours = palette(list(panel["series"]))
            _bars(ax, panel["conditions"], panel["series"], colours)
            ax.set_ylabel("change vs clean, full data (%)")
            ax.set_title(panel["title"])
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle("Data quality and quantity")
        return [save(fig, out, "data", "Data quality and quantity",
                     "Relative change of each task's primary test metric against the run on clean, complete data "
                     "of the same kind (single- or multi-task), mean over seeds; positive: better.")]


def distance_bars(data: Mapping[str, Any], out: Path) -> list[Figure]:
    """Adapted L2 distance of shared features to each single-task model, per method."""
    panels = data.get("panels", [])
    if not panels:
        return []
    with style():
        fig = new_figure(max(6.5, 0.6 * max(len(p["methods"]) for p in panels) + 3.5), 3.8 * len(panels))
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels):
            colours = palette(list(panel["series"]))
            _bars(ax, panel["methods"], panel["series"], colours)
            ax.set_ylabel("feature distance to STL")
            ax.set_title(panel["benchmark"])
            ax.legend(title="single-task model", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle("Distance of multi-task shared features to single-task features")
        return [save(fig, out, "distance", "Feature distance to single-task models",
                     "Mean squared distance per feature between a 1×1 adaptor of the multi-task encoder's features "
                     "and each single-task encoder's features on test images, relative to the single-task features' "
                     "variance (lower: closer to STL); mean over seeds.")]
