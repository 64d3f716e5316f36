"""The message-passing encoder of Gilmer et al. (2017) as the QM9 experiments of Nash-MTL
(Navon et al., ICML 2022, §6.2) and FAMO (Liu et al., NeurIPS 2023, §5.2) use it.

Gilmer et al., "Neural Message Passing for Quantum Chemistry", ICML 2017: messages
``m_v = mean_{w ∈ N(v)} A(e_vw) h_w`` with an *edge network* ``A`` that maps the edge features
to a ``d × d`` matrix (their eq. for "edge network" message functions), updates
``h_v ← GRU(m_v, h_v)`` repeated for 3 steps with tied weights, and a *set2set* readout
(Vinyals et al., 2016) of 3 processing steps. As in Nash-MTL / FAMO: hidden width 64, an edge
network ``Linear(e, 128) → ReLU → Linear(128, 64·64)``, PyG's ``NNConv`` with mean aggregation
(plus its root weight and bias), then ``Z = ReLU(Linear(128, 64)(set2set))``. ``Z`` (``B × 64``)
is the shared representation; the heads are linear.

Mini-batching: the data set yields molecules padded to a fixed number of atoms
(atomic number ``0`` marks padding), so PyTorch's default collate stacks them. The encoder
turns the padded batch into one disjoint union of complete graphs (:func:`complete_graphs`),
which is what PyG's ``Batch`` of ``Complete()``-transformed graphs holds, with the
interatomic distance (Å, not normalised, as ``Distance(norm=False)``) as edge feature.

Two exact ways to compute the messages, with the same parameters (``message=``):

- ``"per_edge"``: PyG's ``NNConv`` as such: the edge network builds one ``d × d`` matrix per
  edge, in every one of the 3 steps (``E · 128 · d²`` multiply-adds per step; on QM9 at batch
  120, ``E ≈ 38,000`` edges).
- ``"factored"`` (default): the last layer of the edge network is linear,
  ``Θ(e) = reshape(A u(e) + a)`` with ``u(e) = ReLU(W₁ e + b₁)``, so the message
  ``Σ_w Θ(e_vw)ᵀ h_w = Σ_w Σ_l u_l(e_vw) Q_l(h_w) + Σ_w reshape(a)ᵀ h_w`` with
  ``Q_l(h) = reshape(A_{·l})ᵀ h``, which costs ``N · 128 · d²`` per step (nodes, not edges)
  plus one batched product over each molecule's complete graph. Same sums in another order;
  a test checks both give the same outputs and gradients.

``torch_geometric`` is an optional extra: ``pip install "repmtl[qm9]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn
from torch.nn import functional as F

from repmtl.extras import missing_extra

#: the elements of QM9, by atomic number; node features are their one-hot plus the number
ELEMENT_NUMBERS = (1, 6, 7, 8, 9)
NODE_FEATURES = len(ELEMENT_NUMBERS) + 1
#: edge features: the interatomic distance only (no bond types; see ``repmtl.data.qm9``)
EDGE_FEATURES = 1


def _geometric_nn() -> ModuleType:
    try:
        import torch_geometric.nn as geometric_nn
    except ImportError as exc:
        raise missing_extra("the QM9 message-passing encoder", "torch_geometric", "qm9") from exc
    return geometric_nn


@dataclass(frozen=True)
class GraphBatch:
    """A disjoint union of graphs in PyG's layout.

    ``x``: ``(N, F)`` node features; ``edge_index``: ``(2, E)`` rows (source, target);
    ``edge_attr``: ``(E, 1)`` distances; ``batch``: ``(N,)`` graph of each node;
    ``num_graphs``: ``B``.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    num_graphs: int


@dataclass(frozen=True)
class PaddedPairs:
    """The padded view of the same batch: ``mask`` ``(B, P)``; ``slots`` ``(N,)``: the row of
    each node in the ``B · P`` padded layout; ``pairs`` ``(B, P, P)``: real atom pairs
    ``i ≠ j``; ``distance`` ``(B, P, P)`` in Å; ``counts`` ``(B,)`` atoms per molecule."""

    mask: torch.Tensor
    slots: torch.Tensor
    pairs: torch.Tensor
    distance: torch.Tensor
    counts: torch.Tensor


