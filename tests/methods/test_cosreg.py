"""CosReg (Suteu & Guo 2019; Mao et al., IEEE Access 2024, Eq. 4): pairwise squared cosine of the
task saliencies."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import repmtl
from repmtl import grads as G
from repmtl.regularizers.cosreg import CosReg, pairwise_squared_cosine
from tests.conftest import tiny_losses, tiny_model


def naive(saliency, reduction="sum"):
    flat = saliency.reshape(saliency.shape[0], -1)
    values = []
    for i, j in itertools.combinations(range(flat.shape[0]), 2):
        if flat[i].norm() == 0 or flat[j].norm() == 0:
            values.append(torch.zeros((), dtype=flat.dtype))
        else:
            values.append((flat[i] @ flat[j] / (flat[i].norm() * flat[j].norm())) ** 2)
    total = torch.stack(values).sum()
    return total if reduction == "sum" else total / len(values)


def test_hand_case():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64).reshape(3, 1, 2)
    (penalty,) = CosReg(weight=0.5)(s, torch.ones(3))
    # cos² pairs: ½, 0, ½
    assert penalty.name == "cosreg" and penalty.weight == 0.5
    assert penalty.value.item() == pytest.approx(1.0)
    (mean,) = CosReg(reduction="mean")(s, torch.ones(3))
    assert mean.value.item() == pytest.approx(1 / 3)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from([1e-8, 1.0, 1e8]),
    st.sampled_from(["plain", "zero_row", "duplicate"]),
    st.sampled_from(["sum", "mean"]),
)
def test_matches_naive_pairwise_cosines(tasks, batch, width, seed, scale, kind, reduction):
    s = torch.randn(tasks, batch, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    if kind == "zero_row":
        s[0] = 0.0
    elif kind == "duplicate" and tasks > 1:
        s[1] = s[0]
    (penalty,) = CosReg(reduction=reduction)(s, torch.ones(tasks))
    assert torch.isfinite(penalty.value)
    if tasks == 1:
        assert penalty.value.item() == 0.0
        return
    torch.testing.assert_close(penalty.value, naive(s, reduction))
    # invariant to rescaling any task's saliency and to permuting the tasks
    rescaled = s * torch.tensor([3.0] + [0.5] * (tasks - 1), dtype=torch.float64).view(-1, 1, 1)
    torch.testing.assert_close(CosReg(reduction=reduction)(rescaled, torch.ones(tasks))[0].value, penalty.value)
    torch.testing.assert_close(CosReg(reduction=reduction)(s.flip(0), torch.ones(tasks))[0].value, penalty.value)


def test_per_sample_variant_averages_each_sample():
    s = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (penalty,) = CosReg(per_sample=True)(s, torch.ones(3))
    expected = torch.stack([naive(s[:, b : b + 1]) for b in range(4)]).mean()
    torch.testing.assert_close(penalty.value, expected)


def test_gradient_is_correct_and_finite_at_zero():
    s = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: pairwise_squared_cosine(x.unsqueeze(0))[0], (s,))
    z = torch.zeros(3, 6, dtype=torch.float64)
    z[1] = 1.0
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(pairwise_squared_cosine(z.unsqueeze(0))[0], z)
    assert torch.isfinite(grad).all()


def test_single_task_penalty_is_a_differentiable_zero():
    s = torch.randn(1, 2, 3, requires_grad=True)
    (penalty,) = CosReg()(s, torch.ones(1))
    assert penalty.value.item() == 0.0 and penalty.value.requires_grad


def _end_to_end_reference(model, x, weight):
    """Σ_t L_t + λ L_cos differentiated end to end, with S = ∂L/∂Z taken with create_graph."""
    out, losses = tiny_losses(model, x)
    stacked = torch.stack(list(losses.values()))
    saliency = G.saliency(stacked, out.representation, create_graph=True, vectorize=False)
    objective = stacked.sum() + weight * naive(saliency)
    objective.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def test_end_to_end_gradient_through_heads_and_encoder():
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    expected = _end_to_end_reference(model, x, 0.7)
    out, losses = tiny_losses(model, x)
    stacked = torch.stack(list(losses.values()))
    saliency = G.saliency(stacked, out.representation, create_graph=True)
    (penalty,) = CosReg(weight=0.7)(saliency, stacked)
    (stacked.sum() + penalty.weight * penalty.value).backward()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    # the penalty does reach the encoder: without it the encoder gradient differs
    model.zero_grad()
    _, losses = tiny_losses(model, x)
    sum(losses.values()).backward()
    assert not torch.allclose(next(model.encoder.parameters()).grad, expected[0])


@pytest.mark.parametrize("method, level", [("ew", "parameters"), ("graddrop", "parameters"), ("graddrop", "representation")])
def test_with_repmtl_backward(method, level):
    """``repmtl.backward(..., regularizers=[CosReg()])`` equals the end-to-end reference, through
    the plain-backward path (EW) and the split path (GradDrop with leak 1 is the plain sum)."""
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    model = tiny_model()
    expected = _end_to_end_reference(model, x, 0.7)
    out, losses = tiny_losses(model, x)
    m = repmtl.methods.create(method, **({"leak": 1.0} if method == "graddrop" else {}))
    record = repmtl.backward(
        losses, representation=out.representation, method=m, level=level, regularizers=[CosReg(weight=0.7)]
    )
    assert "cosreg" in record.penalties
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
