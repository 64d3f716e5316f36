"""The linear layers' Gramian identity (``repmtl.linear_gram``) against the Jacobian it replaces."""

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import repmtl
from repmtl import grads as G
from repmtl import linear_gram as LG
from repmtl.cli import app
from repmtl.methods.base import GramianWeighting, SegmentGramianAggregator
from tests import _tiny  # noqa: F401  (registers the tiny benchmarks)


class Tokens(nn.Module):
    """A linear layer over (batch, tokens, features): its node sees ``N = batch · tokens`` rows."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x.view(x.shape[0], 2, 8))).flatten(1)  # (B, 2·12)


class RightMultiply(nn.Module):
    """``x @ W`` with ``W`` stored ``(in, out)``, no bias: an ``mm`` node without ``Wᵀ``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 7) / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weight)


def encoder() -> nn.Module:
    return nn.Sequential(
        Tokens(),                               # addmm on a (B·2, 8) view of a 3-D input
        nn.Linear(24, 10), nn.LayerNorm(10),    # LayerNorm: on the direct path
        RightMultiply(),                        # mm, not transposed
        nn.Linear(7, 6, bias=False), nn.ReLU(),  # mm with Wᵀ
    )


def losses_of(model: nn.Module, x: torch.Tensor, num_tasks: int) -> list[torch.Tensor]:
    z = model(x)
    return [((z * (t + 1)).sin().sum(dim=1) ** 2).mean() for t in range(num_tasks)]


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = encoder()
    x = torch.randn(2, 16)  # few rows: the identity is cheaper for every layer
    return model, x


def test_finds_every_linear_layer_and_leaves_the_rest_direct(setup):
    model, x = setup
    terms = losses_of(model, x, 3)
    factors = LG.linear_factors(terms, list(model.parameters()))
    assert sorted(tuple(f.weight.shape) for f in factors) == sorted([(6, 7), (10, 7), (10, 24), (12, 8)])
    by_shape = {tuple(f.weight.shape): f for f in factors}
    assert by_shape[(12, 8)].rows == 4 and by_shape[(12, 8)].bias is not None  # B · tokens rows
    assert by_shape[(10, 7)].transposed is False and by_shape[(10, 7)].bias is None
    covered = {id(p) for f in factors for p in f.params}
    layer_norm = model[2]
    assert id(layer_norm.weight) not in covered and id(layer_norm.bias) not in covered


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("keep_graph", [True, False])
def test_gramian_update_and_matrix_equal_the_direct_jacobian(setup, vectorize, keep_graph):
    model, x = setup
    params = list(model.parameters())
    direct = G.task_jacobian(losses_of(model, x, 3), params, vectorize=False)
    factored = LG.factored_jacobian(losses_of(model, x, 3), params, vectorize=vectorize, keep_graph=keep_graph)
    assert factored is not None and len(factored.factors) == 4
    torch.testing.assert_close(factored.gramian(), direct.gramian(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(factored.matrix(), direct.matrix(), rtol=1e-5, atol=1e-6)
    weights = torch.tensor([0.3, -1.2, 2.0])
    for got, want in zip(factored.combine(weights), direct.combine(weights), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_task_that_reaches_no_factored_layer_has_zero_rows():
    torch.manual_seed(1)
    shared = nn.Linear(16, 16)
    x = torch.randn(3, 16)

    def terms():  # task 2 reaches the bias alone, which then has two uses and stays direct
        return [shared(x).pow(2).sum(), shared.bias.sum()]

    factored = LG.factored_jacobian(terms(), list(shared.parameters()))
    direct = G.task_jacobian(terms(), list(shared.parameters()), vectorize=False)
    assert factored is not None and [f.bias for f in factored.factors] == [None]
    torch.testing.assert_close(factored.gramian(), direct.gramian())
    assert factored.matrix()[1, : shared.weight.numel()].abs().max() == 0


def test_tied_weights_stay_on_the_direct_path():
    torch.manual_seed(2)
    layer = nn.Linear(4, 4)
    x = torch.randn(3, 4)
    z = layer(torch.relu(layer(x)))  # the same W twice: its gradient is not one D_tᵀ X
    terms = [z.sum(), z.pow(2).sum()]
    assert LG.linear_factors(terms, list(layer.parameters())) == []
    assert LG.factored_jacobian(terms, list(layer.parameters())) is None


def test_the_cost_rule_keeps_many_rows_on_the_direct_path():
    torch.manual_seed(3)
    narrow = nn.Linear(4, 4)
    z = narrow(torch.randn(512, 4))  # N = 512 rows through a 4 × 4 layer: N² work is far more
    terms = [z.sum(), z.pow(2).sum()]
    assert LG.linear_factors(terms, list(narrow.parameters())) == []
    wide = nn.Linear(64, 64)
    z = wide(torch.randn(8, 64))
    assert len(LG.linear_factors([z.sum(), z.pow(2).sum()], list(wide.parameters()))) == 1


def test_degenerate_zero_losses_give_a_finite_zero_gramian(setup):
    model, x = setup
    z = model(x)
    terms = [z.sum() * 0, z.sum() * 0]
    factored = LG.factored_jacobian(terms, list(model.parameters()))
    assert factored is not None
    gram = factored.gramian()
    assert torch.isfinite(gram).all() and gram.abs().max() == 0


GRAMIAN_LEVELS = [
    (name, level) for name in repmtl.methods.available() for level in ("parameters", "last_layer")
    if issubclass(repmtl.methods.lookup(name), GramianWeighting) and level in repmtl.methods.lookup(name).levels
]


@pytest.mark.parametrize(("name", "level", "vectorize"), [
    *((name, level, None) for name, level in GRAMIAN_LEVELS), ("mgda", "parameters", True), ("upgrad", "parameters", True),
])
def test_every_gramian_method_steps_the_same_with_and_without_the_identity(name, level, vectorize):
    def step(factor_linear: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(4)
        model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 2) for t in ("a", "b", "c")})
        method = repmtl.methods.create(name, tasks=["a", "b", "c"])
        out = model(torch.randn(2, 16))
        losses = {t: (out.predictions[t] - i).pow(2).mean() for i, t in enumerate(("a", "b", "c"))}
        record = repmtl.backward(
            losses, representation=out.representation, method=method, level=level, factor_linear=factor_linear,
            vectorize=vectorize,
        )
        return [p.grad.clone() for p in model.parameters()], record.weights

    with_identity, weights = step(True)
    without, reference = step(False)
    torch.testing.assert_close(weights, reference, rtol=1e-4, atol=1e-5)
    for got, want in zip(with_identity, without, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "used"), [("upgrad", "gramian"), ("metabalance", "parameter_gramians")])
