"""Per-step cost of every registered method relative to EW, measured in one run.

    python benchmarks/methods.py            # full run
    python benchmarks/methods.py --quick    # short run (fewer timed steps)
    python benchmarks/methods.py --methods ew mgda nashmtl --tasks 2 8

For each network (a small MLP and the synthscenes dense CNN), number of tasks ``T`` and level
(``parameters`` / ``representation``), one training step is: forward, ``repmtl.backward`` with
the method, ``optimizer.step()`` (SGD over the model and the method's own parameters).

Time: for each network and ``T`` every method is timed in ``--passes`` interleaved passes (each
pass times every method once, EW first and last); the statistic (``--stat``, default the
minimum) over all timed steps of all passes is divided by EW's. The default clock is the
process's CPU time (``time.process_time``) with one intra-op thread (``--threads 1``): on a
shared machine wall-clock times measure the neighbours' load more than our work (we saw EW's
wall time vary 100× within a group). Interference only ever adds time, so the minimum over
repeated steps is the stable estimate of a step's intrinsic cost (as ``timeit`` recommends);
``--stat median`` and ``--clock wall`` are available. The EW line prints EW's value in the
first and in the last pass, which shows the drift of the machine.

Peak memory: one extra step per configuration runs under ``torch.profiler`` with
``profile_memory=True``; we replay every CPU allocation / free the profiler recorded during that
step in time order and report the maximum of the running total, i.e. the peak of torch-allocated
CPU memory *above what was live when the step started* (model, optimizer state, data and the
method's state are live before the step, so this is the step's working memory: activations,
Jacobians, Gramians, gradients). numpy's host arrays for the ``T×T`` solves are not counted (a
few KiB). The replay uses ``prof.profiler.kineto_results.experimental_event_tree()`` (a private
PyTorch API, as used by ``torch.profiler``'s own memory timeline); "n/a" if it is unavailable.

Loss-only methods have no level; their single measurement is shown under ``parameters`` and the
``representation`` cell is "=". Methods undefined at a level show "—"; a step that raises shows
"err" (the messages are listed at the end).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import repmtl
from repmtl import methods as M
from repmtl.model import MultiTaskModel

LEVELS = ("parameters", "representation")
NETS = {
    "mlp": "MLP: 64 → 128 → 128 (ReLU) shared encoder, one linear regression head per task, batch 32",
    "cnn": (
        "the synthscenes CPU network (repmtl.nets.small_dense): 3×48×64 input, dilated CNN encoder "
        "→ Z of 64×12×16, one conv-BN-ReLU/1×1-conv/upsample per-pixel regression head per task, batch 8"
    ),
}


#: hyper-parameters a method cannot do without (everything else: its defaults)
REQUIRED_HPARAMS = {"fixed": lambda num_tasks: {"weights": [1.0] * num_tasks}}


def make_problem(net: str, num_tasks: int, seed: int = 0):
    torch.manual_seed(seed)
    tasks = [f"t{i}" for i in range(num_tasks)]
    if net == "mlp":
        encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        heads = {t: nn.Linear(128, 1) for t in tasks}
        x = torch.randn(32, 64)
        targets = {t: torch.randn(32, 1) for t in tasks}
    elif net == "cnn":
        from repmtl.nets.small_dense import build_small_dense

        model = build_small_dense({t: 1 for t in tasks})
        x = torch.randn(8, 3, 48, 64)
        targets = {t: torch.randn(8, 1, 48, 64) for t in tasks}
        return model, x, targets
    else:
        raise ValueError(f"unknown net {net!r}")
    return MultiTaskModel(encoder, heads), x, targets


def make_step(net: str, num_tasks: int, name: str, level: str) -> Callable[[], None]:
    model, x, targets = make_problem(net, num_tasks)
    method = M.create(name, tasks=model.task_names, **REQUIRED_HPARAMS.get(name, lambda n: {})(num_tasks))
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        losses = {t: F.mse_loss(out.predictions[t], targets[t]) for t in model.task_names}
        repmtl.backward(losses, representation=out.representation, method=method, level=level)
        optimizer.step()

    return step


def time_steps(step: Callable[[], None], warmup: int, steps: int, clock: Callable[[], float]) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = clock()
        step()
        times.append(clock() - start)
    return times


def peak_memory(step: Callable[[], None]) -> float | None:
    """Peak bytes of torch CPU allocations above the step's starting point (see module doc)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        from torch._C._profiler import _EventType
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return None
    events: list[tuple[int, int]] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return float(peak)


