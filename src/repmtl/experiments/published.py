"""Published numbers to print beside ours (``repmtl compare --published FILE``).

A TOML file of ``[[result]]`` tables, one per method and benchmark, each citing its source::

    [[result]]
    benchmark = "nyuv2"                  # a benchmark preset name
    method = "EW"                        # the row label
    source = "Author et al., Venue Year, Table N"
    metrics = { "segmentation/miou" = 0.0, "depth/abs_err" = 0.0 }   # "<task>/<metric>" as we log them
    delta_p_task = 0.0                   # optional, in percent
    delta_p_metric = 0.0                 # optional
    delta_m = 0.0                        # optional (Navon et al. 2022 convention, lower is better)
    ours = "ew"                          # optional: our configuration it stands for (a method name,
                                         # or a table of config fields, e.g. { method = "ew", loss_transform = "log" })
    shown_for = ["nyuv2-small"]          # optional: further benchmark presets to show it beside

Metric keys must be the task and metric names of our benchmark (``repmtl compare`` warns about
others); values in the units we log (accuracies and mIoU in percent when our metric is).
Entries naming ``ours`` give the rank agreement of ``repmtl compare``
(:mod:`repmtl.experiments.agreement`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repmtl.experiments.sweepfile import read_toml

__all__ = ["PublishedResult", "load_published"]


@dataclass(frozen=True)
class PublishedResult:
    benchmark: str
    method: str
    source: str
    metrics: dict[str, float]
    delta_p_task: float | None = None
    delta_p_metric: float | None = None
    delta_m: float | None = None
    #: the configuration of ours this entry stands for (config field -> value); empty: none
    ours: dict[str, Any] = field(default_factory=dict)
    #: benchmark presets besides ``benchmark`` this entry is shown beside
    shown_for: tuple[str, ...] = ()

    def applies_to(self, benchmark: str) -> bool:
        return benchmark == self.benchmark or benchmark in self.shown_for

    def value(self, key: str) -> float | None:
        """The number for a column key (``<task>/<metric>``, ``delta_p_task``, ...), if published."""
        if key in ("delta_p_task", "delta_p_metric", "delta_m"):
            return getattr(self, key)
        return self.metrics.get(key)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _ours(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str) and value:
        return {"method": value}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value) and (not value or "method" in value):
        return dict(value)
    raise ValueError(f"{where}: `ours` must be a method name or a table of config fields with `method`, "
                     f"got {value!r}")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError(f"{where}: `shown_for` must be a list of benchmark names, got {value!r}")


def load_published(path: str | Path) -> list[PublishedResult]:
    """The ``[[result]]`` entries of a published-numbers file (format in the module doc)."""
    path = Path(path)
    data = read_toml(path)
    entries = data.get("result")
    unknown_top = sorted(set(data) - {"result"})
    if unknown_top or not isinstance(entries, list):
        raise ValueError(f"{path}: expected only [[result]] tables, found keys {sorted(data)}")
    out = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}, result #{i}"
        allowed = {"benchmark", "method", "source", "metrics", "delta_p_task", "delta_p_metric", "delta_m", "ours",
                   "shown_for"}
        unknown = sorted(set(entry) - allowed)
        missing = sorted({"benchmark", "method", "source"} - set(entry))
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}; allowed: {sorted(allowed)}")
        metrics = entry.get("metrics", {})
        if not isinstance(metrics, Mapping):
            raise ValueError(f"{where}: `metrics` must be a table of \"<task>/<metric>\" = number")  # noqa: TRY004
        out.append(PublishedResult(
            benchmark=str(entry["benchmark"]), method=str(entry["method"]), source=str(entry["source"]),
            metrics={str(k): _number(v, f"{where}, metrics.{k}") for k, v in metrics.items()},
            ours=_ours(entry.get("ours", {}), where), shown_for=_names(entry.get("shown_for", []), where),
            **{k: _number(entry[k], f"{where}, {k}") for k in ("delta_p_task", "delta_p_metric", "delta_m")
               if k in entry},
        ))
    return out