def test_backward_uses_the_identity_by_default(monkeypatch, name, used):
    """Gramian weightings and segment-Gramian aggregators take the factored Jacobian unasked."""
    calls = []
    original = getattr(LG.FactoredJacobian, used)
    monkeypatch.setattr(LG.FactoredJacobian, used, lambda self: calls.append(1) or original(self))
    model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 1) for t in ("a", "b")})
    out = model(torch.randn(2, 16))
    losses = {t: out.predictions[t].pow(2).mean() for t in ("a", "b")}
    method = repmtl.methods.create(name, tasks=["a", "b"])
    repmtl.backward(losses, representation=out.representation, method=method, level="parameters")
    assert calls == [1]


def test_an_activation_checkpointed_encoder_is_not_recomputed_for_the_identity():
    """Under ``torch.utils.checkpoint`` reading a saved input re-runs the region: such layers keep
    the direct path (regression: each factored layer re-ran it once more), with the same update."""

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU())
            self.runs = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.utils.checkpoint.checkpoint(self._region, x, use_reentrant=False)

        def _region(self, x: torch.Tensor) -> torch.Tensor:
            self.runs += 1
            return self.inner(x)

    def step(factor_linear: bool) -> tuple[list[torch.Tensor], int]:
        torch.manual_seed(5)
        model = repmtl.MultiTaskModel(Checkpointed(), {"a": nn.Linear(24, 1), "b": nn.Linear(24, 1)})
        out = model(torch.randn(2, 16))
        losses = {t: (out.predictions[t] * (i + 1)).pow(2).mean() for i, t in enumerate(("a", "b"))}
        repmtl.backward(losses, representation=out.representation, method="mgda", level="parameters",
                        factor_linear=factor_linear)
        return [p.grad.clone() for p in model.parameters()], model.encoder.runs

    torch.manual_seed(5)
    region = Checkpointed()
    z = region(torch.randn(2, 16))
    assert LG.linear_factors([z.sum(), z.pow(2).sum()], list(region.parameters())) == []
    assert region.runs == 1  # finding no factor read no saved input
    (with_identity, runs), (without, reference_runs) = step(True), step(False)
    assert runs == reference_runs
    for got, want in zip(with_identity, without, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_under_autocast_the_step_matches_the_full_jacobian():
    """autocast casts each weight before its product (a copy node between ``Wᵀ`` and the
    parameter): such layers keep the direct path, and the step is the same either way."""

    def step(factor_linear: bool) -> list[torch.Tensor]:
        torch.manual_seed(6)
        model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 1) for t in ("a", "b")})
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.randn(2, 16))
            losses = {t: (out.predictions[t].float() * (i + 1)).pow(2).mean() for i, t in enumerate(("a", "b"))}
        repmtl.backward(losses, representation=out.representation, method="upgrad", level="parameters",
                        factor_linear=factor_linear)
        return [p.grad.clone() for p in model.parameters()]

    for got, want in zip(step(True), step(False), strict=True):
        torch.testing.assert_close(got, want)


def test_a_half_precision_model_gets_a_float32_gramian_share():
    torch.manual_seed(7)
    layer = nn.Linear(16, 16).to(torch.bfloat16)
    z = layer(torch.randn(2, 16, dtype=torch.bfloat16))
    factored = LG.factored_jacobian([z.float().sum(), z.float().pow(2).sum()], list(layer.parameters()))
    assert factored is not None and factored.gramian().dtype == torch.float32


