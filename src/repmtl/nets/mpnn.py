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

``torch_geometric`` is an optional extra: ``pip install "repmtl[qm9]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn
from torch.nn import functional as F

#: the elements of QM9, by atomic number; node features are their one-hot plus the number
ELEMENT_NUMBERS = (1, 6, 7, 8, 9)
NODE_FEATURES = len(ELEMENT_NUMBERS) + 1
#: edge features: the interatomic distance only (no bond types; see ``repmtl.data.qm9``)
EDGE_FEATURES = 1


def _geometric_nn() -> ModuleType:
    try:
        import torch_geometric.nn as geometric_nn
    except ImportError as exc:
        raise ImportError(
            "the QM9 message-passing encoder needs torch_geometric; install the extra with "
            "`pip install \"repmtl[qm9]\"` (or `pip install torch-geometric`)"
        ) from exc
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
    if atoms.dim() != 2 or positions.shape != (*atoms.shape, 3):
        raise ValueError(
            f"expected atoms (B, P) and positions (B, P, 3), got {tuple(atoms.shape)} and {tuple(positions.shape)}"
        )
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


class MPNNEncoder(nn.Module):
    """Edge-network MPNN with GRU updates and a set2set readout; ``forward((atoms, positions))``
    returns ``Z`` of shape ``(B, hidden)``.

    Args:
        hidden: node state and representation width (64 in Nash-MTL / FAMO).
        message_steps: message-passing iterations with tied weights (3).
        readout_steps: set2set processing steps (3).
        edge_hidden: hidden width of the edge network (128).
    """

    def __init__(self, hidden: int = 64, message_steps: int = 3, readout_steps: int = 3, edge_hidden: int = 128) -> None:
        super().__init__()
        if min(hidden, message_steps, readout_steps, edge_hidden) < 1:
            raise ValueError("hidden, message_steps, readout_steps and edge_hidden must be positive")
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
        graph = complete_graphs(atoms, positions)
        h = F.relu(self.embed(graph.x))
        state = h.unsqueeze(0)
        for _ in range(self.message_steps):
            message = F.relu(self.conv(h, graph.edge_index, graph.edge_attr))
            h, state = self.gru(message.unsqueeze(0), state)
            h = h.squeeze(0)
        pooled = self.readout(h, graph.batch, dim_size=graph.num_graphs)
        return F.relu(self.project(pooled))
