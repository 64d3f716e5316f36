"""Paper-style figures of a comparison, as PNG and PDF, in one style.

For each benchmark (a :class:`~repmtl.experiments.aggregate.Comparison`):

* ``improvement``: per-task improvement over single-task learning (%, mean over the task's
  metrics, averaged over seeds) as a radar chart, one polygon per method, the STL level as a
  dashed ring (Guo et al., "Revisit the Imbalance Optimization in Multi-task Learning", Fig. 4).
  With fewer than three tasks a radar has no area, so grouped bars are drawn instead;
* ``alpha``: power-law exponent α of the encoder and of each head at the last logged epoch
  (mean over layers, then over seeds; error bars: std over seeds), bars per method, with the
  well-trained band α ∈ [2, 4] (Rep-MTL, Wang et al. ICCV 2025, Sec. 4.3);
* ``geometry``: GDS, GMS and FD over training, a line per method (Mao et al., "Rethinking
  Resource Competition in Multi-Task Learning", Figs. 4–6);
* ``cos_to_update`` and ``grad_norms``: the cosine between each task gradient and the applied
  update, and each task's gradient norm, over training, one panel per method (Guo et al.,
  Figs. 7–8 and 10–16). Both are measured on the Gramian named in the run logs (``diag/level``):
  ``representation`` (``∂L_t/∂Z`` at the encoder output) or ``parameters`` (the method's own
  Gramian, the last shared layer for AvgNorm).

Curves are the mean over seeds at the steps every seed logged, with a ±1 std band; with 40 or
more points, a centred moving average over 1/20 of them is drawn (the caption says so). Values
come from the runs' ``steps.jsonl`` / ``epochs.jsonl`` (keys of
:mod:`repmtl.diagnostics.live`); a figure whose values were not logged is skipped with the
reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repmtl import logkeys as K
from repmtl.experiments.aggregate import Comparison, Setting
from repmtl.experiments.figstyle import (
    WELL_TRAINED,
    Figure,
    FuncFormatter,
    MaxNLocator,
    grouped_bars,
    moving_average,
    new_figure,
    palette,
    plain_log_axis,
    save,
    style,
)
from repmtl.experiments.runs import finite, read_jsonl

__all__ = ["Figure", "plot_comparison"]

_SMOOTH_MIN = 40


# ---- series over seeds -----------------------------------------------------------------------


@dataclass
class _Curve:
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray | None
    seeds: int
    smoothed: int | None = None  # moving-average window, if applied


def _log(run_dir: Path, name: str, cache: dict[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    path = run_dir / name
    if path not in cache:
        cache[path] = read_jsonl(path)[0]
    return cache[path]


def _seed_series(rows: Sequence[dict[str, Any]], key: str) -> dict[float, float]:
    out = {}
    for row in rows:
        value, step = finite(row.get(key)), finite(row.get(K.STEP.key()))
        if value is not None and step is not None:
            out[step] = value
    return out


def _curve(setting: Setting, key: str, cache: dict) -> _Curve | None:
    per_seed = [s for run in setting.runs if (s := _seed_series(_log(run.path, "steps.jsonl", cache), key))]
    if not per_seed:
        return None
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    if not steps:
        per_seed, steps = per_seed[:1], sorted(per_seed[0])
    values = np.array([[s[x] for x in steps] for s in per_seed])
    curve = _Curve(np.array(steps), values.mean(axis=0), values.std(axis=0, ddof=1) if len(per_seed) > 1 else None,
                   len(per_seed))
    if len(steps) >= _SMOOTH_MIN:
        window = max(2, len(steps) // 20)
        curve.mean = moving_average(curve.mean, window)
        curve.std = None if curve.std is None else moving_average(curve.std, window)
        curve.smoothed = window
    return curve


def _draw(ax, curve: _Curve, colour: Any, label: str, *, crowded: bool = False) -> None:
    ax.plot(curve.x, curve.mean, color=colour, lw=1.6, label=label, marker="o" if curve.x.size <= 25 else None, ms=3)
    if curve.std is not None:
        ax.fill_between(curve.x, curve.mean - curve.std, curve.mean + curve.std, color=colour,
                        alpha=0.07 if crowded else 0.15, lw=0)


def _curve_note(curves: Sequence[_Curve]) -> str:
    seeds = sorted({c.seeds for c in curves})
    windows = sorted({c.smoothed for c in curves if c.smoothed})
    note = f" Mean over {'/'.join(map(str, seeds))} seed(s)" + (", band ±1 std." if max(seeds) > 1 else ".")
    if windows:
        note += f" Centred moving average over {'–'.join(map(str, windows))} logged steps."
    return note


def _levels(settings: Sequence[Setting], cache: dict) -> dict[str, set[str]]:
    out = {}
    for setting in settings:
        key = K.DIAG_LEVEL.key()
        levels = {str(row[key]) for run in setting.runs for row in _log(run.path, "steps.jsonl", cache) if key in row}
        out[setting.label] = levels
    return out


def _level_text(levels: dict[str, set[str]]) -> str:
    found = sorted(set().union(*levels.values())) if levels else []
    if len(found) == 1:
        return f"{found[0]} level"
    return "levels: " + "; ".join(f"{label}: {', '.join(sorted(v)) or '?'}" for label, v in levels.items())


def _legend_below(fig, handles, labels, count: int) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, count), frameon=False)


# ---- figures ---------------------------------------------------------------------------------


class _Plotter:
    def __init__(self, comparison: Comparison, folder: Path) -> None:
        self.c = comparison
        self.folder = folder
        self.colours = palette([s.label for s in comparison.settings], "tab10")
        self.task_colours = palette(list(comparison.tasks), "Dark2")
        self.cache: dict[Path, list[dict[str, Any]]] = {}
        self.figures: list[Figure] = []
        self.skipped: list[str] = []

    def improvement(self) -> None:
        rows = [s for s in self.c.settings if s.per_task]
        if not rows:
            self.skipped.append("Per-task improvement: no setting has Δp against single-task baselines.")
            return
        tasks = list(self.c.tasks)
        if len(tasks) >= 3:
            self._radar(rows, tasks)
        else:
            self._bars(rows, tasks)

    def _radar(self, rows: Sequence[Setting], tasks: list[str]) -> None:
        angles = np.linspace(0, 2 * np.pi, len(tasks), endpoint=False)
        values = np.array([[row.per_task[t].mean for t in tasks] for row in rows])
        low, high = min(values.min(), 0.0), max(values.max(), 0.0)
        pad = 0.15 * (high - low or 1.0)
        low, high = low - pad, high + pad
        fig = new_figure(7.8, 6.2)
        ax = fig.add_subplot(projection="polar")
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        ax.set_ylim(low, high)
        ring = np.linspace(0, 2 * np.pi, 200)
        ax.plot(ring, np.zeros_like(ring), color="0.2", lw=1.2, ls="--", label="STL (0 %)")
        for row, vals in zip(rows, values):
            closed_a, closed_v = np.append(angles, angles[0]), np.append(vals, vals[0])
            ax.plot(closed_a, closed_v, color=self.colours[row.label], lw=1.8, marker="o", ms=4, label=row.label)
            ax.fill(closed_a, closed_v, color=self.colours[row.label], alpha=0.06)
        ax.set_xticks(angles, tasks)
        ax.tick_params(axis="x", pad=8)
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g} %" if v else "0 %"))
        ax.set_rlabel_position(180 / len(tasks))  # radial labels halfway between two task axes
        ax.tick_params(axis="y", labelsize=8)
        for label in ax.get_yticklabels():
            label.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
        ax.set_title("Per-task improvement over STL (%)", pad=18)
        ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.02))
        self.figures.append(save(fig, self.folder, "improvement", "Per-task improvement over STL",
                                  "Relative change of each task's test metrics against its single-task baseline "
                                  "(%, mean over the task's metrics and the seeds; outside the dashed ring = better "
                                  "than STL)."))

    def _bars(self, rows: Sequence[Setting], tasks: list[str]) -> None:
        fig = new_figure(min(12.0, max(6.5, 0.42 * len(rows) * len(tasks) + 3.5)), 4.4)
        ax = fig.subplots()
        grouped_bars(ax, tasks, {r.label: [r.per_task[t].mean for t in tasks] for r in rows}, self.colours,
                     errors={r.label: [r.per_task[t].std for t in tasks] for r in rows})
        ax.axhline(0, color="0.2", lw=1.0, ls="--", label="STL (0 %)")
        ax.set_xlabel("task")
        ax.set_ylabel("improvement over STL (%)")
        ax.set_title("Per-task improvement over single-task learning")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        self.figures.append(save(fig, self.folder, "improvement", "Per-task improvement over STL",
                                  "Relative change of each task's test metrics against its single-task baseline "
                                  "(%, mean over the task's metrics and the seeds; error bars: std over seeds; "
                                  "dashed: STL). Bars rather than a radar chart: a radar needs three or more tasks."))

    def alpha(self) -> None:
        groups = ["encoder", *(f"head {t}" for t in self.c.tasks)]
        keys = {"encoder": K.ALPHA_ENCODER_MEAN.key(), **{f"head {t}": K.ALPHA_HEAD_MEAN.key(t) for t in self.c.tasks}}
        table: dict[str, dict[str, list[float]]] = {}
        for setting in self.c.settings:
            for run in setting.runs:
                rows = _log(run.path, "epochs.jsonl", self.cache)
                for group, key in keys.items():
                    value = next((v for row in reversed(rows) if (v := finite(row.get(key))) is not None), None)
                    if value is not None:
                        table.setdefault(setting.label, {}).setdefault(group, []).append(value)
        if not table:
            self.skipped.append(f"Power-law α: no `{K.ALPHA_ENCODER_MEAN.pattern}` or `{K.ALPHA_HEAD_MEAN.pattern}` in "
                                "epochs.jsonl (train with diagnostics on).")
            return
        labels = [s.label for s in self.c.settings if s.label in table]
        fig = new_figure(max(6.5, 0.9 * len(labels) * len(groups) / 2 + 3.0), 4.6)
        ax = fig.subplots()
        ax.axhspan(*WELL_TRAINED, color="tab:green", alpha=0.12, lw=0, label="α ∈ [2, 4] (well trained)")
        means = {lb: [float(np.mean(table[lb][g])) if g in table[lb] else None for g in groups] for lb in labels}
        errors = {lb: [float(np.std(table[lb][g], ddof=1)) if len(table[lb].get(g, [])) > 1 else None for g in groups]
                  for lb in labels}
        grouped_bars(ax, groups, means, self.colours, errors=errors)
        top = max(m + (e or 0.0) for lb in labels for m, e in zip(means[lb], errors[lb]) if m is not None)
        ax.set_ylim(0, max(top * 1.1, WELL_TRAINED[1] * 1.1))
        ax.set_ylabel("power-law α (mean over layers)")
        ax.set_title("Power-law exponent α of encoder and heads, last epoch")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        self.figures.append(save(fig, self.folder, "alpha", "Power-law α per method",
                                  "Heavy-tailed self-regularisation exponent α of the weight matrices at the last "
                                  "logged epoch, averaged over the layers of the encoder and of each head, then over "
                                  "seeds (error bars: std). Shaded: α ∈ [2, 4], well trained; larger: under-trained."))

    def geometry(self) -> None:
        panels = [(K.DIAG_GDS.key(), "GDS: gradient direction similarity", "mean pairwise cosine"),
                  (K.DIAG_GMS.key(), "GMS: gradient magnitude similarity", "mean pairwise similarity"),
                  (K.DIAG_FD.key(), "FD: feature disentanglement", "entropy over positions (nats)")]
        found = []
        for key, title, ylabel in panels:
            curves = [(s, c) for s in self.c.settings if (c := _curve(s, key, self.cache)) is not None]
            if curves:
                found.append((key, title, ylabel, curves))
        if not found:
            self.skipped.append("GDS / GMS / FD over training: no " + ", ".join(f"`{k}`" for k, _, _ in panels)
                                + " in steps.jsonl (train with diagnostics on).")
            return
        fig = new_figure(4.6 * len(found), 4.0)
        axes = fig.subplots(1, len(found), squeeze=False)
        handles: dict[str, Any] = {}
        all_curves = []
        for ax, (key, title, ylabel, curves) in zip(axes[0], found):
            for setting, curve in curves:
                _draw(ax, curve, self.colours[setting.label], setting.label, crowded=len(curves) > 4)
                all_curves.append(curve)
            if key == K.DIAG_GDS.key():
                ax.axhline(0, color="0.5", lw=0.8, ls="--")
            ax.set_title(title)
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        _legend_below(fig, list(handles.values()), list(handles), len(handles))
        levels = _level_text(_levels(self.c.settings, self.cache))
        fig.suptitle(f"Gradient geometry and feature disentanglement over training ({levels})")
        missing = [t for k, t, _ in panels if k not in {f[0] for f in found}]
        caption = ("GDS: lower = more conflicting task gradients; GMS: lower = one task's gradient dominates; FD: "
                   "lower = representation features salient to fewer tasks." + _curve_note(all_curves))
        if missing:
            caption += " Not logged: " + ", ".join(missing) + "."
        self.figures.append(save(fig, self.folder, "geometry", "GDS, GMS and FD over training", caption))

    def _per_method(self, family: K.KeyFamily, name: str, title: str, ylabel: str, caption: str, *, log: bool) -> None:
        panels = []
        for setting in self.c.settings:
            curves = [(t, c) for t in self.c.tasks if (c := _curve(setting, family.key(t), self.cache)) is not None]
            if curves:
                panels.append((setting, curves))
        if not panels:
            self.skipped.append(f"{title}: no `{family.pattern}` in steps.jsonl (train with diagnostics on; the "
                                "cosine needs a method that returns task weights).")
            return
        absent = [s.label for s in self.c.settings if s not in [p[0] for p in panels]]
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = new_figure(3.6 * cols + 0.4, 2.9 * rows + 0.6)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        all_curves = []
        handles: dict[str, Any] = {}
        for ax, (setting, curves) in zip(axes.flat, panels):
            for task, curve in curves:
                _draw(ax, curve, self.task_colours[task], task)
                all_curves.append(curve)
            if not log:
                ax.axhline(0, color="0.5", lw=0.8, ls="--")
            ax.set_title(setting.label, fontsize=10)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        if log:
            plain_log_axis(axes[0][0])
        else:
            axes[0][0].set_ylim(-1.05, 1.05)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("training step")
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        _legend_below(fig, list(handles.values()), [f"task {t}" for t in handles], len(handles))
        levels = _level_text({s.label: v for s, v in zip(self.c.settings, _levels(self.c.settings, self.cache).values())
                              if s in [p[0] for p in panels]})
        fig.suptitle(f"{title} ({levels})")
        note = f" Not logged for: {', '.join(absent)}." if absent else ""
        self.figures.append(save(fig, self.folder, name, title, caption + _curve_note(all_curves) + note))

    def build(self) -> None:
        with style():
            self.improvement()
            self.alpha()
            self.geometry()
            self._per_method(K.DIAG_COS, "cos_to_update", "Cosine of each task gradient to the update",
                             "cos(g_t, update)",
                             "Cosine between each task's gradient and the applied update Jᵀα: curves close together "
                             "mean the update serves the tasks evenly.", log=False)
            self._per_method(K.DIAG_NORM, "grad_norms", "Per-task gradient norms", "‖g_t‖ (log scale)",
                             "Norm of each task's gradient on the logged Gramian: a task whose norm stays far above "
                             "the others dominates the shared update.", log=True)


def plot_comparison(comparison: Comparison, folder: str | Path) -> tuple[list[Figure], list[str]]:
    """Write the figures of one benchmark into ``folder``; returns them and the reasons for any
    figure not drawn."""
    plotter = _Plotter(comparison, Path(folder))
    plotter.build()
    return plotter.figures, plotter.skipped
