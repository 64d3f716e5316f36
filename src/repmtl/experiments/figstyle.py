"""What every figure of ``repmtl report``, ``repmtl compare`` and the studies shares: one
matplotlib style, the PNG + PDF writer, grouped bars, smoothing, plain-number log axes and the
power-law "well trained" band.

matplotlib is the ``[plots]`` extra (``pip install 'repmtl[plots]'``). This is the one module
that imports it: the figure modules take the matplotlib names they use from here, so importing
any of them without the extra raises :class:`MissingExtraError` naming the extra, and commands
can print tables and say why there are no figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from repmtl.experiments.extras import MissingExtraError

try:
    import matplotlib
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
except ModuleNotFoundError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("figures need matplotlib; install the extra: pip install 'repmtl[plots]'") from exc

__all__ = [
    "WELL_TRAINED",
    "Axes",
    "Figure",
    "FuncFormatter",
    "MaxNLocator",
    "Patch",
    "colormap",
    "grouped_bars",
    "moving_average",
    "new_figure",
    "palette",
    "plain_log_axis",
    "save",
    "style",
]

#: power-law α in [2, 4] reads as a well-trained layer (Martin & Mahoney, JMLR 2021, Sec. 5;
#: used as such by Rep-MTL, Wang et al. ICCV 2025, Sec. 4.3)
WELL_TRAINED = (2.0, 4.0)

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.framealpha": 0.9,
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by publishers)
}


@dataclass(frozen=True)
class Figure:
    """A written figure: its file stem, title, caption and the two files."""

    name: str
    title: str
    caption: str
    png: Path
    pdf: Path


@contextmanager
def style() -> Iterator[None]:
    """The shared rc settings, for the figures built inside the block."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float) -> MplFigure:
    """A figure outside pyplot: no GUI backend involved, nothing left open."""
    return MplFigure(figsize=(width, height), layout="constrained")


def palette(names: Sequence[str], cmap: str = "tab10") -> dict[str, Any]:
    """One colour per name from ``cmap`` (``tab20`` beyond ten names)."""
    colours = colormap(cmap if len(names) <= 10 else "tab20")
    return {name: colours(i % colours.N) for i, name in enumerate(names)}


def colormap(name: str):
    """A registered matplotlib colormap by name."""
    return matplotlib.colormaps[name]


def grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    colours: Mapping[str, Any],
    *,
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> None:
    """One cluster of bars per group, one bar per series (``None``: no bar), side by side;
    ``errors`` (same keys, std or ``None``) as error bars. Group labels are tilted when they
    would collide; the vertical grid is off."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        extra: dict[str, Any] = {}
        if errors is not None:
            extra = {"yerr": [0.0 if e is None else e for e in errors[label]], "capsize": 3,
                     "error_kw": {"lw": 1, "ecolor": "0.25"}}
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width * 0.92, color=colours[label], label=label, **extra)
    rotate = len(groups) > 4 or max((len(g) for g in groups), default=0) * len(groups) > 48
    ax.set_xticks(x, groups, rotation=25 if rotate else 0, ha="right" if rotate else "center")
    ax.grid(axis="x", visible=False)


def save(fig: MplFigure, folder: Path, name: str, title: str, caption: str) -> Figure:
    """Write ``<folder>/<name>.png`` and ``.pdf``."""
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    fig.savefig(png, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    return Figure(name, title, caption, png, pdf)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of the same length; the ends average over the points available."""
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values, dtype=float), kernel, mode="same")
    return sums / counts


def plain_log_axis(ax) -> None:
    """Log y scale with plain-number ticks ("0.02", not "2×10⁻²") at 1, 2, 5 × 10^k, or denser
    when the data span less than a decade. Call after drawing."""
    ax.set_yscale("log")
    ax.autoscale_view()
    low, high = ax.get_ylim()
    subs = (1.0, 2.0, 5.0) if high / low > 10 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
