"""The Python API: no silent state loss, per-task batch sizes, autocast and torch.compile."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import repmtl
from repmtl import methods
from repmtl.model import MultiTaskModel

ARGS = {"fixed": {"weights": [1.0, 2.0]}}


def _model(seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5))
    return MultiTaskModel(encoder, {"a": nn.Linear(5, 1), "b": nn.Linear(5, 2)})


def _levels(cls) -> tuple[str, ...]:
    return ("parameters",) if cls.consumes == "losses" else cls.levels


ALL = [(n, lev) for n, c in methods.available().items() for lev in _levels(c)]


@pytest.mark.parametrize("name", [n for n in methods.available() if n != "fixed"])
def test_stateful_method_by_name_raises(name):
    model = _model()
    out = model(torch.randn(4, 6))
    losses = {t: p.pow(2).mean() for t, p in out.predictions.items()}
    stateful = methods.create(name, tasks=["a", "b"]).stateful
    if stateful:
        with pytest.raises(TypeError, match="Create it once"):
            repmtl.backward(losses, representation=out.representation, method=name)
    else:
        level = methods.default_level(methods.lookup(name))
        repmtl.backward(losses, representation=out.representation, method=name, level=level)


def test_famo_and_dwa_count_as_stateful():
    assert methods.create("famo", tasks=["a", "b"]).stateful
    assert methods.create("dwa", tasks=["a", "b"]).stateful
    assert not methods.create("pcgrad", tasks=["a", "b"]).stateful


@pytest.mark.parametrize("name", [n for n, c in methods.available().items() if "parameters" in _levels(c)])
def test_multi_input_with_per_task_batch_sizes(name):
    model = _model()
    method = methods.create(name, tasks=["a", "b"], **ARGS.get(name, {}))
    for step in range(2):
        x = {"a": torch.randn(5, 6), "b": torch.randn(3, 6)}
        out = model(x)
        losses = {t: (out.predictions[t] - 0.5).pow(2).mean() + 0.1 for t in ("a", "b")}
        repmtl.backward(losses, representation=out.representation, method=method, level="parameters")
        grads = [p.grad for p in model.encoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        model.zero_grad()


def test_multi_input_rep_mtl_with_unequal_batches_is_refused():
    model = _model()
    out = model({"a": torch.randn(5, 6), "b": torch.randn(3, 6)})
    losses = {t: out.predictions[t].pow(2).mean() for t in ("a", "b")}
    with pytest.raises(ValueError, match="one batch shape"):
        repmtl.backward(losses, representation=out.representation, regularizers=[repmtl.regularizers.create("repmtl")])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name, level", ALL)
def test_autocast_every_method(name, level, dtype):
    model = _model()
    method = methods.create(name, tasks=["a", "b"], **ARGS.get(name, {}))
    for _ in range(2):
        with torch.autocast("cpu", dtype=dtype):
            out = model(torch.randn(8, 6))
            losses = {t: out.predictions[t].pow(2).mean() + 1 for t in ("a", "b")}
        assert out.representation.dtype == dtype
        record = repmtl.backward(losses, representation=out.representation, method=method, level=level)
        if record.weights is not None:
            assert record.weights.dtype == torch.float32
        for p in model.parameters():
            assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        model.zero_grad()


def test_autocast_matches_float32_closely():
    method = methods.create("mgda", tasks=["a", "b"])
    weights = {}
    for precision in ("fp32", "bf16"):
        model = _model()
        torch.manual_seed(3)
        x = torch.randn(8, 6)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
            losses = {t: out.predictions[t].pow(2).mean() + 1 for t in ("a", "b")}
        weights[precision] = repmtl.backward(losses, representation=out.representation, method=method,
                                             level="representation").weights
    assert torch.allclose(weights["fp32"], weights["bf16"], atol=0.05)


def test_whole_model_compile_is_refused_clearly():
    model = _model()
    compiled = torch.compile(model, backend="aot_eager")
    out = compiled(torch.randn(4, 6))
    losses = {t: p.pow(2).mean() for t, p in out.predictions.items()}
    with pytest.raises(ValueError, match="compile the encoder and the heads separately"):
        repmtl.backward(losses, representation=out.representation, method=methods.create("mgda"), level="representation")


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_compiled_encoder_and_heads_work(level):
    model = _model()
    model.encoder = torch.compile(model.encoder, backend="aot_eager")
    reference = _model()
    with torch._functorch.config.patch(donated_buffer=False):
        for m in (model, reference):
            out = m(torch.ones(4, 6))
            losses = {t: p.pow(2).mean() for t, p in out.predictions.items()}
            repmtl.backward(losses, representation=out.representation, method=methods.create("pcgrad"), level=level)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, repmtl.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_donated_buffer_error_says_what_to_do(monkeypatch):
    from repmtl import grads

    def donated(*args, **kwargs):
        raise RuntimeError("This backward function was compiled with non-empty donated buffers which ...")

    monkeypatch.setattr(grads, "task_jacobian", donated)
    model = _model()
    out = model(torch.randn(4, 6))
    losses = {t: p.pow(2).mean() for t, p in out.predictions.items()}
    with pytest.raises(RuntimeError, match="donated_buffer = False"):
        repmtl.backward(losses, representation=out.representation, method=methods.create("mgda"))
