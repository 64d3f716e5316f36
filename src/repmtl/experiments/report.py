"""Plots and a markdown summary of one training run (``repmtl report``).

Reads a run folder as the trainer writes it:

* ``config.json``: the resolved config (``benchmark``, ``method``, ``tasks``, ...);
* ``steps.jsonl``: one object per logged step (``epoch``, ``step``, ``loss/<task>``,
  ``weight/<task>``, ``penalty/<name>``, ``diag/...`` from
  :func:`repmtl.diagnostics.step_diagnostics`); keys may be missing on some lines;
* ``epochs.jsonl``: one object per epoch (``epoch``, ``train/loss/<task>``,
  ``val/<task>/<metric>``, ``alpha/...`` from :func:`repmtl.diagnostics.layer_alphas`, ``lr``).

and writes PNGs plus ``report.md`` into ``run_dir/report/``. A plot whose data are absent is
skipped and the markdown says so. Non-finite values (e.g. ``diag/cond = inf`` for a singular
Gramian) are not drawn; the caption says how many were dropped. Step curves are drawn raw
(thin, faint) with a trailing moving average over 1/20 of the logged points (bold) once there
are at least 20 of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from repmtl.experiments.figstyle import (
    WELL_TRAINED,
    Figure,
    moving_average,
    new_figure,
    plain_log_axis,
    save,
    style,
)
from repmtl.experiments.runs import read_jsonl
from repmtl.experiments.tables import markdown_table

__all__ = ["write_report"]

_LAST_FRACTION = 0.1  # summary statistics: mean over the last 10% of logged steps
#: α in [2, 4] reads as well trained (docs/formulas.md#rep-mtl-power-law-exponent)
_WELL_TRAINED = (2.0, 4.0)


# ---- reading -------------------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class _Series:
    x: np.ndarray
    y: np.ndarray
    dropped: int = 0  # non-finite values left out


def _series(rows: Sequence[dict[str, Any]], key: str, x_key: str) -> _Series | None:
    xs, ys, dropped = [], [], 0
    for i, row in enumerate(rows):
        y = _as_float(row.get(key))
        if y is None:
            continue
        if not math.isfinite(y):
            dropped += 1
            continue
        x = _as_float(row.get(x_key))
        xs.append(float(i) if x is None else x)
        ys.append(y)
    if not xs and not dropped:
        return None
    return _Series(np.asarray(xs), np.asarray(ys), dropped)


def _keys(rows: Iterable[dict[str, Any]], prefix: str) -> list[str]:
    """Keys starting with ``prefix``, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key.startswith(prefix):
                seen.setdefault(key, None)
    return list(seen)


@dataclass
class _Run:
    run_dir: Path
    config: dict[str, Any]
    steps: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    tasks: list[str]
    notes: list[str] = field(default_factory=list)


def _task_names(config: dict[str, Any], steps: list[dict[str, Any]], epochs: list[dict[str, Any]]) -> list[str]:
    tasks = config.get("tasks")
    if isinstance(tasks, (list, tuple)) and tasks:
        names = [t.get("name") if isinstance(t, dict) else t for t in tasks]
        if all(isinstance(n, str) for n in names):
            return list(names)
    found: dict[str, None] = {}
    for key in _keys(steps, "loss/") + _keys(epochs, "train/loss/"):
        found.setdefault(key.rsplit("/", 1)[-1], None)
    for key in _keys(epochs, "val/"):
        parts = key.split("/")
        if len(parts) >= 3:
            found.setdefault(parts[1], None)
    return list(found)


def _load(run_dir: Path) -> _Run:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    notes: list[str] = []
    config_path = run_dir / "config.json"
    config: dict[str, Any] = {}
    if config_path.exists():
        loaded = json.loads(config_path.read_text())
        config = loaded if isinstance(loaded, dict) else {}
    else:
        notes.append("`config.json` is missing: run settings unknown.")
    steps, bad_steps = read_jsonl(run_dir / "steps.jsonl")
    epochs, bad_epochs = read_jsonl(run_dir / "epochs.jsonl")
    if not (run_dir / "steps.jsonl").exists():
        notes.append("`steps.jsonl` is missing: no step-level plots.")
    if not (run_dir / "epochs.jsonl").exists():
        notes.append("`epochs.jsonl` is missing: no epoch-level plots.")
    if bad_steps or bad_epochs:
        notes.append(f"Skipped unreadable lines: {bad_steps} in `steps.jsonl`, {bad_epochs} in `epochs.jsonl`.")
    if not steps and not epochs and not config:
        raise FileNotFoundError(f"{run_dir} holds no config.json, steps.jsonl or epochs.jsonl")
    return _Run(run_dir, config, steps, epochs, _task_names(config, steps, epochs), notes)


