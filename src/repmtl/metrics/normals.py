"""Surface normals: angular error statistics on valid pixels
(``docs/formulas.md#evaluation-metrics``).

**Validity rule**: a pixel is valid when its ground-truth normal is finite and not the zero
vector (:func:`valid_normal`); the releases store invalid pixels as ``(0, 0, 0)``. (The MTAN /
LibMTL code tests ``n_x + n_y + n_z != 0``, which agrees on those files except for unit
normals whose components happen to sum to zero.)

The angle between prediction ``p`` and ground truth ``g`` is ``atan2(‖p × g‖, p · g)`` in
degrees: it does not depend on either vector's length (no normalisation needed) and stays
accurate near 0°, where ``acos`` of a float32 dot product loses ~0.02°. A zero prediction
counts as 90° (orthogonal to everything) rather than 0°.

Reported (all over every valid pixel since ``reset``): ``mean_angle``, ``median_angle``
(degrees, lower is better), ``within_11.25``, ``within_22.5``, ``within_30`` (percent of
pixels with angle ``< t``, higher is better). Mean and the three fractions are exact.

**Median** (two exact-by-construction modes, chosen with ``median=``):

* ``"histogram"`` (default): angles are counted in a fixed histogram of ``180 / resolution``
  bins on the device (``resolution = 0.001°`` by default, 180,000 ``int64`` bins = 1.4 MB).
  The median is the centre of the bin holding the middle order statistic (for an even count,
  the mean of the two middle ones' bin centres), so it is within ``resolution / 2`` of the
  exact median — far below the two decimals the tables print. Memory is constant.
* ``"exact"``: every valid angle is kept (on the device) and the median is the exact
  ``numpy.median`` of them. Memory grows with the evaluation set (NYUv2's 654 test images
  hold ~72M pixels: ~290 MB in float32), so use it for small sets or to check the histogram.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch

from repmtl.metrics.base import StreamingMetric

THRESHOLDS = (11.25, 22.5, 30.0)
_NAMES = ("within_11.25", "within_22.5", "within_30")


def valid_normal(target: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mask (channel dim reduced) of valid ground-truth normals: finite and not all-zero."""
    return torch.isfinite(target).all(dim=dim) & (target != 0).any(dim=dim)


def angle_degrees(prediction: torch.Tensor, target: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Angle between vectors along ``dim`` in degrees, ``atan2(|p×g|, p·g)``; 90° if ``p = 0``."""
    dtype = torch.promote_types(torch.promote_types(prediction.dtype, target.dtype), torch.float32)
    p, g = prediction.to(dtype), target.to(dtype)  # atan2 is accurate in float32; sums are float64
    cross = torch.linalg.cross(p, g, dim=dim).norm(dim=dim)
    dot = (p * g).sum(dim=dim)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    return torch.where(p.norm(dim=dim) > 0, angle, torch.full_like(angle, 90.0))


class NormalMetric(StreamingMetric):
    """Angular error of predicted normals (``B×3×H×W``; any length, only direction counts).

    Args:
        median: ``"histogram"`` (constant memory, within ``resolution/2`` degrees) or
            ``"exact"`` (keeps every angle).
        resolution: histogram bin width in degrees.
    """

    lower_is_better: ClassVar[dict[str, bool]] = {
        "mean_angle": True,
        "median_angle": True,
        "within_11.25": False,
        "within_22.5": False,
        "within_30": False,
    }

    def __init__(self, median: Literal["histogram", "exact"] = "histogram", resolution: float = 1e-3) -> None:
        if median not in ("histogram", "exact"):
            raise ValueError(f"median must be 'histogram' or 'exact', got {median!r}")
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0 degrees, got {resolution}")
        self.median = median
        self.resolution = float(resolution)
        self.num_bins = math.ceil(180.0 / self.resolution)
        self.reset()

    def reset(self) -> None:
        self._sums: torch.Tensor | None = None  # [Σ angle, count, n<11.25, n<22.5, n<30]
        self._hist: torch.Tensor | None = None
        self._angles: list[torch.Tensor] = []

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        if prediction.shape != target.shape or prediction.ndim < 2 or prediction.shape[1] != 3:
            raise ValueError(
                "NormalMetric expects prediction and target of the same shape (B, 3, H, W), got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        valid = valid_normal(target.detach())
        angle = angle_degrees(prediction.detach(), target.detach())
        angle = torch.where(valid, angle, torch.zeros_like(angle))  # NaN-free where invalid
        sums = torch.stack(
            [angle.double().sum(), valid.double().sum()] + [((angle < t) & valid).double().sum() for t in THRESHOLDS]
        )
        self._sums = sums if self._sums is None else self._sums + sums
        if self.median == "histogram":
            if self._hist is None:
                self._hist = torch.zeros(self.num_bins + 1, dtype=torch.int64, device=angle.device)
            # NaN predictions give NaN angles: send them to the dump bin too (they already make
            # the mean NaN, which compute reports)
            index = (angle / self.resolution).floor().clamp(0, self.num_bins - 1)
            index = torch.where(valid & torch.isfinite(angle), index, torch.full_like(index, self.num_bins))
            index = index.long().reshape(-1)
            self._hist.index_add_(0, index, torch.ones_like(index))
        else:
            self._angles.append(torch.where(valid, angle, torch.full_like(angle, math.nan)).reshape(-1))

    def _median(self) -> float:
        if self.median == "exact":
            angles = torch.cat(self._angles).cpu()
            angles = angles[~torch.isnan(angles)]
            return _sorted_median(angles)
        cum = self._hist[: self.num_bins].cpu().cumsum(0)
        n = int(cum[-1])
        lo, hi = (n - 1) // 2, n // 2
        bins = torch.searchsorted(cum, torch.tensor([lo, hi], dtype=cum.dtype), right=True)
        centres = (bins.double() + 0.5) * self.resolution
        return float(centres.mean())

    def compute(self) -> dict[str, float]:
        if self._sums is None:
            raise RuntimeError("NormalMetric.compute() called before any update()")
        total, count, *within = self._sums.tolist()
        if count == 0:
            raise RuntimeError("NormalMetric saw no valid normal pixel (ground truth finite and non-zero)")
        out = {"mean_angle": total / count, "median_angle": self._median()}
        out.update({name: 100.0 * w / count for name, w in zip(_NAMES, within)})
        return out


def _sorted_median(values: torch.Tensor) -> float:
    """Exact median: the mean of the two middle order statistics (``numpy.median``)."""
    ordered, _ = values.sort()
    n = ordered.numel()
    return float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2)
