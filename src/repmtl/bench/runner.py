"""``repmtl bench``: run every contender on every workload and number of tasks, and collect
the results as one JSON-able dictionary (:func:`run_bench`)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from repmtl import methods as M
from repmtl.bench.contenders import Contender, repmtl_contenders
from repmtl.bench.memory import peak_step_memory
from repmtl.bench.peers import libmtl_contenders, torchjd_contenders
from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.bench.workloads import WORKLOADS, build_problem, shared_parameter_count

REFERENCE = "ew"


@dataclass
class BenchConfig:
    """What to run; the defaults finish in minutes on two CPU cores."""

    workloads: tuple[str, ...] = ("mlp", "cnn")
    tasks: tuple[int, ...] = (2, 4, 8)
    methods: tuple[str, ...] | None = None  # None: every registered method
    levels: tuple[str, ...] = ("parameters", "representation")
    device: str = "cpu"
    threads: int = 1
    rounds: int = 5
    steps: int = 1
    warmup: int = 2
    memory: bool = True
    torchjd: bool = True
    libmtl: Path | None = None
    #: also each parameter-level Gramian method with every row of J formed (``factor_linear=False``)
    full_jacobian: bool = False
    size: tuple[int, int] | None = None
    lr: float = 1e-4
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def check(self) -> None:
        unknown = sorted(set(self.workloads) - set(WORKLOADS))
        if unknown:
            raise ValueError(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
        if self.methods is not None:
            bad = sorted(set(self.methods) - set(M.available()))
            if bad:
                raise ValueError(f"unknown methods {bad}; see `repmtl methods`")
        bad_levels = sorted(set(self.levels) - {"parameters", "representation"})
        if bad_levels:
            raise ValueError(f"unknown levels {bad_levels}; choose parameters and/or representation")
        if any(t < 1 for t in self.tasks):
            raise ValueError(f"numbers of tasks must be ≥ 1, got {list(self.tasks)}")
        if self.threads < 1:
            raise ValueError(f"--threads must be ≥ 1, got {self.threads}")


def _environment(device: torch.device) -> dict[str, object]:
    env: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "intra_op_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        env["load_average_start"] = os.getloadavg()
    for peer in ("torchjd",):
        try:
            env[f"{peer}_version"] = __import__(peer).__version__
        except (ImportError, AttributeError):
            pass
    return env


def _pin_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has started: it stays as it is (recorded)
        pass


def _group_contenders(config: BenchConfig, num_tasks: int) -> tuple[list[Contender], list[str]]:
    methods = list(config.methods) if config.methods is not None else list(M.available())
    contenders = repmtl_contenders(methods, config.levels, full_jacobian=config.full_jacobian)
    notes: list[str] = []
    if config.torchjd:
        peers, peer_notes = torchjd_contenders(["ew", *methods], num_tasks)
        contenders += peers
        notes += peer_notes
    if config.libmtl is not None:
        peers, peer_notes = libmtl_contenders(config.libmtl, ["ew", *methods], config.levels)
        contenders += peers
        notes += peer_notes
    return contenders, notes


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Measure every group (workload × T) and return the results (see ``repmtl.bench.table``)."""
    config.check()
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device here")
    _pin_threads(config.threads)
    clock = StepClock(device)
    started = time.time()
    environment = _environment(device)
    groups = []
    notes: set[str] = set()
    for workload in config.workloads:
        fixed = WORKLOADS[workload].fixed_tasks
        task_counts = (fixed,) if fixed is not None else config.tasks
        for num_tasks in task_counts:
            problem = build_problem(workload, num_tasks, device, seed=config.seed, size=config.size)
            contenders, group_notes = _group_contenders(config, num_tasks)
            notes.update(group_notes)
            steps, failures = {}, {}
            for contender in contenders:
                try:
                    steps[contender.name] = contender.make(problem, config.lr)
                except Exception as exc:  # noqa: BLE001 - reported per contender
                    failures[contender.name] = f"{type(exc).__name__}: {exc}"

            def report(message: str, label: str = f"{workload} T={num_tasks}") -> None:
                if progress is not None:
                    progress(f"{label}: {message}")

            timings, run_failures = interleaved_timings(
                steps, REFERENCE, clock, rounds=config.rounds, steps=config.steps, warmup=config.warmup,
                seed=config.seed, progress=report,
            )
            failures.update(run_failures)
            memory: dict[str, int | None] = {}
            if config.memory:
                def release(model=problem.model) -> None:
                    model.zero_grad(set_to_none=True)

                for name in timings:
                    memory[name] = peak_step_memory(steps[name], device, release)
                report("memory measured")
            d = shared_parameter_count(problem)
            element = next(problem.model.shared_parameters()).element_size()
            groups.append({
                "workload": workload,
                "description": f"{WORKLOADS[workload].description}; input {tuple(problem.inputs.shape)}",
                "tasks": num_tasks,
                "shared_parameters": d,
                "jacobian_bytes": num_tasks * d * element,
                "contenders": {
                    c.name: {
                        "family": c.family, "method": c.method, "level": c.level,
                        "seconds": timings[c.name].seconds, "ratios": timings[c.name].ratios,
                        **timings[c.name].summary(), "memory_bytes": memory.get(c.name),
                    }
                    for c in contenders if c.name in timings
                },
                "failures": failures,
            })
            del problem, steps
    if hasattr(os, "getloadavg"):
        environment["load_average_end"] = os.getloadavg()
    environment["seconds"] = round(time.time() - started, 1)
    environment["clock"] = clock.name
    config_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    return {"config": config_dict, "environment": environment, "groups": groups, "notes": sorted(notes)}
