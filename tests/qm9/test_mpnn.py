"""The MPNN encoder: complete graphs from padded molecules, invariances, the missing-extra
error, and one ``repmtl.backward`` step of every method at every level it supports with the
pooled ``Z`` as representation."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from repmtl import backward, methods, regularizers
from repmtl.model import MultiTaskModel
from repmtl.nets import mpnn

pytest.importorskip("torch_geometric")


def _padded(molecules: list[list[int]], width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    atoms = torch.zeros(len(molecules), width, dtype=torch.int64)
    positions = torch.zeros(len(molecules), width, 3)
    for b, numbers in enumerate(molecules):
        atoms[b, : len(numbers)] = torch.tensor(numbers)
        positions[b, : len(numbers)] = torch.randn(len(numbers), 3, generator=generator)
    return atoms, positions


def test_complete_graphs_counts_edges_and_distances():
    atoms, positions = _padded([[6, 1, 1, 1, 1], [8, 1, 1], [9]], width=6)
    graph = mpnn.complete_graphs(atoms, positions)
    assert graph.x.shape == (9, mpnn.NODE_FEATURES) and graph.batch.tolist() == [0] * 5 + [1] * 3 + [2]
    assert graph.edge_index.shape == (2, 5 * 4 + 3 * 2 + 0)
    source, target = graph.edge_index
    assert (source != target).all() and (graph.batch[source] == graph.batch[target]).all()
    pairs = set(zip(source.tolist(), target.tolist(), strict=True))
    assert len(pairs) == 26 and (6, 7) in pairs and (7, 6) in pairs  # both directions, once each
    k = list(zip(source.tolist(), target.tolist(), strict=True)).index((5, 7))  # O -> second H of water
    assert graph.edge_attr[k, 0] == pytest.approx(torch.dist(positions[1, 0], positions[1, 2]).item(), rel=1e-6)
    assert graph.x[0].tolist() == [0, 1, 0, 0, 0, 6] and graph.x[8].tolist() == [0, 0, 0, 0, 1, 9]


def test_padding_holes_are_ignored():
    atoms, positions = _padded([[6, 1, 1]], width=5)
    holed_atoms = torch.tensor([[6, 0, 1, 0, 1]])
    holed_positions = torch.zeros(1, 5, 3)
    holed_positions[0, [0, 2, 4]] = positions[0, :3]
    a, b = mpnn.complete_graphs(atoms, positions), mpnn.complete_graphs(holed_atoms, holed_positions)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_attr, b.edge_attr)


@pytest.mark.parametrize("message", mpnn.MPNNEncoder.MESSAGES)
def test_encoder_is_invariant_to_atom_order_and_to_batch_mates(message):
    torch.manual_seed(0)
    encoder = mpnn.MPNNEncoder(hidden=16, message=message).eval()
    atoms, positions = _padded([[6, 1, 1, 1, 1], [7, 6, 1, 8]], width=6)
    z = encoder((atoms, positions))
    assert z.shape == (2, 16)
    perm = torch.tensor([3, 1, 4, 0, 2, 5])
    z_perm = encoder((atoms[:, perm], positions[:, perm]))
    assert torch.allclose(z, z_perm, atol=1e-5)
    alone = encoder((atoms[1:], positions[1:]))
    assert torch.allclose(z[1:], alone, atol=1e-5)
    moved = positions.clone()
    moved[1, 0] += 0.5  # geometry matters (the distances are the edge features)
    assert not torch.allclose(encoder((atoms, moved))[1], z[1], atol=1e-4)


def test_factored_messages_equal_nnconv_per_edge_messages():
    """The default message computation is PyG's NNConv reordered: same outputs, same gradients."""
    torch.manual_seed(0)
    factored = mpnn.MPNNEncoder(hidden=12, edge_hidden=10).double()
    per_edge = mpnn.MPNNEncoder(hidden=12, edge_hidden=10, message="per_edge").double()
    per_edge.load_state_dict(factored.state_dict())
    with torch.no_grad():  # non-zero biases everywhere, so the bias terms are exercised
        for p in factored.parameters():
            p.add_(0.1 * torch.randn_like(p))
        per_edge.load_state_dict(factored.state_dict())
    atoms, positions = _padded([[6, 1, 1, 1, 1], [8, 1, 1], [9], [7, 6, 6, 1, 1, 8]], width=7)
    z_f, z_e = factored((atoms, positions.double())), per_edge((atoms, positions.double()))
    assert torch.allclose(z_f, z_e, atol=1e-10, rtol=1e-9)
    weights = torch.randn_like(z_f)
    (z_f * weights).sum().backward()
    (z_e * weights).sum().backward()
    for (name, a), b in zip(factored.named_parameters(), per_edge.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-10, rtol=1e-8), name


