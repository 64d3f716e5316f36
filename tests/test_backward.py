"""repmtl.backward against independent per-task autograd computations."""

import pytest
import torch

import repmtl
from repmtl import grads as G
from repmtl.methods.base import Aggregator, GramianWeighting, plain_heads
from tests.conftest import tiny_losses, tiny_model


def _grads(params):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def _per_task_grads(model, x):
    """Independent reference: one plain backward per task."""
    out = {}
    for t in model.task_names:
        model.zero_grad()
        _, losses = tiny_losses(model, x)
        losses[t].backward()
        out[t] = (_grads(model.shared_parameters()), {h: _grads(model.task_parameters(h)) for h in model.task_names})
    model.zero_grad()
    return out


def _assert_all_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e)


class FixedWeights(GramianWeighting):
    """A Gramian-based test method with known weights that records what it saw."""

    name = "test-fixed"

    def __init__(self, alpha, weights_heads=True):
        super().__init__()
        self.alpha = torch.tensor(alpha, dtype=torch.float64)
        self.weights_heads = weights_heads
        self.seen = None

    def weights(self, gramian, losses):
        self.seen = gramian
        return self.alpha if self.weights_heads else plain_heads(self.alpha)


class SumDirection(Aggregator):
    """A Jacobian method returning 2·Σ_t J_t, so the expected update is easy to form."""

    name = "test-direction"

    def aggregate(self, jacobian, context):
        self.segments = context.segments
        return 2 * jacobian.sum(0)


def test_ew_equals_plain_backward_of_the_sum(model, batch):
    _, losses = tiny_losses(model, batch)
    sum(losses.values()).backward()
    expected = _grads(model.parameters())
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method="ew")
    _assert_all_close(_grads(model.parameters()), expected)
    torch.testing.assert_close(record.weights, torch.ones(2, dtype=torch.float64))
    assert record.tasks == ("t0", "t1")


@pytest.mark.parametrize("level", ["parameters", "last_layer", "representation"])
@pytest.mark.parametrize("weights_heads", [True, False])
@pytest.mark.parametrize("vectorize", [True, False])
def test_gramian_method_applies_weights(model, batch, level, weights_heads, vectorize):
    ref = _per_task_grads(model, batch)
    alpha = [0.3, 1.7]
    method = FixedWeights(alpha, weights_heads).bind(model.task_names)
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method=method, level=level, vectorize=vectorize)

    expected_shared = [alpha[0] * a + alpha[1] * b for a, b in zip(ref["t0"][0], ref["t1"][0])]
    _assert_all_close(_grads(model.shared_parameters()), expected_shared)
    for i, t in enumerate(model.task_names):
        scale = alpha[i] if weights_heads else 1.0
        _assert_all_close(_grads(model.task_parameters(t)), [scale * g for g in ref[t][1][t]])

    out, losses = tiny_losses(model, batch)
    stacked = torch.stack(list(losses.values()))
    if level == "parameters":
        jac = G.parameter_jacobian(stacked, list(model.shared_parameters()))
    elif level == "last_layer":
        jac = G.parameter_jacobian(stacked, [model.encoder[3].weight, model.encoder[3].bias])
    else:
        jac = G.saliency(stacked, out.representation).flatten(1)
    torch.testing.assert_close(method.seen, jac @ jac.T)


@pytest.mark.parametrize("level", ["parameters", "representation"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_direction_method_sets_encoder_update(model, batch, level, vectorize):
    ref = _per_task_grads(model, batch)
    out, losses = tiny_losses(model, batch)
    method = SumDirection()
    repmtl.backward(losses, representation=out.representation, method=method, level=level, vectorize=vectorize)
    expected_shared = [2 * (a + b) for a, b in zip(ref["t0"][0], ref["t1"][0])]
    _assert_all_close(_grads(model.shared_parameters()), expected_shared)
    for t in model.task_names:
        _assert_all_close(_grads(model.task_parameters(t)), ref[t][1][t])
    if level == "parameters":
        assert sorted(method.segments) == sorted(p.numel() for p in model.shared_parameters())
    else:
        assert method.segments is None


def test_gradients_accumulate_like_autograd(model, batch):
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method=SumDirection())
    once = _grads(model.parameters())
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method=SumDirection())
    _assert_all_close(_grads(model.parameters()), [2 * g for g in once])


def test_multi_input_parameter_level(batch):
    model = tiny_model()
    x = {"t0": batch, "t1": batch.flip(0) * 0.5}
    expected = {}
    for t in model.task_names:
        model.zero_grad()
        out = model(x)
        loss = out.predictions[t].pow(2).mean()
        loss.backward()
        expected[t] = _grads(model.shared_parameters())
    model.zero_grad()
    out = model(x)
    losses = {t: out.predictions[t].pow(2).mean() for t in model.task_names}
    method = FixedWeights([2.0, 0.5]).bind(model.task_names)
    repmtl.backward(losses, representation=out.representation, method=method)
    _assert_all_close(
        _grads(model.shared_parameters()), [2.0 * a + 0.5 * b for a, b in zip(expected["t0"], expected["t1"])]
    )