# ---- plotting helpers ----------------------------------------------------------------------


def _colours(names: Sequence[str]) -> dict[str, Any]:
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _moving_average(s: _Series) -> tuple[np.ndarray, np.ndarray, int] | None:
    n = s.y.size
    if n < 20:
        return None
    w = max(2, n // 20)
    return s.x, moving_average(s.y, w), w


def _draw(ax, s: _Series, label: str, colour: Any, smooth: bool = True) -> int | None:
    """Raw series (faint when smoothed) plus its moving average; returns the window used."""
    avg = _moving_average(s) if smooth else None
    if avg is None:
        ax.plot(s.x, s.y, color=colour, lw=1.6, label=label, marker="o" if s.y.size <= 30 else None, ms=3)
        return None
    ax.plot(s.x, s.y, color=colour, lw=0.7, alpha=0.3)
    ax.plot(avg[0], avg[1], color=colour, lw=1.8, label=label)
    return avg[2]


def _legend(ax, count: int) -> None:
    if count == 0:
        return
    if count <= 6:
        ax.legend(fontsize="small", framealpha=0.8)
    else:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if count <= 14 else 2)


def _log_scale_if_wide(ax, values: Iterable[np.ndarray]) -> None:
    vals = np.concatenate([v for v in values if v.size]) if values else np.array([])
    if vals.size and (vals > 0).all() and vals.max() / vals.min() > 30:
        plain_log_axis(ax)


