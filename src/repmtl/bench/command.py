"""The options of ``repmtl bench`` (also ``python benchmarks/bench.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repmtl.bench.runner import BenchConfig, run_bench
from repmtl.bench.table import render
from repmtl.bench.workloads import WORKLOADS
from repmtl.extras import MissingExtraError

DESCRIPTION = (
    "Per-step time and peak step memory of every method at both levels, Rep-MTL, the T-backward "
    "floor and (when installed) TorchJD / LibMTL, relative to EW on the same model, batch and device."
)


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.partition("x")
    if not sep or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 48x64, got {text!r}")
    return int(height), int(width)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repmtl bench", description=DESCRIPTION)
    p.add_argument("--workloads", nargs="+", default=["mlp", "cnn"], choices=list(WORKLOADS),
                   help="default: mlp cnn (resnet18 and nyuv2 take longer)")
    p.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8], help="numbers of tasks T (nyuv2: always 3)")
    p.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    p.add_argument("--levels", nargs="+", default=["parameters", "representation"], choices=["parameters", "last_layer", "representation"])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=1, help="torch threads, pinned (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per contender and round (default 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first (default 2)")
    p.add_argument("--size", type=_size, default=None, help="input HEIGHTxWIDTH for the image workloads")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the profiled memory step")
    p.add_argument("--no-torchjd", dest="torchjd", action="store_false", help="skip TorchJD even if installed")
    p.add_argument("--libmtl", type=Path, default=None, help="LibMTL source folder (a clone): adds its columns")
    p.add_argument("--full-jacobian", action="store_true",
                   help="also run each parameter-level Gramian method forming every row of J (factor_linear=False)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out is not None and not args.out.parent.is_dir():
        print(f"error: --out {args.out}: folder {args.out.parent} does not exist", file=sys.stderr)
        return 2
    config = BenchConfig(
        workloads=tuple(args.workloads), tasks=tuple(args.tasks), methods=tuple(args.methods) if args.methods else None,
        levels=tuple(args.levels), device=args.device, threads=args.threads, rounds=args.rounds, steps=args.steps,
        warmup=args.warmup, memory=args.memory, torchjd=args.torchjd, libmtl=args.libmtl,
        full_jacobian=args.full_jacobian, size=args.size, seed=args.seed,
    )

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  {message}", file=sys.stderr, flush=True)

    try:
        results = run_bench(config, progress)
    except (ValueError, KeyError, FileNotFoundError, MissingExtraError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(render(results))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"results written to {args.out}", file=sys.stderr)
    return 0
