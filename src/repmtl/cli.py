"""The ``repmtl`` command line (typer); ``sweep``, ``compare``, ``report`` and ``study`` live in
:mod:`repmtl.experiments.commands`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from repmtl.experiments import commands
from repmtl.extras import MissingExtraError
from repmtl.hparams import parse_cli_value

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multi-task learning optimisation: train, compare, diagnose.")
# Piped output keeps whole table rows (rich would wrap them at 80 columns).
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True, soft_wrap=True)


def _parse_assignments(items: list[str] | None, flag: str) -> dict[str, str]:
    """``key=value`` pairs as strings (``-`` in keys read as ``_``)."""
    parsed: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint=flag)
        parsed[key.strip().replace("-", "_")] = value
    return parsed


def _parse_hparams(owner: str, cls: type, items: list[str] | None, flag: str) -> dict[str, Any]:
    """``key=value`` assignments turned into the types ``cls`` declares (checked again on creation)."""
    return {key: parse_cli_value(owner, cls, key, text) for key, text in _parse_assignments(items, flag).items()}


def _parse_options(items: list[str] | None, flag: str = "--option") -> dict[str, Any]:
    """Benchmark options (or architecture arguments): JSON values where they parse (numbers,
    booleans, lists), else strings."""
    parsed: dict[str, Any] = {}
    for key, value in _parse_assignments(items, flag).items():
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


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
    method_arg: Annotated[list[str] | None, typer.Option("--method-arg", help="Method hyper-parameter key=value (repeatable).")] = None,
    level: Annotated[str | None, typer.Option(help="Where task gradients are taken: parameters | last_layer | representation (default: the method's).")] = None,
    regularizer: Annotated[str | None, typer.Option(help="Regularizer name, e.g. repmtl.")] = None,
    regularizer_arg: Annotated[list[str] | None, typer.Option("--regularizer-arg", help="Regularizer hyper-parameter key=value (repeatable).")] = None,
    lambda_tsr: Annotated[float | None, typer.Option(help="Rep-MTL: TSR strength λ_tsr (default 0.9).")] = None,
    lambda_csa: Annotated[float | None, typer.Option(help="Rep-MTL: CSA strength λ_csa (default 0.9).")] = None,
    tau: Annotated[float | None, typer.Option(help="Rep-MTL: CSA temperature τ (default 2.0).")] = None,
    loss_transform: Annotated[str | None, typer.Option(help="none | log (default: the method's; log for Rep-MTL).")] = None,
    single_task: Annotated[str | None, typer.Option(help="Train one single-task baseline for this task only.")] = None,
    seed: int = 0,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the benchmark's).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on steps per epoch (smoke runs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the benchmark's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the benchmark's).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (default: the benchmark's).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    out_dir: Annotated[Path, typer.Option("--out", help="Folder holding all runs.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run folder name (default: from method, level and seed).")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Dataset folder (NYUv2, Cityscapes, ...).")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder, e.g. resnet50 | resnet18 | timm:<model> | clip:<model> (docs/backbones.md).")] = None,
    pretrained: Annotated[Path | None, typer.Option(help="Local weights file for the encoder (never downloaded).")] = None,
    freeze_encoder: Annotated[bool, typer.Option(help="Keep the encoder's weights and BatchNorm statistics fixed; train the heads.")] = False,
    option: Annotated[list[str] | None, typer.Option("--option", help="Benchmark option KEY=VALUE (repeatable), e.g. classes=19.")] = None,
    architecture: Annotated[str, typer.Option(help="hps | mtan | cross-stitch | mmoe | cgc | ple | dselect-k | ltb (docs/architectures.md).")] = "hps",
    architecture_arg: Annotated[list[str] | None, typer.Option("--architecture-arg", help="Architecture argument KEY=VALUE (repeatable), e.g. experts=4.")] = None,
    diagnostics: Annotated[str | None, typer.Option(help="Log imbalance diagnostics every=N steps (and power-law α per epoch); ,level=representation measures every method alike.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in the output folder.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again even if the run folder holds a run.")] = False,
    baseline: Annotated[bool, typer.Option(help="Train/reuse single-task baselines and report Δp.")] = True,
    log_every: Annotated[int, typer.Option(help="Log every N steps.")] = 10,
    num_workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 (autocast forward; Gramians, solvers and penalties in fp32).")] = "fp32",
    max_bad_steps: Annotated[int, typer.Option(help="Stop after this many consecutive steps skipped for a non-finite loss or gradient.")] = 5,
) -> None:
    """Train a multi-task run (and its single-task baselines) and print the test table.
    Under ``torchrun`` every process trains its share of each batch (docs/distributed.md)."""
    from repmtl import methods, regularizers
    from repmtl.hparams import HyperparameterError
    from repmtl.train.config import TrainConfig
    from repmtl.train.experiment import results_table, run_experiment
    from repmtl.train.faults import TrainingDiverged
    from repmtl.train.interrupt import TrainingInterrupted
    from repmtl.train.presets import PRESETS

    try:
        method_cls = methods.lookup(str(PRESETS.get(method, ("", {"method": method}))[1]["method"]))
        method_args = _parse_hparams(f"method {method_cls.name!r}", method_cls, method_arg, "--method-arg")
        regularizer_args: dict[str, Any] = {}
        if regularizer_arg and not regularizer and method not in PRESETS:
            raise ValueError("--regularizer-arg needs --regularizer (or a preset method such as repmtl)")
        reg_name = regularizer or str(PRESETS.get(method, ("", {}))[1].get("regularizer", ""))
        if reg_name:
            reg_cls = regularizers.lookup(reg_name)
            regularizer_args = _parse_hparams(f"regularizer {reg_name!r}", reg_cls, regularizer_arg, "--regularizer-arg")
        for key, value in (("lambda_tsr", lambda_tsr), ("lambda_csa", lambda_csa), ("tau", tau)):
            if value is not None:
                if reg_name != "repmtl":
                    raise ValueError(f"--{key.replace('_', '-')} only applies to Rep-MTL (--method repmtl or --regularizer repmtl)")
                regularizer_args[key] = value
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0] if exc.args else exc)) from None
    diagnostics_every, diagnostics_level = _parse_diagnostics(diagnostics)
    config = TrainConfig(
        benchmark=benchmark, method=method, method_args=method_args,
        level=level, regularizer=regularizer, regularizer_args=regularizer_args,
        loss_transform=loss_transform, single_task=single_task, seed=seed, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, device=device,
        out=str(out_dir), name=name, data_root=str(data_root) if data_root else None, encoder=encoder,
        pretrained=str(pretrained) if pretrained else None, freeze_encoder=freeze_encoder,
        options=_parse_options(option),
        architecture=architecture, architecture_args=_parse_options(architecture_arg, "--architecture-arg"),
        diagnostics_every=diagnostics_every,
        diagnostics_level=diagnostics_level,
        log_every=log_every, num_workers=num_workers, progress=progress,
        precision=precision, max_bad_steps=max_bad_steps,
    )
    from repmtl.train.distributed import is_writer

    console = err if is_writer() else Console(stderr=True, quiet=True)  # torchrun: rank 0 speaks
    try:
        result = run_experiment(config, resume=resume, overwrite=overwrite, baselines=baseline, console=console)
    except TrainingInterrupted as stop:
        command = shlex.join(["repmtl", *[a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")], "--resume"])
        err.print(f"[yellow]{escape(str(stop))}.[/] Resume exactly where it stopped with:\n  {escape(command)}")
        raise typer.Exit(stop.exit_code) from None
    except TrainingDiverged as diverged:
        err.print(f"[red]{escape(str(diverged))}[/]")
        raise typer.Exit(diverged.exit_code) from None
    except MissingExtraError as exc:  # e.g. --benchmark qm9 without torch_geometric / qm9pack
        raise _fail(str(exc)) from None
    except (KeyError, ValueError, FileExistsError, FileNotFoundError, HyperparameterError) as exc:
        raise _fail(str(exc.args[0] if exc.args else exc)) from None
    except OSError as exc:  # read-only folder, full disk, ...
        where = f" {exc.filename}" if exc.filename else ""
        raise _fail(f"cannot write{where}: {exc.strerror or exc}; free space or choose another --out") from None
    if is_writer():
        out.print(results_table(result))
        out.print(f"run folder: {result.run.run_dir}")


@app.command("methods")
def list_methods(
    name: Annotated[str | None, typer.Argument(help="Show one method's hyper-parameters, levels and reference.")] = None,
) -> None:
    """List the available methods, or describe one (``repmtl methods mgda``)."""
    from repmtl import methods
    from repmtl.train.presets import PRESETS

    if name is not None:
        try:
            cls = methods.lookup(str(PRESETS.get(name, ("", {"method": name}))[1]["method"]))
        except KeyError as exc:
            raise _fail(str(exc.args[0])) from None
        out.print(describe_method(cls, preset=PRESETS.get(name)))
        return
    table = Table(title="repmtl methods")
    for column in ("name", "family", "consumes", "levels", "description"):
        table.add_column(column)
    for method_name, cls in methods.available().items():
        levels = "any" if cls.consumes == "losses" else ", ".join(cls.levels)
        table.add_row(method_name, cls.family, cls.consumes, levels, cls.description)
    for preset, (description, fields) in PRESETS.items():
        table.add_row(preset, "preset", "", "", f"{description} ({', '.join(f'{k}={v}' for k, v in fields.items())})")
    out.print(table)


def describe_method(cls: type, preset: tuple[str, dict] | None = None) -> Table:
    """One method's card: description, reference, levels and every declared hyper-parameter."""
    from repmtl.hparams import describe
    from repmtl.methods import default_level

    title = f"{cls.name}: {cls.description}" if preset is None else f"preset: {preset[0]}"
    table = Table(title=title, caption=f"reference: {cls.reference}")
    for column in ("hyper-parameter", "expects", "default"):
        table.add_column(column)
    for row in describe(cls):
        table.add_row(*row)
    levels = "any (loss weighting)" if cls.consumes == "losses" else ", ".join(cls.levels)
    table.add_section()
    table.add_row("levels", levels, default_level(cls) or "")
    return table


@app.command("benchmarks")
def list_benchmarks() -> None:
    """List the benchmark presets."""
    from repmtl.data import available_benchmarks

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


@app.command(add_help_option=False, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Per-step time and memory of every method vs EW (`repmtl bench --help` for the options)."""
    from repmtl.bench.command import main as bench_main

    raise typer.Exit(bench_main(ctx.args))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