def test_log_transform_weights_by_inverse_loss(model, batch):
    ref = _per_task_grads(model, batch)
    out, losses = tiny_losses(model, batch)
    values = [v.item() for v in losses.values()]
    repmtl.backward(losses, representation=out.representation, method="ew", loss_transform="log", eps=0.0)
    expected = [a / values[0] + b / values[1] for a, b in zip(ref["t0"][0], ref["t1"][0])]
    _assert_all_close(_grads(model.shared_parameters()), expected)


def test_last_layer_level_picks_the_layer_next_to_z(model, batch):
    out, _ = tiny_losses(model, batch)
    last_conv = model.encoder[3]
    picked = G.last_layer_parameters([out.representation], list(model.shared_parameters()))
    assert {id(p) for p in picked} == {id(last_conv.weight), id(last_conv.bias)}


# ---- errors -------------------------------------------------------------------------------


def test_non_scalar_loss_names_the_task(model, batch):
    out, losses = tiny_losses(model, batch)
    losses["t1"] = losses["t1"].expand(3)
    with pytest.raises(ValueError, match="task 't1' must be a scalar"):
        repmtl.backward(losses, representation=out.representation)


def test_non_finite_loss_names_the_task(model, batch):
    out, losses = tiny_losses(model, batch)
    losses["t0"] = losses["t0"] * float("nan")
    with pytest.raises(FloatingPointError, match="t0"):
        repmtl.backward(losses, representation=out.representation)
    assert all(p.grad is None for p in model.parameters())


def test_log_transform_of_non_positive_loss_is_reported(model, batch):
    out, losses = tiny_losses(model, batch)
    losses["t1"] = losses["t1"] * 0 - 1
    with pytest.raises(FloatingPointError, match="log transform"):
        repmtl.backward(losses, representation=out.representation, loss_transform="log")


def test_detached_loss_and_representation_are_refused(model, batch):
    out, losses = tiny_losses(model, batch)
    with pytest.raises(ValueError, match="t0.*does not require grad"):
        repmtl.backward({**losses, "t0": losses["t0"].detach()}, representation=out.representation)
    with pytest.raises(ValueError, match="detached"):
        repmtl.backward(losses, representation=out.representation.detach(), method="mgda")


def test_unknown_method_lists_available(model, batch):
    out, losses = tiny_losses(model, batch)
    with pytest.raises(KeyError, match="available: .*ew.*mgda"):
        repmtl.backward(losses, representation=out.representation, method="nope")


def test_unknown_level(model, batch):
    out, losses = tiny_losses(model, batch)
    with pytest.raises(ValueError, match="unknown level"):
        repmtl.backward(losses, representation=out.representation, method="mgda", level="features")


def test_mismatched_task_sets(batch):
    model = tiny_model()
    out = model({"t0": batch, "t1": batch})
    losses = {"t0": out.predictions["t0"].sum(), "t2": out.predictions["t1"].sum()}
    with pytest.raises(ValueError, match="differ"):
        repmtl.backward(losses, representation=out.representation, method="ew")


def test_method_bound_to_other_tasks(model, batch):
    out, losses = tiny_losses(model, batch)
    method = repmtl.methods.create("mgda", tasks=["a", "b"])
    with pytest.raises(ValueError, match="bound to tasks"):
        repmtl.backward(losses, representation=out.representation, method=method)


def test_multi_input_representation_level_is_refused(batch):
    model = tiny_model()
    out = model({"t0": batch, "t1": batch})
    losses = {t: p.sum() for t, p in out.predictions.items()}
    with pytest.raises(ValueError, match="multi-input"):
        repmtl.backward(losses, representation=out.representation, method="mgda", level="representation")


def test_shared_param_bypassing_representation_is_refused(model, batch):
    out, losses = tiny_losses(model, batch)
    leak = model.encoder[0].weight.sum()
    losses = {t: l + 0 * leak for t, l in losses.items()}
    with pytest.raises(ValueError, match="without passing through the representation"):
        repmtl.backward(
            losses, representation=out.representation, shared_params=model.shared_parameters(), method="pcgrad"
        )


def test_direction_method_refuses_to_leave_encoder_params_untrained(model, batch):
    out, losses = tiny_losses(model, batch)
    only_last = list(model.encoder[3].parameters())
    with pytest.raises(ValueError, match="would receive no update"):
        repmtl.backward(losses, representation=out.representation, shared_params=only_last, method=SumDirection())


def test_learnable_method_must_be_bound_first(model, batch):
    method = repmtl.methods.create("uw")
    for _ in range(2):  # the refusal must not bind the method, or a second call would pass
        out, losses = tiny_losses(model, batch)
        with pytest.raises(RuntimeError, match="optimizer"):
            repmtl.backward(losses, representation=out.representation, method=method)
    assert method.task_names is None and not list(method.parameters())


def test_representation_required_for_gradient_methods(model, batch):
    _, losses = tiny_losses(model, batch)
    with pytest.raises(ValueError, match="representation=Z"):
        repmtl.backward(losses, representation=None, method="mgda")
    repmtl.backward(losses, representation=None, method="ew")  # loss scaling does not need it
