"""The ``repmtl`` command line (typer); ``sweep``, ``compare``, ``report`` and ``study`` live in
:mod:`repmtl.experiments.commands`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from repmtl.experiments import commands

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-task learning optimisation: train, compare, diagnose.")
# Piped output keeps whole table rows (rich would wrap them at 80 columns).
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True, soft_wrap=True)


def _parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they are (numbers, booleans, lists), else strings."""
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint=flag)
        try:
            parsed[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.replace("-", "_")] = value
    return parsed


def _parse_diagnostics(spec: str | None) -> tuple[int | None, str]:
    """``every=N[,level=auto|representation]`` -> (N, level)."""
    if spec is None:
        return None, "auto"
    fields = dict(part.partition("=")[::2] for part in spec.split(","))
    every, level = fields.pop("every", ""), fields.pop("level", "auto")
    if fields or not every.isdigit() or int(every) < 1 or level not in ("auto", "representation"):
        raise typer.BadParameter("use every=N (N ≥ 1), optionally ,level=representation", param_hint="--diagnostics")
    return int(every), level


@app.command()
def train(
    benchmark: Annotated[str, typer.Option(help="Benchmark preset (see `repmtl benchmarks`).")] = "multidigits",
    method: Annotated[str, typer.Option(help="Method name (see `repmtl methods`).")] = "ew",
    method_arg: Annotated[Optional[list[str]], typer.Option("--method-arg", help="Method hyper-parameter key=value (repeatable).")] = None,
    level: Annotated[Optional[str], typer.Option(help="Gradient level: parameters | representation (default: the method's).")] = None,
    regularizer: Annotated[Optional[str], typer.Option(help="Regularizer name, e.g. repmtl.")] = None,
    regularizer_arg: Annotated[Optional[list[str]], typer.Option("--regularizer-arg", help="Regularizer hyper-parameter key=value (repeatable).")] = None,
    lambda_tsr: Annotated[Optional[float], typer.Option(help="Rep-MTL: TSR strength λ_tsr (default 0.9).")] = None,
    lambda_csa: Annotated[Optional[float], typer.Option(help="Rep-MTL: CSA strength λ_csa (default 0.9).")] = None,
    tau: Annotated[Optional[float], typer.Option(help="Rep-MTL: CSA temperature τ (default 0.1).")] = None,
    loss_transform: Annotated[Optional[str], typer.Option(help="none | log (default: the method's; log for Rep-MTL).")] = None,
    single_task: Annotated[Optional[str], typer.Option(help="Train one single-task baseline for this task only.")] = None,
    seed: int = 0,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the benchmark's).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Cap on steps per epoch (smoke runs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (default: the benchmark's).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the benchmark's).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default: the benchmark's).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder holding all runs.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="Run folder name (default: from method, level and seed).")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Dataset folder (NYUv2, Cityscapes, ...).")] = None,
    encoder: Annotated[Optional[str], typer.Option(help="Encoder, e.g. resnet50 | resnet18.")] = None,
    pretrained: Annotated[Optional[Path], typer.Option(help="Local ImageNet weights file for the encoder.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", help="Benchmark option KEY=VALUE (repeatable), e.g. classes=19.")] = None,
    diagnostics: Annotated[Optional[str], typer.Option(help="Log imbalance diagnostics every=N steps (and power-law α per epoch); ,level=representation measures every method alike.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the output folder.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again even if the run folder holds a run.")] = False,
    baseline: Annotated[bool, typer.Option(help="Train/reuse single-task baselines and report Δp.")] = True,
    log_every: Annotated[int, typer.Option(help="Log every N steps.")] = 10,
    num_workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a multi-task run (and its single-task baselines) and print the test table."""
    from repmtl.train.config import TrainConfig
    from repmtl.train.experiment import results_table, run_experiment

    regularizer_args = _parse_assignments(regularizer_arg, "--regularizer-arg")
    diagnostics_every, diagnostics_level = _parse_diagnostics(diagnostics)
    for key, value in (("lambda_tsr", lambda_tsr), ("lambda_csa", lambda_csa), ("tau", tau)):
        if value is not None:
            if not (regularizer == "repmtl" or method == "repmtl"):
                raise typer.BadParameter("only applies to Rep-MTL (--method repmtl or --regularizer repmtl)",
                                         param_hint=f"--{key.replace('_', '-')}")
            regularizer_args[key] = value
    config = TrainConfig(
        benchmark=benchmark, method=method, method_args=_parse_assignments(method_arg, "--method-arg"),
        level=level, regularizer=regularizer, regularizer_args=regularizer_args,
        loss_transform=loss_transform, single_task=single_task, seed=seed, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
        out=str(out_dir), name=name, data_root=str(data_root) if data_root else None, encoder=encoder,
        pretrained=str(pretrained) if pretrained else None, options=_parse_assignments(option, "--option"),
        diagnostics_every=diagnostics_every,
        diagnostics_level=diagnostics_level,
        log_every=log_every, num_workers=num_workers, progress=progress,
    )
    try:
        result = run_experiment(config, resume=resume, overwrite=overwrite, baselines=baseline, console=err)
    except (KeyError, ValueError, TypeError, FileExistsError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(2) from exc
    out.print(results_table(result))
    out.print(f"run folder: {result.run.run_dir}")


@app.command("methods")
def list_methods() -> None:
    """List the available methods with what they need and their reference."""
    from repmtl import methods

    table = Table(title="repmtl methods")
    for column in ("name", "family", "needs", "levels", "description"):
        table.add_column(column)
    for name, cls in methods.available().items():
        levels = "any" if cls.needs == "losses" else ", ".join(cls.levels)
        table.add_row(name, cls.family, cls.needs, levels, cls.description)
    from repmtl.experiments.presets import PRESETS

    for name, (description, fields) in PRESETS.items():
        table.add_row(name, "preset", "", "", f"{description} ({', '.join(f'{k}={v}' for k, v in fields.items())})")
    out.print(table)


@app.command("benchmarks")
def list_benchmarks() -> None:
    """List the benchmark presets."""
    from repmtl.experiments.benchmarks import available_benchmarks

    table = Table(title="repmtl benchmarks")
    for column in ("name", "tasks input", "needs --data-root", "description"):
        table.add_column(column)
    for name, bench in available_benchmarks().items():
        table.add_row(name, "multi" if bench.multi_input else "single", "yes" if bench.needs_data_root else "no", bench.description)
    out.print(table)


app.command("sweep")(commands.sweep)
app.command("compare")(commands.compare)
app.command("report")(commands.report)
app.add_typer(commands.study_app, name="study")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
