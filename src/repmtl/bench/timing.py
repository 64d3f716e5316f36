"""Interleaved timing of training-step contenders, as ratios to a reference step.

Each round runs every contender in a fresh random order, ``steps`` steps each, and keeps the
median of its steps; the round's ratio is that over the reference's (EW's) median in the same
round. The result is the median of the per-round ratios with their quartiles and range, so a
slow phase of a shared machine raises every contender of a round alike and cancels out.

Clocks: on the CPU the process's CPU time (``time.process_time``: neighbours' load does not
count, only our threads, which the runner pins); on CUDA the elapsed time between two CUDA
events around the step (kernels' time, no host-side sleep), synchronised after each step.
"""

from __future__ import annotations

import random
import statistics
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

Step = Callable[[], None]


class StepClock:
    """Seconds one call of a step takes on ``device`` (see the module doc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.name = "CUDA events" if device.type == "cuda" else "process CPU time"

    def __call__(self, step: Step) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            start.record()
            step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        if self.device.type != "cpu":
            raise ValueError(f"the bench times cpu and cuda devices, not {self.device}")
        begin = time.process_time()
        step()
        return time.process_time() - begin


@dataclass
class Timing:
    """Per-round step times (seconds, median within the round) and ratios to the reference."""

    seconds: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Median, quartiles and range of the per-round ratios; the median step time (ms)."""
        ratios = sorted(self.ratios)
        if len(ratios) >= 2:
            q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        else:
            q1 = q3 = ratios[0]
        return {
            "ratio": statistics.median(ratios),
            "q1": q1,
            "q3": q3,
            "min": ratios[0],
            "max": ratios[-1],
            "ms": statistics.median(self.seconds) * 1e3,
            "rounds": len(ratios),
        }


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def interleaved_timings(
    contenders: Mapping[str, Step],
    reference: str,
    clock: StepClock,
    *,
    rounds: int,
    steps: int,
    warmup: int,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Timing], dict[str, str]]:
    """Time ``contenders`` interleaved (module doc). Returns the timings of those that ran and
    the error message of each that raised (dropped from then on). The reference must run."""
    if reference not in contenders:
        raise ValueError(f"the reference {reference!r} is not among the contenders")
    if rounds < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"need rounds ≥ 1, steps ≥ 1 and warmup ≥ 0, got {rounds}, {steps}, {warmup}")
    rng = random.Random(seed)
    failures: dict[str, str] = {}
    live = list(contenders)
    for name in rng.sample(live, len(live)):
        try:
            for _ in range(warmup):
                contenders[name]()
        except Exception as exc:  # noqa: BLE001 - a contender's failure is reported, not fatal
            failures[name] = _error(exc)
    if reference in failures:
        raise RuntimeError(f"the reference step {reference!r} failed: {failures[reference]}")
    live = [n for n in live if n not in failures]
    timings = {name: Timing() for name in live}
    for round_index in range(rounds):
        seconds: dict[str, float] = {}
        for name in rng.sample(live, len(live)):
            try:
                seconds[name] = statistics.median(clock(contenders[name]) for _ in range(steps))
            except Exception as exc:
                failures[name] = _error(exc)
                if name == reference:
                    raise RuntimeError(f"the reference step {reference!r} failed: {failures[name]}") from exc
        live = [n for n in live if n not in failures]
        for name in live:
            timings[name].seconds.append(seconds[name])
            timings[name].ratios.append(seconds[name] / seconds[reference])
        if progress is not None:
            progress(f"round {round_index + 1}/{rounds}")
    return {n: t for n, t in timings.items() if n not in failures}, failures
