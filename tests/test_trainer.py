"""Trainer: exact resumption, model selection, logs, checkpoints and clear errors."""

import json

import pytest
import torch

from repmtl.train import TrainConfig, Trainer, train
from repmtl.train.experiment import run_experiment


def _config(tmp_path, **overrides):
    base = {"benchmark": "multidigits", "out": str(tmp_path), "max_steps": 4, "batch_size": 32, "epochs": 2,
                "log_every": 2, "progress": False}
    base.update(overrides)
    return TrainConfig(**base)


def _params(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return state["model"], state["method"], state["optimizers"]["optimizers"][0]["state"]


@pytest.mark.parametrize("method", ["rlw", "dwa", "pcgrad"])
def test_resume_continues_the_same_trajectory(tmp_path, method):
    straight = _config(tmp_path, method=method, name="straight")
    train(straight)
    split = _config(tmp_path, method=method, name="split", epochs=1)
    train(split)
    train(_config(tmp_path, method=method, name="split", epochs=2), resume=True)

    model_a, method_a, opt_a = _params(tmp_path / "multidigits" / "straight")
    model_b, method_b, opt_b = _params(tmp_path / "multidigits" / "split")
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key
    for key in method_a:
        if isinstance(method_a[key], torch.Tensor):
            assert torch.equal(method_a[key], method_b[key]), key
    assert torch.equal(opt_a[0]["exp_avg"], opt_b[0]["exp_avg"])
    steps_a = (tmp_path / "multidigits" / "straight" / "steps.jsonl").read_text().splitlines()
    steps_b = (tmp_path / "multidigits" / "split" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in steps_a] == [json.loads(x)["step"] for x in steps_b]


def test_a_resumed_run_differs_from_a_restarted_one(tmp_path):
    """Guards the resume test against passing trivially: skipping the restore changes the result."""
    train(_config(tmp_path, method="rlw", name="a"))
    train(_config(tmp_path, method="rlw", name="b", epochs=1))
    trainer = Trainer(_config(tmp_path, method="rlw", name="b", epochs=2))
    trainer.epoch = 1  # pretend-resume without restoring state
    trainer.fit(overwrite=True)
    model_a, _, _ = _params(tmp_path / "multidigits" / "a")
    model_b, _, _ = _params(tmp_path / "multidigits" / "b")
    assert any(not torch.equal(model_a[k], model_b[k]) for k in model_a)


def test_run_folder_contents_and_selection(tmp_path):
    result = train(_config(tmp_path, method="mgda", name="run"))
    run = tmp_path / "multidigits" / "run"
    for name in ("config.json", "environment.json", "steps.jsonl", "epochs.jsonl", "epochs.csv", "results.json"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "best.pt").exists() and list((run / "tb").iterdir())
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    scores = [e["selection_score"] for e in epochs]
    assert result.best_epoch == scores.index(max(scores)) + 1
    step = json.loads((run / "steps.jsonl").read_text().splitlines()[0])
    assert {"loss/left", "loss/right", "weight/left", "weight/right", "lr"} <= set(step)
    assert json.loads((run / "config.json").read_text())["method"] == "mgda"
    assert set(result.test) == {"left", "right"} and 0 <= result.test["left"]["acc"] <= 100


def test_experiment_trains_and_caches_baselines(tmp_path):
    config = _config(tmp_path, epochs=1, max_steps=2)
    first = run_experiment(config)
    assert set(first.baselines) == {"left", "right"}
    assert first.improvement is not None
    stamp = (first.baselines["left"].run_dir / "results.json").stat().st_mtime_ns
    second = run_experiment(_config(tmp_path, epochs=1, max_steps=2, method="gls"))
    assert (second.baselines["left"].run_dir / "results.json").stat().st_mtime_ns == stamp  # reused
    expected = sum(
        (second.run.test[t]["acc"] - second.baselines[t].test[t]["acc"]) / second.baselines[t].test[t]["acc"] * 100
        for t in ("left", "right")
    ) / 2
    assert second.improvement.task == pytest.approx(expected)


def test_existing_run_is_not_overwritten_silently(tmp_path):
    train(_config(tmp_path, epochs=1, name="x"))
    with pytest.raises(FileExistsError, match="--resume"):
        train(_config(tmp_path, epochs=1, name="x"))


def test_resume_refuses_a_changed_configuration(tmp_path):
    train(_config(tmp_path, epochs=1, name="x"))
    with pytest.raises(ValueError, match="differs in \\[.*'method'\\]"):  # (and its level: EW has none)
        train(_config(tmp_path, epochs=2, name="x", method="mgda"), resume=True)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"benchmark": "nope"}, KeyError, "available: .*multidigits"),
        ({"single_task": "middle"}, KeyError, "tasks: \\['left', 'right'\\]"),
        ({"method": "nope"}, KeyError, "available"),
        ({"method": "mgda", "level": "pixels"}, ValueError, "unknown level"),
        ({"method": "mgda", "method_args": {"bogus": 1}}, ValueError, "it accepts: normalization"),
    ],
)
def test_bad_configuration_errors(tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        Trainer(_config(tmp_path, **overrides))


def test_non_finite_gradient_stops_before_the_weights_change(tmp_path):
    trainer = Trainer(_config(tmp_path, epochs=1, name="nan", max_bad_steps=1))  # stop at the first
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    hook = trainer.model.encoder[0].weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        trainer.fit()
    hook.remove()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


def test_diagnostics_are_logged_every_n_steps_and_alpha_per_epoch(tmp_path):
    train(_config(tmp_path, method="pcgrad", name="diag", diagnostics_every=3, log_every=100))
    run = tmp_path / "multidigits" / "diag"
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [3, 6]
    assert {"diag/gds", "diag/gms", "diag/fd", "diag/cond", "diag/norm/left", "diag/cos/right"} <= set(steps[0])
    assert steps[0]["diag/level"] == "parameters"  # PCGrad's own Gramian is reused
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert any(k.startswith("alpha/encoder/") for k in epochs[0]) and "alpha/head_mean/left" in epochs[0]
    assert json.loads((run / "config.json").read_text())["tasks"] == ["left", "right"]


def test_optimizers_follow_the_method(tmp_path):
    uw = Trainer(_config(tmp_path, method="uw"))
    assert any(p is uw.method.log_variance for p in uw.optimizers.parameters())
    mtadam = Trainer(_config(tmp_path, method="mtadam"))
    adam, sgd = mtadam.optimizers.optimizers
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adam, torch.optim.Adam)
    shared = {id(p) for p in mtadam.model.shared_parameters()}
    assert {id(p) for g in sgd.param_groups for p in g["params"]} == shared
    assert not shared & {id(p) for g in adam.param_groups for p in g["params"]}
    igb = Trainer(_config(tmp_path, method="igbv2"))  # its SAC networks are not model parameters
    ids = {id(p) for p in igb.optimizers.parameters()}
    assert not any(id(p) in ids for p in igb.method.parameters())
