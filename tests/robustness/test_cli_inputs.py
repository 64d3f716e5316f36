"""Fuzz the command line with bad values for every declared hyper-parameter of every method and
regularizer, and for the run options: always a clear message and exit code 2, never a traceback,
and nothing trained or written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from repmtl import methods, regularizers
from repmtl.cli import app
from repmtl.hparams import HyperparameterError, declared, parse_cli_value, validate
from tests import _tiny  # noqa: F401

runner = CliRunner()
BASE = ["train", "--benchmark", "tiny", "--no-progress", "--no-baseline"]
CANDIDATES = ("abc", "-3", "2.5", "7", "nan", "true", "inf", "0", "1e400", "[1,", "bogus,thing", "-0.5")
#: bad values driven through the CLI per argument (every candidate is still checked by validate)
PER_ARGUMENT = 3
REQUIRED = {"fixed": ["--method-arg", "weights=1,2"]}


def _refused(owner: str, cls: type, name: str, text: str) -> bool:
    try:
        validate(owner, cls, {name: parse_cli_value(owner, cls, name, text)})
    except HyperparameterError:
        return True
    return False


def _bad_values() -> list[tuple[str, str, str, str]]:
    cases = []
    for kind, registry in (("method", methods.available()), ("regularizer", regularizers.available())):
        for owner_name, cls in registry.items():
            owner = f"{kind} {owner_name!r}"
            for name in declared(cls):
                refused = [text for text in CANDIDATES if _refused(owner, cls, name, text)]
                cases += [(kind, owner_name, name, text) for text in refused[:PER_ARGUMENT]]
    return cases


CASES = _bad_values()


def test_every_declared_hyper_parameter_has_refused_values():
    covered = {(kind, owner, name) for kind, owner, name, _ in CASES}
    for kind, registry in (("method", methods.available()), ("regularizer", regularizers.available())):
        for owner, cls in registry.items():
            for name in declared(cls):
                assert (kind, owner, name) in covered, (owner, name)


@pytest.mark.parametrize("kind, owner, name, text", CASES, ids=[f"{o}-{n}={t}" for _, o, n, t in CASES])
def test_bad_hyper_parameter_is_refused_clearly(tmp_path, kind, owner, name, text):
    if kind == "method":
        args = [*BASE, "--method", owner, *REQUIRED.get(owner, []), "--method-arg", f"{name}={text}"]
    else:
        args = [*BASE, "--regularizer", owner, "--regularizer-arg", f"{name}={text}"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{kind} '{owner}': {name} expects" in message and "Traceback" not in result.output, result.output
    assert not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "batch_size expects an integer ≥ 1, got 0"),
        (["--epochs", "0"], "epochs expects an integer ≥ 1"),
        (["--max-steps", "-1"], "max_steps expects an integer ≥ 1"),
        (["--lr", "-1"], "lr expects a finite number > 0"),
        (["--lr", "nan"], "lr expects a finite number > 0"),
        (["--weight-decay", "-0.1"], "weight_decay expects a finite number ≥ 0"),
        (["--log-every", "0"], "log_every expects an integer ≥ 1"),
        (["--seed", "-1"], "seed expects an integer ≥ 0"),
        (["--encoder", "resnet50"], "one fixed network; --encoder resnet50 does not apply"),
        (["--device", "tpu"], "device expects cpu, cuda or cuda:N"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "mgda", "--level", "pixels"], "unknown level 'pixels'"),
        (["--method", "mgda", "--method-arg", "bogus=1"], "method 'mgda' has no hyper-parameter 'bogus'"),
        (["--method-arg", "noequals"], "expected key=value"),
        (["--regularizer", "nope"], "unknown regularizer 'nope'"),
        (["--regularizer-arg", "tau=1"], "--regularizer-arg needs --regularizer"),
        (["--tau", "0.5"], "only applies to Rep-MTL"),
        (["--method", "repmtl", "--tau", "0"], "tau expects a finite number > 0"),
        (["--loss-transform", "sqrt"], "loss_transform must be 'none' or 'log'"),
        (["--option", "bogus=1"], "has no option(s) ['bogus']"),
        (["--single-task", "zzz"], "unknown task 'zzz'"),
        (["--diagnostics", "every=0"], "every=N"),
        (["--pretrained", "/nonexistent.pt"], "--pretrained does not apply"),
    ],
)
def test_bad_run_options_are_refused_clearly(tmp_path, args, message):
    result = runner.invoke(app, [*BASE, "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output, result.output
    assert not any(tmp_path.rglob("*.json"))


def test_fixed_weights_parse_as_numbers(tmp_path):
    result = runner.invoke(app, [*BASE, "--out", str(tmp_path), "--method", "fixed", "--method-arg", "weights=1,2",
                                 "--epochs", "1"])
    assert result.exit_code == 0, result.output
    (config,) = [json.loads(p.read_text()) for p in tmp_path.rglob("config.json")]
    assert config["method_args"] == {"weights": [1.0, 2.0]}


def test_cli_values_take_the_declared_types():
    mgda, famo, cagrad = methods.lookup("mgda"), methods.lookup("famo"), methods.lookup("cagrad")
    assert parse_cli_value("m", mgda, "max_iter", "30") == 30
    assert parse_cli_value("m", famo, "adam_betas", "0.8,0.9") == ["0.8", "0.9"]
    assert validate("m", famo, {"adam_betas": ["0.8", "0.9"]}) == {"adam_betas": (0.8, 0.9)}
    assert parse_cli_value("m", cagrad, "rescale", "2") == 2
    assert parse_cli_value("m", methods.lookup("stch"), "nadir", "none") is None


def test_methods_command_describes_one_method():
    result = runner.invoke(app, ["methods", "mgda"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for expected in ("max_iter", "an integer ≥ 1", "250", "normalization", "'l2'", "Sener", "parameters, last_layer, representation"):
        assert expected in text, expected
    assert runner.invoke(app, ["methods", "nope"]).exit_code == 2


def test_describe_covers_every_method():
    for name in methods.available():
        result = runner.invoke(app, ["methods", name])
        assert result.exit_code == 0, (name, result.output)