def _check_padded(atoms: torch.Tensor, positions: torch.Tensor) -> None:
    if atoms.dim() != 2 or positions.shape != (*atoms.shape, 3):
        raise ValueError(
            f"expected atoms (B, P) and positions (B, P, 3), got {tuple(atoms.shape)} and {tuple(positions.shape)}"
        )


def padded_pairs(atoms: torch.Tensor, positions: torch.Tensor) -> PaddedPairs:
    """Padded molecules (as :func:`complete_graphs` takes them) -> their :class:`PaddedPairs`."""
    _check_padded(atoms, positions)
    mask = atoms > 0
    width = atoms.shape[1]
    pairs = mask[:, :, None] & mask[:, None, :] & ~torch.eye(width, dtype=torch.bool, device=atoms.device)
    return PaddedPairs(
        mask=mask,
        slots=mask.flatten().nonzero().squeeze(1),
        pairs=pairs,
        distance=torch.cdist(positions, positions, compute_mode="donot_use_mm_for_euclid_dist"),
        counts=mask.sum(dim=1),
    )


def node_features(atomic_numbers: torch.Tensor) -> torch.Tensor:
    """``(N,)`` atomic numbers -> ``(N, 6)``: one-hot over H, C, N, O, F, then the number."""
    table = torch.tensor(ELEMENT_NUMBERS, device=atomic_numbers.device)
    one_hot = (atomic_numbers[:, None] == table[None, :]).float()
    return torch.cat([one_hot, atomic_numbers[:, None].float()], dim=1)


def complete_graphs(atoms: torch.Tensor, positions: torch.Tensor) -> GraphBatch:
    """Padded molecules -> one batch of complete graphs without self-loops.

    Args:
        atoms: ``(B, P)`` atomic numbers, ``0`` for padding (anywhere in the row).
        positions: ``(B, P, 3)`` coordinates in Å (padding rows ignored).
    """
    _check_padded(atoms, positions)
    mask = atoms > 0
    batch_size, width = atoms.shape
    flat = torch.full_like(atoms, -1)
    flat[mask] = torch.arange(int(mask.sum()), device=atoms.device)
    pairs = mask[:, :, None] & mask[:, None, :]
    pairs &= ~torch.eye(width, dtype=torch.bool, device=atoms.device)
    graph, target, source = pairs.nonzero(as_tuple=True)
    distance = (positions[graph, target] - positions[graph, source]).norm(dim=-1, keepdim=True)
    counts = mask.sum(dim=1)
    return GraphBatch(
        x=node_features(atoms[mask]),
        edge_index=torch.stack([flat[graph, source], flat[graph, target]]),
        edge_attr=distance.to(positions.dtype),
        batch=torch.repeat_interleave(torch.arange(batch_size, device=atoms.device), counts),
        num_graphs=batch_size,
    )


def factored_mean_conv(conv: nn.Module, h: torch.Tensor, padded: PaddedPairs, hidden_edges: torch.Tensor) -> torch.Tensor:
    """``NNConv(aggr="mean")`` on complete graphs without a matrix per edge (module docstring).

    Args:
        conv: the ``NNConv`` whose parameters are used; its ``nn`` must end in a ``Linear``.
        h: ``(N, d_in)`` node states.
        padded: the batch's :class:`PaddedPairs`.
        hidden_edges: ``(B, P, P, L)`` the edge network's hidden layer ``u(e)``, zero off ``pairs``.
    """
    last = conv.nn[-1]
    batch, width = padded.mask.shape
    d_in, d_out, rank = conv.in_channels_l, conv.out_channels, last.in_features
    # Q_l(h)_k = Σ_c h_c A[c·d_out + k, l], laid out [node][l][k]. Formed from the padded
    # states (zero rows give zero rows): scattering h first is a d_in-wide copy, where scattering
    # Q would write a (rank·d_out)-wide one (8192 columns at width 64: 0.2 s per call on a CPU).
    factors = last.weight.view(d_in, d_out, rank).transpose(1, 2).reshape(d_in, rank * d_out)
    h_rows = h.new_zeros(batch * width, d_in).index_copy(0, padded.slots, h)
    q = h_rows @ factors
    edge_term = torch.bmm(hidden_edges.reshape(batch, width, width * rank), q.view(batch, width * rank, d_out))
    h_padded = h_rows.view(batch, width, d_in)
    others = h_padded.sum(dim=1, keepdim=True) - h_padded  # Σ_{w ≠ v} h_w
    bias_term = others @ last.bias.view(d_in, d_out)
    neighbours = (padded.counts - 1).clamp(min=1).to(h.dtype)
    message = ((edge_term + bias_term) / neighbours[:, None, None]).reshape(batch * width, d_out)[padded.slots]
    out = message + conv.lin(h) if conv.root_weight else message
    return out + conv.bias if conv.bias is not None else out