def test_a_weight_with_a_gradient_hook_keeps_the_direct_path():
    """``register_hook`` on a weight changes each task's gradient in the direct path; the
    identity would bypass it (regression), so such a layer is not factored."""

    def step(factor_linear: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(8)
        model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 1) for t in ("a", "b")})
        hooked = model.encoder[1].weight
        hooked.register_hook(lambda g: g * (torch.arange(g.shape[0])[:, None] < 4))  # keep rows 0–3
        out = model(torch.randn(2, 16))
        losses = {t: (out.predictions[t] * (i + 1)).pow(2).mean() for i, t in enumerate(("a", "b"))}
        record = repmtl.backward(losses, representation=out.representation, method="mgda", level="parameters",
                                 factor_linear=factor_linear)
        assert hooked.grad[4:].abs().max() == 0
        return [p.grad.clone() for p in model.parameters()], record.gramian

    (with_identity, gram), (without, reference) = step(True), step(False)
    torch.testing.assert_close(gram, reference, rtol=1e-5, atol=1e-7)
    for got, want in zip(with_identity, without, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "hparams"), [
    ("gradvac", {}), ("gradvac", {"granularity": "model"}), ("metabalance", {}), ("metabalance", {"strategy": "reduce"}),
])
def test_segment_gramian_aggregators_step_the_same_with_and_without_the_identity(name, hparams):
    """GradVac and MetaBalance need only per-tensor Gramians: on the factored Jacobian they get
    them without ``J`` and the same update, over several steps of their state."""

    def run(factor_linear: bool) -> list[list[torch.Tensor]]:
        torch.manual_seed(9)
        model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 1) for t in ("a", "b", "c")})
        method = repmtl.methods.create(name, tasks=["a", "b", "c"], **hparams)
        seen = []
        for step in range(3):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(100 + step)  # GradVac's visiting order
            out = model(torch.randn(2, 16))
            losses = {t: (out.predictions[t] - i).pow(2).mean() for i, t in enumerate(("a", "b", "c"))}
            repmtl.backward(losses, representation=out.representation, method=method, level="parameters",
                            factor_linear=factor_linear)
            seen.append([p.grad.clone() for p in model.parameters()])
        return seen

    for with_identity, without in zip(run(True), run(False), strict=True):
        for got, want in zip(with_identity, without, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["metabalance", "gradvac"])
@pytest.mark.parametrize("factor_linear", [True, False])
def test_a_zero_element_shared_parameter_is_a_zero_gramian(name, factor_linear):
    """A shared parameter with no entries has ``K_p = 0`` (regression: the empty Gramian raised)."""

    class WithEmpty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(16, 6)
            self.empty = nn.Parameter(torch.zeros(0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) + self.empty.sum()

    torch.manual_seed(0)
    model = repmtl.MultiTaskModel(WithEmpty(), {t: nn.Linear(6, 1) for t in ("a", "b")})
    out = model(torch.randn(2, 16))
    losses = {t: (out.predictions[t] - i).pow(2).mean() for i, t in enumerate(("a", "b"))}
    method = repmtl.methods.create(name, tasks=["a", "b"])
    repmtl.backward(losses, representation=out.representation, method=method, level="parameters",
                    factor_linear=factor_linear)
    assert model.encoder.empty.grad.shape == (0,) and torch.isfinite(model.encoder.linear.weight.grad).all()
    assert torch.equal(G.gramian(torch.zeros(3, 0)), torch.zeros(3, 3))


def test_metabalance_keeps_float32_state_for_a_bfloat16_model_on_either_path():
    def state(factor_linear: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = repmtl.MultiTaskModel(encoder(), {t: nn.Linear(6, 1) for t in ("a", "b")}).to(torch.bfloat16)
        out = model(torch.randn(2, 16, dtype=torch.bfloat16))
        losses = {t: out.predictions[t].float().pow(2).mean() for t in ("a", "b")}
        method = repmtl.methods.create("metabalance", tasks=["a", "b"])
        repmtl.backward(losses, representation=out.representation, method=method, level="parameters",
                        factor_linear=factor_linear)
        return method.state.norm_average

    assert state(True).dtype == state(False).dtype == torch.float32


IDENTITY_METHODS = [
    name for name, cls in repmtl.methods.available().items()
    if issubclass(cls, GramianWeighting | SegmentGramianAggregator) and "parameters" in cls.levels
]


@pytest.mark.parametrize("name", IDENTITY_METHODS)
def test_every_method_that_takes_the_identity_trains_through_the_cli(tmp_path, monkeypatch, name):
    """The CLI's trainer, with the identity forced on for the tiny benchmark's small layers (its
    own cost rule keeps them direct): each method trains and its factored Jacobian is used."""
    monkeypatch.setattr(LG, "_worth_it", lambda *shape: True)
    used = []
    original = LG.FactoredJacobian.accumulate
    monkeypatch.setattr(LG.FactoredJacobian, "accumulate", lambda self, w: used.append(1) or original(self, w))
    args = ["train", "--benchmark", "tiny", "--method", name, "--level", "parameters", "--out", str(tmp_path),
            "--epochs", "1", "--max-steps", "2", "--no-progress", "--no-baseline"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(used) == 2
