"""Parameter-level step cost before and after a change of ``repmtl/grads.py``, in one run.

    git show <commit>:src/repmtl/grads.py > /tmp/grads_before.py
    python benchmarks/grads_before_after.py --before /tmp/grads_before.py [--methods upgrad mgda] [--tasks 8]

Contenders, interleaved in random order per round on the same model and batch (see
``repmtl.bench.timing``): ``ew``, the ``floor`` (forward + T task backwards), and for each method
``<m>:before`` (``repmtl.backward`` with the given ``grads.py`` swapped into
``repmtl.step.phases``; it must define the functions that module calls; ``repmtl.linear_gram``
keeps the current one, so compare Gramian methods with ``repmtl bench --full-jacobian`` for
the linear-layer identity), ``<m>:now`` (``repmtl.backward`` with the current one) and
``torchjd:<m>`` when TorchJD is installed. Prints the median of
per-round ratios to EW, to the floor and to TorchJD, and each step's peak memory above EW's in
units of the size of ``J``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path

import torch

from repmtl.bench.contenders import floor, ours
from repmtl.bench.memory import peak_step_memory
from repmtl.bench.peers import torchjd_contenders
from repmtl.bench.table import relative
from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.bench.workloads import build_problem, shared_parameter_count

# the module whose ``G`` is ``repmtl.grads`` (``repmtl.backward`` itself is a function)
backward_module = importlib.import_module("repmtl.step.phases")


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("repmtl_grads_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--before {path}: not a python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_grads(step, grads_module):
    def run() -> None:
        current = backward_module.G
        backward_module.G = grads_module
        try:
            step()
        finally:
            backward_module.G = current

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the earlier grads.py")
    parser.add_argument("--methods", nargs="+", default=["upgrad", "mgda"])
    parser.add_argument("--workloads", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--tasks", type=int, nargs="+", default=[8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    before = _load(args.before)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print(f"process CPU time, 1 thread; {args.rounds} interleaved rounds × {args.steps} step(s), {args.warmup} warm-up")
    print("| net | T | contender | × EW | min–max | × floor | × TorchJD | (peak − EW) / size(J) |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in args.workloads:
        for num_tasks in args.tasks:
            problem = build_problem(workload, num_tasks, device)
            steps = {"ew": ours("ew", "parameters").make(problem, 1e-4), "floor": floor().make(problem, 1e-4)}
            peers, _ = torchjd_contenders(args.methods, num_tasks)
            for m in args.methods:
                steps[f"{m}:before"] = _with_grads(ours(m, "parameters").make(problem, 1e-4), before)
                steps[f"{m}:now"] = ours(m, "parameters").make(problem, 1e-4)
            for peer in peers:
                steps[peer.name] = peer.make(problem, 1e-4)
            timings, failures = interleaved_timings(
                steps, "ew", StepClock(device), rounds=args.rounds, steps=args.steps, warmup=args.warmup
            )
            group = {"contenders": {n: {"seconds": t.seconds} for n, t in timings.items()}}
            jacobian = num_tasks * shared_parameter_count(problem) * 4

            def release(model=problem.model) -> None:
                model.zero_grad(set_to_none=True)

            memory = {n: peak_step_memory(steps[n], device, release) for n in timings}
            for name, timing in timings.items():
                s = timing.summary()
                method = name.split(":")[0]
                peer = relative(group, name, f"torchjd:{method}") if not name.startswith("torchjd") else None
                mem = "—" if memory[name] is None else f"{(memory[name] - memory['ew']) / jacobian:.2f}"
                to_peer = "—" if peer is None else f"{peer['ratio']:.2f}"
                print(
                    f"| {workload} | {num_tasks} | {name} | {s['ratio']:.2f} | {s['min']:.2f}–{s['max']:.2f} | "
                    f"{relative(group, name, 'floor')['ratio']:.2f} | {to_peer} | {mem} |"
                )
            for name, message in failures.items():
                print(f"| {workload} | {num_tasks} | {name} | err: {message} |")


if __name__ == "__main__":
    main()
