"""Peak working memory of one training step, from the allocator (never the process's RSS).

CPU: the step runs under ``torch.profiler`` with ``profile_memory=True``; every CPU allocation
and free it recorded is replayed in time order and the maximum of the running total of the
blocks *allocated during the step* is its peak working memory: activations, Jacobians,
Gramians, the new gradients. Frees of blocks that existed before the step (e.g. the previous
step's gradients, released by ``zero_grad``) are left out, so the figure does not depend on
what the previous step left behind (on CUDA that memory is part of the start, as below). The replay reads
``prof.profiler.kineto_results.experimental_event_tree()``, a private PyTorch API (the one
``torch.profiler``'s memory timeline uses); ``None`` when it is unavailable.

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
allocated at the start. ``release`` (e.g. the model's ``zero_grad(set_to_none=True)``) runs
first, so that on both devices the previous step's gradients are not part of the start.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

try:  # private: the profiler's event kinds (see the module doc)
    from torch._C._profiler import _EventType
except ImportError:  # pragma: no cover - depends on the PyTorch build
    _EventType = None


def peak_step_memory(
    step: Callable[[], None], device: torch.device, release: Callable[[], None] | None = None
) -> int | None:
    """Bytes: the step's peak allocation above its starting point (module doc)."""
    if release is not None:
        release()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    return _cpu_peak(step)


def _cpu_peak(step: Callable[[], None]) -> int | None:
    if _EventType is None:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return None
    events: list[tuple[int, int, int]] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.ptr))
        stack.extend(node.children)
    live: dict[int, int] = {}
    running = peak = 0
    for _, size, ptr in sorted(events):
        if size > 0:
            live[ptr] = size
            running += size
            peak = max(peak, running)
        elif ptr in live:  # a free (negative size) of a block this step allocated
            running -= live.pop(ptr)
    return peak
