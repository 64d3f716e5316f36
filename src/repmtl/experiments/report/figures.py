"""The figures of ``repmtl report``: training dynamics, gradient geometry, validation metrics
and power-law α of one run, drawn from its :class:`~repmtl.experiments.report.logs.RunLogs`.

A figure whose data are absent is skipped and the reason kept in ``skipped``. Non-finite values
(e.g. ``diag/cond = inf`` for a singular Gramian) are not drawn; the caption says how many were
dropped. Step curves are drawn raw (thin, faint) with a trailing moving average over 1/20 of
the logged points (bold) once there are at least 20 of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from repmtl.experiments.figstyle import (
    WELL_TRAINED,
    Axes,
    Figure,
    MaxNLocator,
    Patch,
    colormap,
    moving_average,
    new_figure,
    plain_log_axis,
    save,
)
from repmtl.experiments.report.logs import RunLogs, Series, keys_of, series
from repmtl.logkeys import (
    ALPHA_ENCODER,
    ALPHA_ENCODER_MEAN,
    ALPHA_HEAD,
    ALPHA_HEAD_MEAN,
    DIAG_COND,
    DIAG_COS,
    DIAG_FD,
    DIAG_GDS,
    DIAG_GMS,
    DIAG_NORM,
    EPOCH,
    LOSS,
    PENALTY,
    PENALTY_SCALE,
    STEP,
    TRAIN_LOSS,
    VAL_METRIC,
    WEIGHT,
    KeyFamily,
)

__all__ = ["RunFigures"]


def _shown(family: KeyFamily) -> str:
    """A family as the text names it: ``loss/<task>``."""
    return "/".join([*family.words, *(f"<{name}>" for name in family.fields)])


def _colours(names: Sequence[str]) -> dict[str, Any]:
    cmap = colormap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _moving_average(s: Series) -> tuple[np.ndarray, np.ndarray, int] | None:
    n = s.y.size
    if n < 20:
        return None
    w = max(2, n // 20)
    return s.x, moving_average(s.y, w), w


def _draw(ax: Axes, s: Series, label: str, colour: Any, smooth: bool = True) -> int | None:
    """Raw series (faint when smoothed) plus its moving average; returns the window used."""
    avg = _moving_average(s) if smooth else None
    if avg is None:
        ax.plot(s.x, s.y, color=colour, lw=1.6, label=label, marker="o" if s.y.size <= 30 else None, ms=3)
        return None
    ax.plot(s.x, s.y, color=colour, lw=0.7, alpha=0.3)
    ax.plot(avg[0], avg[1], color=colour, lw=1.8, label=label)
    return avg[2]


def _legend(ax: Axes, count: int) -> None:
    if count == 0:
        return
    if count <= 6:
        ax.legend(fontsize="small", framealpha=0.8)
    else:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if count <= 14 else 2)


def _log_scale_if_wide(ax: Axes, values: Iterable[np.ndarray]) -> None:
    vals = np.concatenate([v for v in values if v.size]) if values else np.array([])
    if vals.size and (vals > 0).all() and vals.max() / vals.min() > 30:
        plain_log_axis(ax)


def _alpha_axis(ax: Axes, values: np.ndarray) -> None:
    """Log scale when α spans more than a decade (small layers can give α of several hundred
    next to well-trained ones near 2–4)."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() / finite.min() > 10:
        plain_log_axis(ax)


