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

Metric keys must be the task and metric names of our benchmark (``repmtl compare`` warns about
others); values in the units we log (accuracies and mIoU in percent when our metric is).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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

    def value(self, key: str) -> float | None:
        """The number for a column key (``<task>/<metric>``, ``delta_p_task``, ...), if published."""
        if key in ("delta_p_task", "delta_p_metric", "delta_m"):
            return getattr(self, key)
        return self.metrics.get(key)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


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
        allowed = {"benchmark", "method", "source", "metrics", "delta_p_task", "delta_p_metric", "delta_m"}
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
            **{k: _number(entry[k], f"{where}, {k}") for k in ("delta_p_task", "delta_p_metric", "delta_m")
               if k in entry},
        ))
    return out