def run(args: argparse.Namespace) -> None:
    names = args.methods or list(M.available())
    unknown = sorted(set(names) - set(M.available()))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; available: {', '.join(M.available())}")
    if "ew" not in names:
        names = ["ew", *names]
    errors: dict[str, str] = {}
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.time()
    results: dict[tuple, tuple[str, str]] = {}
    ew_ms: dict[tuple[str, int], tuple[float, float]] = {}
    stat = min if args.stat == "min" else statistics.median
    for net in args.nets:
        for num_tasks in args.tasks:
            configs = []
            for name in names:
                cls = M.lookup(name)
                for level in LEVELS:
                    if cls.needs == "losses" and level == "representation":
                        continue
                    configs.append((name, level, cls.needs == "losses" or level in cls.levels))
            times: dict[tuple[str, str], list[float]] = {(n, lv): [] for n, lv, ok in configs if ok}
            memory: dict[tuple[str, str], float | None] = {}
            failed: set[tuple[str, str]] = set()
            ew_times: list[list[float]] = []
            for repeat in range(args.passes):
                ew_times.append(
                    time_steps(make_step(net, num_tasks, "ew", "parameters"), args.warmup, args.steps, clock)
                )
                for name, level, defined in configs:
                    key = (name, level)
                    if not defined or key in failed:
                        continue
                    try:
                        step = make_step(net, num_tasks, name, level)
                        times[key] += time_steps(step, args.warmup, args.steps, clock)
                        if repeat == 0:
                            memory[key] = peak_memory(step) if args.memory else None
                    except Exception as exc:  # noqa: BLE001 - report and carry on
                        errors[f"{name} / {net} / T={num_tasks} / {level}"] = "".join(
                            traceback.format_exception_only(type(exc), exc)
                        ).strip()
                        failed.add(key)
                ew_times.append(
                    time_steps(make_step(net, num_tasks, "ew", "parameters"), args.warmup, args.steps, clock)
                )
                print(f"  measured {net} T={num_tasks} pass {repeat + 1}", file=sys.stderr, flush=True)
            ew = stat([t for run in ew_times for t in run])
            ew_ms[(net, num_tasks)] = (stat(ew_times[0]) * 1e3, stat(ew_times[-1]) * 1e3)
            for name, level, defined in configs:
                key = (name, level)
                if not defined:
                    results[(net, num_tasks, name, level)] = ("—", "—")
                elif key in failed:
                    results[(net, num_tasks, name, level)] = ("err", "err")
                else:
                    results[(net, num_tasks, name, level)] = (_ratio(stat(times[key]), ew), _mib(memory.get(key)))
    elapsed = time.time() - started
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(_report(args, names, results, ew_ms, errors, load_start, load_end, elapsed))


def _ratio(seconds, ew: float) -> str:
    if seconds is None:
        return "—"
    if seconds == "err":
        return "err"
    return f"{seconds / ew:.2f}"


def _mib(memory) -> str:
    if memory is None:
        return "—"
    if memory == "err":
        return "err"
    return f"{memory / 2**20:.2f}"


def _report(args, names, results, ew_ms, errors, load_start, load_end, elapsed) -> str:
    lines = [
        "# Method cost relative to EW",
        "",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads), python {platform.python_version()}",
        f"- load average (1/5/15 min) at start {load_start}, at end {load_end}; run took {elapsed:.0f} s",
        f"- timing: {'process CPU time' if args.clock == 'cpu' else 'wall-clock time'}, {args.stat} over "
        f"{args.passes} interleaved passes × {args.steps} steps (after {args.warmup} warm-up steps each); "
        "one step = forward + repmtl.backward + SGD step",
        "- peak memory: torch CPU allocations during one profiled step, above the live memory at its start (MiB)",
        "",
    ]
    for net in args.nets:
        lines += [f"## {net}: {NETS[net]}", ""]
        ew_line = ", ".join(f"T={t}: {ew_ms[(net, t)][0]:.1f} / {ew_ms[(net, t)][1]:.1f} ms" for t in args.tasks)
        lines += [f"EW per step ({args.clock} time, {args.stat}, first / last pass): {ew_line}", ""]
        for title, index in (("time per step ÷ EW", 0), ("peak step memory (MiB)", 1)):
            if index == 1 and not args.memory:
                continue
            header = "| method | " + " | ".join(f"T={t} param | T={t} repr" for t in args.tasks) + " |"
            lines += [f"### {title}", "", header, "|---|" + "---|" * (2 * len(args.tasks))]
            for name in names:
                cells = []
                for t in args.tasks:
                    for level in LEVELS:
                        key = (net, t, name, level)
                        if key in results:
                            cells.append(results[key][index])
                        else:
                            cells.append("=")  # loss-only method: no level
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    if errors:
        lines += ["## errors", ""] + [f"- {k}: `{v}`" for k, v in errors.items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 pass, 1 warm-up and 3 timed steps (default 2 passes, 3 and 10)"
    )
    parser.add_argument("--passes", type=int, default=None, help="interleaved timing passes per group")
    parser.add_argument("--stat", choices=["min", "median"], default="min", help="statistic over the timed steps")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the profiled memory step")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time (default) or wall clock"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, see the module doc)")
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.steps = args.steps if args.steps is not None else (3 if args.quick else 10)
    args.passes = args.passes if args.passes is not None else (1 if args.quick else 2)
    run(args)


if __name__ == "__main__":
    main()
