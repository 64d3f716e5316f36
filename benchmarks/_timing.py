"""Timing helpers shared by the benchmarks: medians of repeated, synchronised measurements."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Callable[[], None], setup: Callable[[], object] | None = None, *, repeats: int = 20,
                   warmup: int = 3, device: torch.device = torch.device("cpu")) -> float:
    """Median wall time of ``run`` over ``repeats`` calls; ``setup`` (untimed) runs before each."""
    times = []
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux /proc)."""
    import os

    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set size (never decreases)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