def _epoch_axis(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _smoothing_note(windows: set) -> str:
    ws = sorted(w for w in windows if w)
    if not ws:
        return ""
    span = f"{ws[0]}" if len(ws) == 1 else f"{ws[0]}–{ws[-1]}"
    return f" Bold: moving average over {span} logged steps; faint: raw."


def _dropped_note(dropped: int) -> str:
    return f" {dropped} non-finite value(s) not drawn." if dropped else ""


class RunFigures:
    """Draws every figure of a run into ``out_dir`` (call :meth:`build` inside
    :func:`repmtl.experiments.figstyle.style`); ``figures`` lists those written, ``skipped``
    says why the others were not."""

    def __init__(self, run: RunLogs, out_dir: Path) -> None:
        self.run = run
        self.out = out_dir
        self.figures: list[Figure] = []
        self.skipped: list[str] = []
        self.colours = _colours(run.tasks)

    def _save(self, fig: Any, name: str, title: str, caption: str) -> None:
        self.figures.append(save(fig, self.out, name.removesuffix(".png"), title, caption))

    def _colour(self, key: str, index: int) -> Any:
        task = key.rsplit("/", 1)[-1]
        if task in self.colours:
            return self.colours[task]
        return colormap("tab10")(index % 10)

    def _step_lines(self, family: KeyFamily) -> list[tuple[str, Series]]:
        """(the key's fields joined by "/", series) for every key of ``family`` in ``steps.jsonl``."""
        out = []
        for key, fields in keys_of(self.run.steps, family):
            s = series(self.run.steps, key, STEP.key())
            if s is not None:
                out.append(("/".join(fields[f] for f in family.fields), s))
        return out

    def _per_task_step_plot(self, family: KeyFamily, name: str, title: str, ylabel: str, caption: str,
                            *, log: bool | None = None, hline: float | None = None) -> None:
        lines = self._step_lines(family)
        if not lines or all(s.y.size == 0 for _, s in lines):
            self.skipped.append(f"{title}: no `{family.prefix}*` values in `steps.jsonl`.")
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
        step_lines = self._step_lines(LOSS)
        epoch_lines = [(fields["task"], s) for k, fields in keys_of(self.run.epochs, TRAIN_LOSS)
                       if (s := series(self.run.epochs, k, EPOCH.key())) is not None]
        if not step_lines and not epoch_lines:
            self.skipped.append(f"Task losses: no `{_shown(LOSS)}` in `steps.jsonl` nor `{_shown(TRAIN_LOSS)}` "
                                "in `epochs.jsonl`.")
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
            (DIAG_GDS.key(), "GDS (direction similarity)", "mean pairwise cosine", False, 0.0),
            (DIAG_GMS.key(), "GMS (magnitude similarity)", "mean pairwise similarity", False, None),
            (DIAG_FD.key(), "Feature Disentanglement", "mean entropy over positions (nats)", False, None),
            (DIAG_COND.key(), "gradient condition number κ(J)", "κ (log scale)", True, None),
        ]
        found = [(k, t, yl, lg, h, s) for k, t, yl, lg, h in panels
                 if (s := series(self.run.steps, k, STEP.key())) is not None]
        if not found:
            named = ", ".join(f"`{k}`" for k, *_ in panels[:-1]) + f" or `{panels[-1][0]}`"
            self.skipped.append(f"Gradient geometry and FD: no {named} in `steps.jsonl`.")
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
        levels = self.run.diagnostics_levels()
        level_text = f" Gramian level: {', '.join(levels)}." if levels else ""
        fig.suptitle("Gradient geometry and feature disentanglement" + (f" ({', '.join(levels)} level)" if levels else ""))
        caption = ("GDS: lower = more task conflict; GMS: lower = one task dominates; FD: lower = features "
                   "salient to fewer tasks (max log T); κ: larger = less stable gradient system." + level_text)
        missing = [t for k, t, *_ in panels if k not in {f[0] for f in found}]
        if missing:
            caption += " Not logged: " + ", ".join(missing) + "."
        self._save(fig, "geometry.png", "Gradient geometry and FD", caption + _smoothing_note(windows) + _dropped_note(dropped))

    def val_metrics(self) -> None:
        found = [(fields, s) for k, fields in keys_of(self.run.epochs, VAL_METRIC)
                 if (s := series(self.run.epochs, k, EPOCH.key())) is not None and s.y.size]
        if not found:
            self.skipped.append(f"Validation metrics: no `{_shown(VAL_METRIC)}` in `epochs.jsonl`.")
            return
        cols = min(3, len(found))
        rows = math.ceil(len(found) / cols)
        fig = new_figure(4.4 * cols + 0.6, 3.2 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, (fields, s) in zip(axes.flat, found):
            task, metric = fields["task"], fields["metric"]
            _draw(ax, s, metric, self.colours.get(task, "C0"), smooth=False)
            ax.set_title(f"{task}: {metric}", fontsize="medium")
            _epoch_axis(ax)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(found):]:
            ax.set_visible(False)
        fig.suptitle("Validation metrics")
        self._save(fig, "val_metrics.png", "Validation metrics", "Validation metrics per task and epoch.")

    def _alpha_groups(self) -> dict[str, list[tuple[str, Series]]]:
        """Group name ("encoder", "head <task>") -> [(layer, α per epoch)] in logged order."""
        groups: dict[str, list[tuple[str, Series]]] = {}
        for key, fields in keys_of(self.run.epochs, ALPHA_ENCODER):
            s = series(self.run.epochs, key, EPOCH.key())
            if s is not None and s.y.size:
                groups.setdefault("encoder", []).append((fields["layer"], s))
        for key, fields in keys_of(self.run.epochs, ALPHA_HEAD):
            s = series(self.run.epochs, key, EPOCH.key())
            if s is not None and s.y.size:
                groups.setdefault(f"head {fields['task']}", []).append((fields["layer"], s))
        return groups

    def _group_colour(self, group: str) -> Any:
        return self.colours.get(group.removeprefix("head "), "0.35") if group != "encoder" else "0.35"

    def alpha_layers(self) -> None:
        groups = self._alpha_groups()
        if not groups:
            self.skipped.append(f"Power-law α per layer: no `{ALPHA_ENCODER.prefix}*` or `{ALPHA_HEAD.prefix}*` "
                                "in `epochs.jsonl`.")
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
        cmap = colormap("viridis")
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
        keys = keys_of(self.run.epochs, ALPHA_ENCODER_MEAN) + keys_of(self.run.epochs, ALPHA_HEAD_MEAN)
        # (task, series); the task is None for the encoder's mean
        found = [(fields.get("task"), s) for k, fields in keys
                 if (s := series(self.run.epochs, k, EPOCH.key())) is not None and s.y.size]
        if not found:
            self.skipped.append(f"Mean power-law α: no `{ALPHA_ENCODER_MEAN.key()}` or `{ALPHA_HEAD_MEAN.prefix}*` "
                                "in `epochs.jsonl`.")
            return
        fig = new_figure(8.0, 4.4)
        ax = fig.subplots()
        ax.axhspan(*WELL_TRAINED, color="tab:green", alpha=0.12, label="α ∈ [2, 4]")
        for i, (task, s) in enumerate(found):
            if task is None:
                _draw(ax, s, "encoder", "k", smooth=False)
            else:
                _draw(ax, s, f"head {task}", self._colour(task, i), smooth=False)
        _alpha_axis(ax, np.concatenate([s.y for _, s in found]))
        _epoch_axis(ax)
        ax.set_ylabel("mean power-law α over layers")
        ax.set_title("Mean power-law α: encoder and heads")
        ax.grid(alpha=0.3)
        _legend(ax, len(found) + 1)
        self._save(fig, "alpha_means.png", "Mean power-law α", "Mean α over the layers of the encoder and of each head.")

    def build(self) -> None:
        """Draw every figure, in the order the report lists them."""
        self.losses()
        self._per_task_step_plot(WEIGHT, "weights.png", "Task weights", "weight α_t",
                                 "Weights the method applied to each task loss.", log=False)
        self._per_task_step_plot(PENALTY, "penalties.png", "Regularizer penalties", "penalty (before λ)",
                                 "Regularizer values by name (e.g. Rep-MTL's TSR and CSA), before their λ.")
        self._per_task_step_plot(PENALTY_SCALE, "penalty_scale.png", "Penalty gradients relative to the task gradient",
                                 "‖penalty gradient‖ / ‖task gradient‖",
                                 "Norm of the gradient each penalty applied (after its λ) over the task gradient's, "
                                 "at the encoder (measured at Z) and at the heads; above 1 the penalty, not the "
                                 "tasks, drives that part of the network.", log=True, hline=1.0)
        self.geometry()
        self._per_task_step_plot(DIAG_NORM, "grad_norms.png", "Task gradient norms", "‖g_t‖ (log scale)",
                                 "Norm of each task's gradient at the Gramian's level.", log=True)
        self._per_task_step_plot(DIAG_COS, "cos_to_update.png", "Cosine of task gradients to the update",
                                 "cos(g_t, update)",
                                 "Cosine of each task gradient to the applied update Jᵀα (Guo et al., 2025, Fig. 7): "
                                 "curves converging to one value indicate a balanced update.", log=False, hline=0.0)
        self.val_metrics()
        self.alpha_layers()
        self.alpha_dynamics()
        self.alpha_means()