def test_unknown_message_mode():
    with pytest.raises(ValueError, match="message must be one of"):
        mpnn.MPNNEncoder(message="dense")


def test_missing_torch_geometric_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    monkeypatch.setitem(sys.modules, "torch_geometric.nn", None)
    with pytest.raises(ImportError, match=r"pip install \"repmtl\[qm9\]\""):
        mpnn.MPNNEncoder()


TASKS = ("mu", "alpha", "homo")


def _model() -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = mpnn.MPNNEncoder(hidden=8, edge_hidden=8)
    return MultiTaskModel(encoder, {t: nn.Linear(8, 1) for t in TASKS})


ARGS = {"fixed": {"weights": [1.0, 2.0, 0.5]}}
CASES = [
    (name, level)
    for name, cls in methods.available().items()
    for level in (("parameters", "representation") if cls.consumes == "losses" else cls.levels)
]


@pytest.mark.parametrize(("name", "level"), CASES, ids=[f"{n}-{lv[:3]}" for n, lv in CASES])
def test_one_step_of_every_method_with_the_pooled_representation(name, level):
    model = _model()
    atoms, positions = _padded([[6, 1, 1, 1, 1], [8, 1, 1], [7, 6, 1], [6, 6, 1, 1]], width=5)
    targets = torch.randn(len(TASKS), 4, generator=torch.Generator().manual_seed(1))
    method = methods.create(name, tasks=TASKS, **ARGS.get(name, {}))
    out = model((atoms, positions))
    assert out.representation.shape == (4, 8)  # Z: the pooled readout vector
    losses = {t: nn.functional.mse_loss(out.predictions[t].squeeze(-1), targets[k]) for k, t in enumerate(TASKS)}
    record = backward(losses, representation=out.representation, shared_params=list(model.shared_parameters()),
                      method=method, level=level, loss_transform=method.loss_transform.transform, keep_saliency=True)
    assert record.saliency.shape == (len(TASKS), 4, 8)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    edge_net_grad = model.encoder.conv.nn[2].weight.grad
    assert edge_net_grad.abs().sum() > 0  # the update reached the edge network through Z


def test_rep_mtl_regularises_the_pooled_representation():
    """Rep-MTL (EW + TSR + CSA on log losses): its penalties are taken on the saliencies of ``Z``."""
    model = _model()
    atoms, positions = _padded([[6, 1, 1, 1, 1], [8, 1, 1], [7, 6, 1], [6, 6, 1, 1]], width=5)
    out = model((atoms, positions))
    losses = {t: out.predictions[t].pow(2).mean() + 0.1 for t in TASKS}
    record = backward(losses, representation=out.representation, method="ew", level="representation",
                      regularizers=[regularizers.create("repmtl")], loss_transform="log", keep_saliency=True)
    assert record.saliency.shape == (len(TASKS), 4, 8)
    assert set(record.penalties) and all(torch.isfinite(v) for v in record.penalties.values())
    assert model.encoder.conv.nn[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("build", [mpnn.complete_graphs, mpnn.padded_pairs])
def test_bad_input_shapes_are_refused(build):
    with pytest.raises(ValueError, match=r"expected atoms \(B, P\) and positions \(B, P, 3\)"):
        build(torch.ones(2, 4, dtype=torch.int64), torch.zeros(2, 4, 2))
