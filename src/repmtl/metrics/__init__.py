"""Streaming task metrics and the Δp improvement measure (SPEC §5)."""

from repmtl.metrics.base import StreamingMetric
from repmtl.metrics.classification import Accuracy
from repmtl.metrics.improvement import delta_p

__all__ = ["StreamingMetric", "Accuracy", "delta_p"]
