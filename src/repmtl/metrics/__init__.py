"""Streaming task metrics and the Δp improvement measure (``docs/formulas.md#evaluation``)."""

from repmtl.metrics.base import StreamingMetric
from repmtl.metrics.classification import Accuracy
from repmtl.metrics.depth import DepthMetric
from repmtl.metrics.improvement import delta_p
from repmtl.metrics.normals import NormalMetric
from repmtl.metrics.segmentation import SegmentationMetric

__all__ = ["Accuracy", "DepthMetric", "NormalMetric", "SegmentationMetric", "StreamingMetric", "delta_p"]