class MPNNEncoder(nn.Module):
    """Edge-network MPNN with GRU updates and a set2set readout; ``forward((atoms, positions))``
    returns ``Z`` of shape ``(B, hidden)``.

    Args:
        hidden: node state and representation width (64 in Nash-MTL / FAMO).
        message_steps: message-passing iterations with tied weights (3).
        readout_steps: set2set processing steps (3).
        edge_hidden: hidden width of the edge network (128).
        message: ``"factored"`` or ``"per_edge"`` (PyG's ``NNConv`` forward); same parameters,
            same function (module docstring).
    """

    MESSAGES = ("factored", "per_edge")

    def __init__(self, hidden: int = 64, message_steps: int = 3, readout_steps: int = 3, edge_hidden: int = 128,
                 message: str = "factored") -> None:
        super().__init__()
        if min(hidden, message_steps, readout_steps, edge_hidden) < 1:
            raise ValueError("hidden, message_steps, readout_steps and edge_hidden must be positive")
        if message not in self.MESSAGES:
            raise ValueError(f"message must be one of {self.MESSAGES}, got {message!r}")
        self.message = message
        geometric_nn = _geometric_nn()
        self.hidden = hidden
        self.out_features = hidden
        self.message_steps = message_steps
        self.embed = nn.Linear(NODE_FEATURES, hidden)
        edge_network = nn.Sequential(
            nn.Linear(EDGE_FEATURES, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, hidden * hidden)
        )
        self.conv = geometric_nn.NNConv(hidden, hidden, edge_network, aggr="mean")
        self.gru = nn.GRU(hidden, hidden)
        self.readout = geometric_nn.aggr.Set2Set(hidden, processing_steps=readout_steps)
        self.project = nn.Linear(2 * hidden, hidden)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor]) -> torch.Tensor:
        atoms, positions = inputs
        if self.message == "per_edge":
            graph = complete_graphs(atoms, positions)
            x, batch = graph.x, graph.batch

            def convolve(h: torch.Tensor) -> torch.Tensor:
                return self.conv(h, graph.edge_index, graph.edge_attr)
        else:
            padded = padded_pairs(atoms, positions)
            mask = padded.mask
            x = node_features(atoms[mask])
            batch = torch.arange(atoms.shape[0], device=atoms.device)[:, None].expand_as(atoms)[mask]
            first = self.conv.nn[0]
            hidden_edges = F.relu(padded.distance.to(first.weight.dtype).unsqueeze(-1) * first.weight[:, 0] + first.bias)
            hidden_edges = hidden_edges * padded.pairs.unsqueeze(-1)  # computed once: the same in every step

            def convolve(h: torch.Tensor) -> torch.Tensor:
                return factored_mean_conv(self.conv, h, padded, hidden_edges)

        h = F.relu(self.embed(x.to(self.embed.weight.dtype)))
        state = h.unsqueeze(0)
        for _ in range(self.message_steps):
            h, state = self.gru(F.relu(convolve(h)).unsqueeze(0), state)
            h = h.squeeze(0)
        pooled = self.readout(h, batch, dim_size=atoms.shape[0])
        return F.relu(self.project(pooled))
