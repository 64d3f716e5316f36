"""``repmtl bench``: per-step time and memory of every method relative to EW.

Modules, one job each: :mod:`~repmtl.bench.workloads` (models and batches),
:mod:`~repmtl.bench.contenders` (our steps, the floor),
:mod:`~repmtl.bench.peers` (TorchJD, LibMTL), :mod:`~repmtl.bench.timing` (interleaved rounds,
ratios), :mod:`~repmtl.bench.memory` (allocator peaks), :mod:`~repmtl.bench.table` (report),
:mod:`~repmtl.bench.runner` (the run), :mod:`~repmtl.bench.command` (the options).
"""

from repmtl.bench.runner import BenchConfig, run_bench
from repmtl.bench.table import render

__all__ = ["BenchConfig", "render", "run_bench"]
