"""One method's (or regularizer's) step cost before and after a change of its file, in one run.

    git show <commit>:src/repmtl/methods/gradvac.py > /tmp/gradvac_before.py
    python benchmarks/method_before_after.py --method gradvac --before /tmp/gradvac_before.py \\
        --levels representation parameters --tasks 2 8
    git show <commit>:src/repmtl/regularizers/repmtl.py > /tmp/repmtl_before.py
    python benchmarks/method_before_after.py --method repmtl --before /tmp/repmtl_before.py

Contenders, interleaved in random order per round on the same model and batch (see
``repmtl.bench.timing``): ``ew``, and at each level ``<method>@<level>:before`` (the class of that
name in the given file, loaded without registering it) and ``<method>@<level>:now`` (the
registered one), each a whole training step through :func:`repmtl.backward`. A regularizer's
name (``repmtl``) runs the Rep-MTL preset's step instead: EW with the regularizer on log losses,
at representation level. Before timing, one
step of each from the same weights checks that both give the same update. Prints the median of
per-round ratios to EW (process CPU time, 1 thread) and ``now ÷ before`` per round.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from unittest import mock

import torch

import repmtl
from repmtl import methods as M
from repmtl import regularizers as R
from repmtl.bench.contenders import ours
from repmtl.bench.table import relative
from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.bench.workloads import Problem, build_problem
from repmtl.methods import base
from repmtl.regularizers import base as regularizer_base

Component = M.Method | R.Regularizer


def _former_class(path: Path, name: str) -> type[Component]:
    spec = importlib.util.spec_from_file_location(f"repmtl_before_{name.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--before {path}: not a python file")
    module = importlib.util.module_from_spec(spec)
    with (  # the registries keep the current classes
        mock.patch.object(base, "register", lambda cls: cls),
        mock.patch.object(regularizer_base, "register_regularizer", lambda cls: cls),
    ):
        spec.loader.exec_module(module)
    found = [c for c in vars(module).values() if isinstance(c, type) and getattr(c, "name", None) == name]
    if not found:
        raise SystemExit(f"--before {path}: no class with name = {name!r}")
    return found[0]


def _instances(cls: type[Component], name: str, tasks: list[str]) -> tuple[Component, Component]:
    """The former and the current component, ready for :func:`_backward`."""
    if issubclass(cls, R.Regularizer):
        return cls(), R.create(name)
    return cls().bind(tasks), M.create(name, tasks=tasks)


def _backward(problem: Problem, component: Component, level: str) -> None:
    z, losses = problem.forward()
    if isinstance(component, R.Regularizer):
        repmtl.backward(losses, representation=z, method="ew", level="representation", regularizers=[component],
                        loss_transform="log")
    else:
        repmtl.backward(losses, representation=z, method=component, level=level)


def _step(problem: Problem, component: Component, level: str):
    optimizer = torch.optim.SGD(problem.model.parameters(), lr=1e-4)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        _backward(problem, component, level)
        optimizer.step()

    return run


def _same_update(problem: Problem, cls: type[Component], level: str, name: str) -> float:
    """Largest difference of the two versions' shared updates from the same weights and seed."""
    grads = []
    for component in _instances(cls, name, list(problem.task_names)):
        problem.model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        _backward(problem, component, level)
        grads.append(torch.cat([p.grad.flatten() for p in problem.model.shared_parameters()]))
    problem.model.zero_grad(set_to_none=True)
    return float((grads[0] - grads[1]).abs().max() / grads[1].abs().max().clamp_min(1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--before", type=Path, required=True, help="the method's earlier file")
    parser.add_argument("--levels", nargs="+", default=["representation", "parameters"])
    parser.add_argument("--workloads", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    former = _former_class(args.before, args.method)
    levels = ["representation"] if issubclass(former, R.Regularizer) else args.levels
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print(f"process CPU time, 1 thread; {args.rounds} interleaved rounds, {args.warmup} warm-up steps")
    print("| net | T | level | before × EW | now × EW | now ÷ before (min–max) | update difference |")
    print("|---|---|---|---|---|---|---|")
    for workload in args.workloads:
        for num_tasks in args.tasks:
            problem = build_problem(workload, num_tasks, device)
            tasks = list(problem.task_names)
            steps = {"ew": ours("ew", "parameters").make(problem, 1e-4)}
            for level in levels:
                before, now = _instances(former, args.method, tasks)
                steps[f"{level}:before"] = _step(problem, before, level)
                steps[f"{level}:now"] = _step(problem, now, level)
            differences = {level: _same_update(problem, former, level, args.method) for level in levels}
            timings, failures = interleaved_timings(steps, "ew", StepClock(device), rounds=args.rounds, steps=1,
                                                    warmup=args.warmup)
            group = {"contenders": {n: {"seconds": t.seconds} for n, t in timings.items()}}
            for level in levels:
                before, now = f"{level}:before", f"{level}:now"
                if before not in timings or now not in timings:
                    print(f"| {workload} | {num_tasks} | {level} | err: {failures} |")
                    continue
                change = relative(group, now, before)
                print(
                    f"| {workload} | {num_tasks} | {level} | {timings[before].summary()['ratio']:.2f} | "
                    f"{timings[now].summary()['ratio']:.2f} | {change['ratio']:.2f} "
                    f"({change['min']:.2f}–{change['max']:.2f}) | {differences[level]:.1e} |"
                )


if __name__ == "__main__":
    main()