def _alpha_axis(ax, values: np.ndarray) -> None:
    """Log scale when α spans more than a decade (small layers can give α of several hundred
    next to well-trained ones near 2–4)."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() / finite.min() > 10:
        plain_log_axis(ax)


def _epoch_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


class _Report:
    def __init__(self, run: _Run, out_dir: Path) -> None:
        self.run = run
        self.out = out_dir
        self.figures: list[Figure] = []
        self.skipped: list[str] = []
        self.colours = _colours(run.tasks)

    def _save(self, fig, name: str, title: str, caption: str) -> None:
        self.figures.append(save(fig, self.out, name.removesuffix(".png"), title, caption))

    def _colour(self, key: str, index: int) -> Any:
        task = key.rsplit("/", 1)[-1]
        if task in self.colours:
            return self.colours[task]
        return matplotlib.colormaps["tab10"](index % 10)

    def _step_lines(self, prefix: str) -> list[tuple[str, _Series]]:
        out = []
        for key in _keys(self.run.steps, prefix):
            s = _series(self.run.steps, key, "step")
            if s is not None:
                out.append((key[len(prefix):], s))
        return out

    def _per_task_step_plot(self, prefix: str, name: str, title: str, ylabel: str, caption: str,
                            *, log: bool | None = None, hline: float | None = None) -> None:
        lines = self._step_lines(prefix)
        if not lines or all(s.y.size == 0 for _, s in lines):
            self.skipped.append(f"{title}: no `{prefix}*` values in `steps.jsonl`.")
            return
        fig = new_figure(8.5, 4.6)
        ax = fig.subplots()
        windows = set()
        for i, (label, s) in enumerate(lines):
            windows.add(_draw(ax, s, label, self._colour(label, i)))
        if hline is not None:
            ax.axhline(hline, color="0.5", lw=0.8, ls="--")
        if log is None:
            _log_scale_if_wide(ax, [s.y for _, s in lines])
        elif log:
            plain_log_axis(ax)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        _legend(ax, len(lines))
        dropped = sum(s.dropped for _, s in lines)
        self._save(fig, name, title, caption + _smoothing_note(windows) + _dropped_note(dropped))

    # ---- figures -------------------------------------------------------------------------

    def losses(self) -> None:
        step_lines = self._step_lines("loss/")
        epoch_keys = _keys(self.run.epochs, "train/loss/")
        epoch_lines = [(k[len("train/loss/"):], s) for k in epoch_keys
                       if (s := _series(self.run.epochs, k, "epoch")) is not None]
        if not step_lines and not epoch_lines:
            self.skipped.append("Task losses: no `loss/<task>` in `steps.jsonl` nor `train/loss/<task>` in `epochs.jsonl`.")
            return
        panels = [p for p in (("step", step_lines), ("epoch", epoch_lines)) if p[1]]
        fig = new_figure(6.0 * len(panels) + 1.5, 4.6)
        axes = fig.subplots(1, len(panels), squeeze=False)
        windows: set = set()
        for ax, (unit, lines) in zip(axes[0], panels):
            for i, (label, s) in enumerate(lines):
                windows.add(_draw(ax, s, label, self._colour(label, i), smooth=unit == "step"))
            _log_scale_if_wide(ax, [s.y for _, s in lines])
            if unit == "step":
                ax.set_xlabel("training step")
            else:
                _epoch_axis(ax)
            ax.set_ylabel("loss")
            ax.set_title("logged step losses" if unit == "step" else "mean training loss per epoch")
            ax.grid(alpha=0.3)
            _legend(ax, len(lines))
        caption = "Per-task training losses (raw, before any loss transform or weighting)."
        self._save(fig, "losses.png", "Task losses", caption + _smoothing_note(windows))

    def geometry(self) -> None:
        panels = [
            ("diag/gds", "GDS (direction similarity)", "mean pairwise cosine", False, 0.0),
            ("diag/gms", "GMS (magnitude similarity)", "mean pairwise similarity", False, None),
            ("diag/fd", "Feature Disentanglement", "mean entropy over positions (nats)", False, None),
            ("diag/cond", "gradient condition number κ(J)", "κ (log scale)", True, None),
        ]
        found = [(k, t, yl, lg, h, s) for k, t, yl, lg, h in panels if (s := _series(self.run.steps, k, "step")) is not None]
        if not found:
            self.skipped.append("Gradient geometry and FD: no `diag/gds`, `diag/gms`, `diag/fd` or `diag/cond` in `steps.jsonl`.")
            return
        cols = 2 if len(found) > 1 else 1
        rows = math.ceil(len(found) / cols)
        fig = new_figure(6.2 * cols, 3.8 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        windows, dropped = set(), 0
        for ax, (key, title, ylabel, log, hline, s) in zip(axes.flat, found):
            windows.add(_draw(ax, s, key, "C0"))
            if hline is not None:
                ax.axhline(hline, color="0.5", lw=0.8, ls="--")
            if log and s.y.size and (s.y > 0).all():
                plain_log_axis(ax)
            ax.set_title(title + (f" ({s.dropped} inf not shown)" if s.dropped else ""), fontsize="medium")
            ax.set_xlabel("training step")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            dropped += s.dropped
        for ax in list(axes.flat)[len(found):]:
            ax.set_visible(False)
        levels = sorted({str(r["diag/level"]) for r in self.run.steps if "diag/level" in r})
        level_text = f" Gramian level: {', '.join(levels)}." if levels else ""
        fig.suptitle("Gradient geometry and feature disentanglement" + (f" ({', '.join(levels)} level)" if levels else ""))
        caption = ("GDS: lower = more task conflict; GMS: lower = one task dominates; FD: lower = features "
                   "salient to fewer tasks (max log T); κ: larger = less stable gradient system." + level_text)
        missing = [t for k, t, *_ in panels if k not in {f[0] for f in found}]
        if missing:
            caption += " Not logged: " + ", ".join(missing) + "."
        self._save(fig, "geometry.png", "Gradient geometry and FD", caption + _smoothing_note(windows) + _dropped_note(dropped))

    def val_metrics(self) -> None:
        keys = [k for k in _keys(self.run.epochs, "val/") if len(k.split("/")) >= 3]
        found = [(k, s) for k in keys if (s := _series(self.run.epochs, k, "epoch")) is not None and s.y.size]
        if not found:
            self.skipped.append("Validation metrics: no `val/<task>/<metric>` in `epochs.jsonl`.")
            return
        cols = min(3, len(found))
        rows = math.ceil(len(found) / cols)
        fig = new_figure(4.4 * cols + 0.6, 3.2 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, (key, s) in zip(axes.flat, found):
            _, task, metric = key.split("/", 2)
            _draw(ax, s, metric, self.colours.get(task, "C0"), smooth=False)
            ax.set_title(f"{task}: {metric}", fontsize="medium")
            _epoch_axis(ax)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(found):]:
            ax.set_visible(False)
        fig.suptitle("Validation metrics")
        self._save(fig, "val_metrics.png", "Validation metrics", "Validation metrics per task and epoch.")

    def _alpha_groups(self) -> dict[str, list[tuple[str, _Series]]]:
        """Group name ("encoder", "head <task>") -> [(layer, α per epoch)] in logged order."""
        groups: dict[str, list[tuple[str, _Series]]] = {}
        for key in _keys(self.run.epochs, "alpha/encoder/"):
            s = _series(self.run.epochs, key, "epoch")
            if s is not None and s.y.size:
                groups.setdefault("encoder", []).append((key.split("/", 2)[-1], s))
        for key in _keys(self.run.epochs, "alpha/head/"):
            parts = key.split("/", 3)
            s = _series(self.run.epochs, key, "epoch")
            if len(parts) == 4 and s is not None and s.y.size:
                groups.setdefault(f"head {parts[2]}", []).append((parts[3], s))
        return groups

    def _group_colour(self, group: str) -> Any:
        return self.colours.get(group.removeprefix("head "), "0.35") if group != "encoder" else "0.35"

    def alpha_layers(self) -> None:
        groups = self._alpha_groups()
        if not groups:
            self.skipped.append("Power-law α per layer: no `alpha/encoder/*` or `alpha/head/*` in `epochs.jsonl`.")
            return
        widths = [max(2.6, 0.42 * len(layers) + 1.4) for layers in groups.values()]
        fig = new_figure(min(sum(widths) + 1.0, 22), 5.0)
        axes = fig.subplots(1, len(groups), squeeze=False, width_ratios=widths)
        first_epoch = min(s.x[0] for layers in groups.values() for _, s in layers)
        last_epoch = max(s.x[-1] for layers in groups.values() for _, s in layers)
        handles = None
        for ax, (group, layers) in zip(axes[0], groups.items()):
            names = [name for name, _ in layers]
            first = np.array([s.y[0] for _, s in layers])
            last = np.array([s.y[-1] for _, s in layers])
            pos = np.arange(len(names))
            band = ax.axhspan(*WELL_TRAINED, color="tab:green", alpha=0.15)
            bars = ax.bar(pos, last, color=self._group_colour(group), alpha=0.85, width=0.7)
            ticks = ax.scatter(pos, first, marker="_", s=300, linewidths=2, color="k", zorder=3)
            handles = (band, bars, ticks)
            _alpha_axis(ax, np.concatenate([first, last]))
            rotate = len(names) > 3 or max(len(n) for n in names) > 8
            ax.set_xticks(pos, names, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize="small")
            ax.set_xlabel("layer")
            ax.set_title(group)
            ax.grid(axis="y", alpha=0.3, which="both")
        axes[0][0].set_ylabel("power-law α")
        handles = (handles[0], Patch(facecolor="0.55", alpha=0.85), handles[2])
        fig.legend(handles, ["α ∈ [2, 4] (well trained)", f"epoch {last_epoch:g} (last, bars)",
                             f"epoch {first_epoch:g} (first, ticks)"],
                   loc="outside lower center", ncol=3, fontsize="small")
        fig.suptitle("Power-law exponent α per layer")
        self._save(fig, "alpha_layers.png", "Power-law α per layer",
                   "Bars: α of each weight matrix at the last logged epoch; black ticks: at the first logged epoch. "
                   "Shaded: α ∈ [2, 4] (well trained); larger: under-trained. Log scale when values span more "
                   "than a decade. Layers with too few non-zero eigenvalues are not fitted and not shown.")

    def alpha_dynamics(self) -> None:
        groups = self._alpha_groups()
        if not groups or all(s.y.size < 2 for layers in groups.values() for _, s in layers):
            self.skipped.append("α per layer over epochs: fewer than two epochs of `alpha/*` values.")
            return
        cols = min(2, len(groups))
        rows = math.ceil(len(groups) / cols)
        fig = new_figure(6.8 * cols, 3.9 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        cmap = matplotlib.colormaps["viridis"]
        for ax, (group, layers) in zip(axes.flat, groups.items()):
            ax.axhspan(*WELL_TRAINED, color="tab:green", alpha=0.15)
            for i, (name, s) in enumerate(layers):
                colour = cmap(i / max(1, len(layers) - 1) * 0.9)
                ax.plot(s.x, s.y, color=colour, lw=1.5, marker="o" if s.y.size <= 30 else None, ms=3, label=name)
            _alpha_axis(ax, np.concatenate([s.y for _, s in layers]))
            ax.set_title(group)
            _epoch_axis(ax)
            ax.set_ylabel("power-law α")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize="x-small", title="layer (shallow → deep)", title_fontsize="x-small",
                      loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(layers) <= 12 else 2)
        for ax in list(axes.flat)[len(groups):]:
            ax.set_visible(False)
        fig.suptitle("Power-law α per layer over training")
        self._save(fig, "alpha_dynamics.png", "α per layer over training",
                   "α of every fitted layer per epoch, colour from shallow (dark) to deep (light). Shaded: α ∈ [2, 4].")

    def alpha_means(self) -> None:
        keys = _keys(self.run.epochs, "alpha/encoder_mean") + _keys(self.run.epochs, "alpha/head_mean/")
        found = [(k, s) for k in keys if (s := _series(self.run.epochs, k, "epoch")) is not None and s.y.size]
        if not found:
            self.skipped.append("Mean power-law α: no `alpha/encoder_mean` or `alpha/head_mean/*` in `epochs.jsonl`.")
            return
        fig = new_figure(8.0, 4.4)
        ax = fig.subplots()
        ax.axhspan(*WELL_TRAINED, color="tab:green", alpha=0.12, label="α ∈ [2, 4]")
        for i, (key, s) in enumerate(found):
            if key == "alpha/encoder_mean":
                _draw(ax, s, "encoder", "k", smooth=False)
            else:
                task = key.rsplit("/", 1)[-1]
                _draw(ax, s, f"head {task}", self._colour(task, i), smooth=False)
        _alpha_axis(ax, np.concatenate([s.y for _, s in found]))
        _epoch_axis(ax)
        ax.set_ylabel("mean power-law α over layers")
        ax.set_title("Mean power-law α: encoder and heads")
        ax.grid(alpha=0.3)
        _legend(ax, len(found) + 1)
        self._save(fig, "alpha_means.png", "Mean power-law α", "Mean α over the layers of the encoder and of each head.")

    def build(self) -> None:
        self.losses()
        self._per_task_step_plot("weight/", "weights.png", "Task weights", "weight α_t",
                                 "Weights the method applied to each task loss.", log=False)
        self._per_task_step_plot("penalty/", "penalties.png", "Regularizer penalties", "penalty (before λ)",
                                 "Regularizer values by name (e.g. Rep-MTL's TSR and CSA), before their λ.")
        self.geometry()
        self._per_task_step_plot("diag/norm/", "grad_norms.png", "Task gradient norms", "‖g_t‖ (log scale)",
                                 "Norm of each task's gradient at the Gramian's level.", log=True)
        self._per_task_step_plot("diag/cos/", "cos_to_update.png", "Cosine of task gradients to the update",
                                 "cos(g_t, update)",
                                 "Cosine of each task gradient to the applied update Jᵀα (Guo et al., 2025, Fig. 7): "
                                 "curves converging to one value indicate a balanced update.", log=False, hline=0.0)
        self.val_metrics()
        self.alpha_layers()
        self.alpha_dynamics()
        self.alpha_means()


def _smoothing_note(windows: set) -> str:
    ws = sorted(w for w in windows if w)
    if not ws:
        return ""
    span = f"{ws[0]}" if len(ws) == 1 else f"{ws[0]}–{ws[-1]}"
    return f" Bold: moving average over {span} logged steps; faint: raw."


def _dropped_note(dropped: int) -> str:
    return f" {dropped} non-finite value(s) not drawn." if dropped else ""


# ---- markdown ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _last(rows: Sequence[dict[str, Any]], key: str) -> Any:
    for row in reversed(rows):
        if key in row:
            return row[key]
    return None


def _tail_mean(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """Mean over the last 10% of the lines holding ``key`` (inf if any of them is inf)."""
    vals = [v for r in rows if (v := _as_float(r.get(key))) is not None and not math.isnan(v)]
    if not vals:
        return None
    tail = vals[-max(1, math.ceil(len(vals) * _LAST_FRACTION)):]
    return float(np.mean(tail))


def _first(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    for row in rows:
        if (v := _as_float(row.get(key))) is not None:
            return v
    return None


def _markdown(report: _Report) -> str:
    run = report.run
    cfg = run.config
    title = " / ".join(str(cfg[k]) for k in ("benchmark", "method") if k in cfg) or run.run_dir.name
    out = [f"# Run report: {title}", "", f"Run folder: `{run.run_dir}`", ""]

    settings = [(k, cfg[k]) for k in ("benchmark", "method", "level", "regularizer", "loss_transform", "seed",
                                      "epochs", "batch_size", "lr", "diagnostics_every") if cfg.get(k) is not None]
    if run.tasks:
        settings.insert(min(2, len(settings)), ("tasks", ", ".join(run.tasks)))
    step_numbers = [s for r in run.steps if (s := _as_float(r.get("step"))) is not None]
    logged = f"{len(run.steps)} step lines"
    if step_numbers:
        logged += f" (steps {min(step_numbers):g}–{max(step_numbers):g})"
    settings.append(("logged", f"{logged}, {len(run.epochs)} epochs"))
    levels = sorted({str(r["diag/level"]) for r in run.steps if "diag/level" in r})
    if levels:
        settings.append(("diagnostics level", ", ".join(levels)))
    out += ["## Summary", ""] + markdown_table(["setting", "value"], [[k, _fmt(v)] for k, v in settings]) + [""]

    frac = f"mean over the last {int(_LAST_FRACTION * 100)}% of logged steps"
    if run.tasks:
        body = []
        for t in run.tasks:
            val_keys = [k for k in _keys(run.epochs, f"val/{t}/")]
            vals = ", ".join(f"{k.split('/', 2)[-1]} {_fmt(_last(run.epochs, k))}" for k in val_keys) or "–"
            body.append([t, _fmt(_last(run.epochs, f"train/loss/{t}")), _fmt(_tail_mean(run.steps, f"weight/{t}")),
                         _fmt(_tail_mean(run.steps, f"diag/norm/{t}")), _fmt(_tail_mean(run.steps, f"diag/cos/{t}")),
                         _fmt(_last(run.epochs, f"alpha/head_mean/{t}")), vals])
        out += [f"Per task (last epoch; weight, gradient norm and cosine: {frac}):", ""]
        out += markdown_table(["task", "train loss", "weight", "grad norm", "cos to update", "head mean α", "validation"], body)
        out.append("")

    measures = [("GDS", "diag/gds"), ("GMS", "diag/gms"), ("FD", "diag/fd"), ("κ(J)", "diag/cond")]
    body = [[name, _fmt(_first(run.steps, key)), _fmt(_tail_mean(run.steps, key))]
            for name, key in measures if any(key in r for r in run.steps)]
    if any("alpha/encoder_mean" in r for r in run.epochs):
        body.append(["encoder mean α (per epoch)", _fmt(_first(run.epochs, "alpha/encoder_mean")),
                     _fmt(_last(run.epochs, "alpha/encoder_mean"))])
    if body:
        out += ["Diagnostics (first logged value; end of training: " + frac + ", or last epoch for α):", ""]
        out += markdown_table(["measure", "first", "end"], body) + [""]

    if run.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in run.notes] + [""]
    out += ["## Plots", ""]
    for fig in report.figures:
        out += [f"### {fig.title}", "", f"![{fig.title}]({fig.png.name})", "", f"*{fig.caption}*", ""]
    if report.skipped:
        out += ["### Not plotted", ""] + [f"- {s}" for s in report.skipped] + [""]
    return "\n".join(out)


def write_report(run_dir: str | Path) -> Path:
    """Write PNG plots and ``report.md`` into ``run_dir/report/``; return the markdown's path."""
    run = _load(Path(run_dir))
    out_dir = run.run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _Report(run, out_dir)
    with style():
        report.build()
    path = out_dir / "report.md"
    path.write_text(_markdown(report))
    return path
