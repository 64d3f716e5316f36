"""Rep-MTL (TSR, CSA) against a naive, literal implementation of docs/formulas.md#rep-mtl, and its
gradient flow against end-to-end create_graph autograd of the full objective."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import repmtl
from repmtl.regularizers import RepMTL, csa_loss, tsr_loss
from tests.conftest import tiny_losses, tiny_model

# ---- naive references: python loops, materialised C×C matrices -----------------------------


def naive_tsr(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    s = s.reshape(*s.shape[:3], -1)
    num_tasks, batch, _, positions = s.shape
    s_hat = s.mean(dim=2)  # T×B×N
    m = s_hat.abs().max().detach()  # a constant of the step (module doc)
    m = m if m > 0 else torch.ones(())
    entropies = []
    for b in range(batch):
        for i in range(positions):
            total = sum(s_hat[k, b, i].abs() for k in range(num_tasks))
            h = 0.0
            for t in range(num_tasks):
                p = (s_hat[t, b, i].abs() + eps * m) / (total + num_tasks * eps * m)
                h = h - p * torch.log(p)
            entropies.append(h)
    return torch.stack(entropies).mean()


def _cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = x.flatten(), y.flatten()
    if x.norm() == 0 or y.norm() == 0:
        return torch.zeros((), dtype=x.dtype)
    return (x @ y) / (x.norm() * y.norm())


def naive_csa(s: torch.Tensor, tau: float = 2.0, include_positive: bool = False) -> torch.Tensor:
    s = s.reshape(*s.shape[:3], -1)
    num_tasks, batch, _channels, _ = s.shape
    anchors = []
    for b in range(batch):
        a = torch.stack([s[t, b].mean(dim=1) for t in range(num_tasks)], dim=1)  # C×T
        anchors.append(a @ a.T)  # C×C
    terms = []
    for b in range(batch):
        negatives = [torch.exp(_cos(anchors[b], anchors[k]) / tau) for k in range(batch) if k != b]
        for t in range(num_tasks):
            m = s[t, b] @ s[t, b].T  # C×C
            positive = torch.exp(_cos(anchors[b], m) / tau)
            denominator = sum(negatives) + (positive if include_positive else 0.0)
            if batch == 1 and not include_positive:
                terms.append(-torch.log(positive))  # empty denominator: log term taken as 0
            else:
                terms.append(-torch.log(positive / denominator))
    return torch.stack(terms).mean()


SHAPES = [(2, 3, 4, 5, 6), (3, 4, 8, 1, 1), (3, 2, 2, 3, 3), (4, 3, 6, 2, 2), (2, 5, 3), (1, 3, 4, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_tsr_equals_naive(shape):
    torch.manual_seed(0)
    s = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(tsr_loss(s), naive_tsr(s))


@pytest.mark.parametrize("shape", SHAPES + [(3, 1, 4, 2, 2)])
@pytest.mark.parametrize("include_positive", [False, True])
def test_csa_equals_naive(shape, include_positive):
    torch.manual_seed(1)
    s = torch.randn(*shape, dtype=torch.float64) * 1e-3
    torch.testing.assert_close(csa_loss(s, 0.1, include_positive), naive_csa(s, 0.1, include_positive))


def test_csa_gradient_equals_naive_gradient():
    torch.manual_seed(2)
    s = torch.randn(3, 4, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    (fast,) = torch.autograd.grad(csa_loss(s, 0.2), s)
    (slow,) = torch.autograd.grad(naive_csa(s, 0.2), s)
    torch.testing.assert_close(fast, slow)
    (fast,) = torch.autograd.grad(tsr_loss(s), s)
    (slow,) = torch.autograd.grad(naive_tsr(s), s)
    torch.testing.assert_close(fast, slow)


def test_tsr_hand_computed_case():
    # one sample, one position, two tasks; channel means 0.3 and -0.1 -> P = (0.75, 0.25)
    s = torch.tensor([[[[0.2], [0.4]]], [[[-0.1], [-0.1]]]], dtype=torch.float64)  # T=2,B=1,C=2,N=1
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert tsr_loss(s, eps=0.0).item() == pytest.approx(expected, rel=1e-12)


def test_csa_is_invariant_to_a_samples_scale_and_tsr_to_a_global_scale():
    torch.manual_seed(3)
    s = torch.randn(3, 4, 5, 2, 2, dtype=torch.float64)
    scaled = s * torch.tensor([1e-6, 1.0, 1e4, 3.0], dtype=torch.float64)[None, :, None, None, None]
    torch.testing.assert_close(csa_loss(s), csa_loss(scaled))
    torch.testing.assert_close(tsr_loss(s), tsr_loss(s * 1e-9))


def test_csa_never_materialises_c_by_c():
    """With C ≫ H·W, no intermediate may hold a C×C block (memory ∝ B·T·C·HW, not B·T·C²)."""
    channels = 64

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(o, torch.Tensor):
                    self.shapes.append(tuple(o.shape))
            return out

    s = torch.randn(3, 4, channels, 2, 2, requires_grad=True)
    with Shapes() as mode:
        loss = csa_loss(s)
        loss.backward()
    big = [shape for shape in mode.shapes if sum(d == channels for d in shape) >= 2]
    assert not big, f"C×C intermediates: {big}"


@pytest.mark.parametrize(
    "saliency",
    [
        torch.zeros(3, 4, 5, 2, 2),  # all-zero saliency
        torch.randn(1, 4, 5, 2, 2),  # one task
        torch.randn(3, 1, 5, 2, 2),  # batch of one
        torch.randn(1, 4, 5, 2, 2).expand(3, 4, 5, 2, 2).clone(),  # identical tasks
        torch.randn(3, 4, 5, 2, 2) * 1e-30,  # tiny
        torch.randn(3, 4, 5, 2, 2) * 1e30,  # huge
    ],
    ids=["zero", "one-task", "batch-1", "identical", "tiny", "huge"],
)
def test_degenerate_inputs_are_finite(saliency):
    s = saliency.clone().requires_grad_(True)
    for loss in (tsr_loss(s), csa_loss(s), csa_loss(s, include_positive=True)):
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(grad).all()


def test_documented_degenerate_values():
    assert tsr_loss(torch.zeros(3, 2, 4, 2, 2)).item() == pytest.approx(math.log(3))
    assert tsr_loss(torch.randn(1, 2, 4, 2, 2)).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(2, 1, 3, 2, 2)
    assert csa_loss(s, include_positive=True).item() == pytest.approx(0.0, abs=1e-6)


# ---- the full objective's gradients -----------------------------------------------------------


def _reference_grads(model, x, weights, regularizer, transform):
    """End-to-end create_graph autograd of Σ w_t L_t + λ_tsr L_tsr + λ_csa L_csa, with saliencies
    from a python loop and the naive regularisers."""
    out, losses = tiny_losses(model, x)
    stacked = torch.stack(list(losses.values()))
    terms = torch.log(stacked) if transform == "log" else stacked
    z = out.representation
    s = torch.stack([torch.autograd.grad(terms[t], z, create_graph=True)[0] for t in range(len(terms))])
    objective = (weights * terms).sum()
    if regularizer.use_tsr:
        objective = objective + regularizer.lambda_tsr * naive_tsr(s)
    if regularizer.use_csa:
        objective = objective + regularizer.lambda_csa * naive_csa(s, regularizer.tau, regularizer.include_positive)
    params = list(model.parameters())
    return torch.autograd.grad(objective, params)


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize(
    "kwargs, transform",
    [
        ({}, "log"),
        ({"lambda_tsr": 1.3, "lambda_csa": 0.7, "tau": 0.5}, "none"),
        ({"tsr": False}, "log"),
        ({"csa": False}, "log"),
        ({"include_positive": True}, "none"),
    ],
)
def test_backward_equals_end_to_end_autograd(kwargs, transform, vectorize, batch):
    model = tiny_model(batchnorm=False)
    regularizer = RepMTL(**{"gradient_flow": "exact", **kwargs})  # the objective's own gradient
    expected = _reference_grads(model, batch, torch.ones(2, dtype=torch.float64), regularizer, transform)
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    record = repmtl.backward(losses, representation=out.representation, method="ew",
                             regularizers=[regularizer], loss_transform=transform, eps=0.0, vectorize=vectorize)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e)
    assert set(record.penalties) == {n for n, on in (("tsr", regularizer.use_tsr), ("csa", regularizer.use_csa)) if on}


def test_backward_with_a_gramian_method_and_unweighted_heads(batch):
    """The split path (PCGrad: heads unweighted, encoder gets Jᵀα) adds the penalties' gradients."""
    model = tiny_model(batchnorm=False)
    regularizer = RepMTL(gradient_flow="exact")
    torch.manual_seed(5)
    out, losses = tiny_losses(model, batch)
    method = repmtl.methods.create("pcgrad", tasks=model.task_names)
    repmtl.backward(losses, representation=out.representation, method=method, level="representation",
                    regularizers=[regularizer])
    got = [p.grad.clone() for p in model.parameters()]

    # reference: penalties by end-to-end autograd + heads' plain task gradients + encoder Σ α_t S_t
    model.zero_grad()
    out, losses = tiny_losses(model, batch)
    stacked = torch.stack(list(losses.values()))
    z = out.representation
    s = torch.stack([torch.autograd.grad(stacked[t], z, create_graph=True)[0] for t in range(2)])
    torch.manual_seed(5)
    alpha = method.weights(s.detach().flatten(1) @ s.detach().flatten(1).T, stacked.detach()).shared
    penalty = regularizer.lambda_tsr * naive_tsr(s) + regularizer.lambda_csa * naive_csa(s)
    heads = list(model.task_parameters())
    encoder = list(model.shared_parameters())
    g_pen = torch.autograd.grad(penalty, heads + encoder, retain_graph=True)
    g_heads = torch.autograd.grad(stacked.sum(), heads, retain_graph=True)
    g_enc = torch.autograd.grad(z, encoder, grad_outputs=torch.einsum("t,t...->...", alpha, s.detach()))
    expected_heads = [a + b for a, b in zip(g_heads, g_pen[: len(heads)])]
    expected_encoder = [a + b for a, b in zip(g_enc, g_pen[len(heads):])]
    got_heads = [g for g, p in zip(got, model.parameters()) if any(p is h for h in heads)]
    got_encoder = [g for g, p in zip(got, model.parameters()) if any(p is e for e in encoder)]
    for a, b in zip(got_heads, expected_heads, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(got_encoder, expected_encoder, strict=True):
        torch.testing.assert_close(a, b)


def test_encoder_is_backpropagated_once(model, batch):
    calls = []
    first = model.encoder[0].weight
    first.register_post_accumulate_grad_hook(lambda p: calls.append(1))
    out, losses = tiny_losses(model, batch)
    repmtl.backward(losses, representation=out.representation, method="ew", regularizers=[RepMTL()])
    assert len(calls) == 1
    assert torch.isfinite(first.grad).all()


def test_multi_input_pairs_samples_and_pools_space(batch):
    torch.manual_seed(0)
    s = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64)
    penalties = RepMTL()(s, torch.ones(2), multi_input=True)
    pooled = s.mean(dim=(3, 4))
    torch.testing.assert_close(penalties[0].value, tsr_loss(pooled))
    torch.testing.assert_close(penalties[1].value, csa_loss(pooled))

    model = tiny_model(batchnorm=False)
    out = model({"t0": batch, "t1": batch.flip(0)})
    losses = {t: p.pow(2).mean() for t, p in out.predictions.items()}
    record = repmtl.backward(losses, representation=out.representation, regularizers=[RepMTL()])
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert set(record.penalties) == {"tsr", "csa"}


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="tau"):
        RepMTL(tau=0)
    with pytest.raises(ValueError, match="lambda_tsr expects a finite number ≥ 0"):
        RepMTL(lambda_tsr=-1)
    with pytest.raises(ValueError, match="T×B×C"):
        tsr_loss(torch.zeros(3, 4))
    with pytest.raises(KeyError, match="available: .*repmtl"):
        repmtl.regularizers.create("rep")


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 3, 4, 2, 3)])
def test_csa_backward_outside_autocast_and_under_torch_func(shape):
    """CSA's one-product Gram backward: a forward under autocast with the backward outside it,
    and ``torch.func.grad`` / ``vmap``, work as with plain autograd (regression: the custom
    Function raised for both)."""
    torch.manual_seed(0)
    saliency = torch.randn(*shape, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = csa_loss(saliency)
    value.float().backward()
    assert saliency.grad is not None and saliency.grad.dtype == torch.float32 and torch.isfinite(saliency.grad).all()
    grad = torch.func.grad(csa_loss)(saliency.detach())
    reference = torch.autograd.grad(csa_loss(saliency), saliency)[0]
    torch.testing.assert_close(grad, reference)
    batched = torch.func.vmap(csa_loss)(torch.stack([saliency.detach(), 2 * saliency.detach()]))
    torch.testing.assert_close(batched[0], csa_loss(saliency.detach()))
