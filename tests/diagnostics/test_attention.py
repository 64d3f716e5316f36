"""Attention-augmented heads H(A(Z) ⊙ Z) and the top-down FD they feed."""

import math

import pytest
import torch
from torch import nn

from repmtl.diagnostics import feature_disentanglement
from repmtl.model import MultiTaskModel
from repmtl.nets.attention import (
    AttentionHead,
    AttentionModule,
    attention_maps,
    with_attention,
)


def test_module_structure_and_shapes():
    a = AttentionModule(6)
    assert a.conv.kernel_size == (3, 3) and a.conv.groups == 1
    assert a.depthwise.kernel_size == (3, 3) and a.depthwise.groups == 6  # depthwise ...
    assert a.pointwise.kernel_size == (1, 1)  # ... separable
    z = torch.randn(2, 6, 5, 7)
    out = a(z)
    assert out.shape == z.shape
    assert (out > 0).all() and (out < 1).all()  # sigmoid gate
    manual = torch.sigmoid(a.pointwise(a.depthwise(torch.relu(a.conv(z)))))
    torch.testing.assert_close(out, manual)
    raw = AttentionModule(6, gate="none")
    assert (raw(z) < 0).any()
    assert a(torch.randn(4, 6)).shape == (4, 6)  # vector features as 1×1 maps
    with pytest.raises(ValueError, match="channels"):
        a(torch.randn(2, 5, 3, 3))


def test_head_gates_the_representation_and_keeps_the_map():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    head = AttentionHead(inner, 4)
    assert head.last_attention is None
    z = torch.randn(5, 4, 3, 3, requires_grad=True)
    y = head(z)
    a = head.attention(z)
    torch.testing.assert_close(y, inner(a * z))
    torch.testing.assert_close(head.last_attention, a.detach())
    assert not head.last_attention.requires_grad
    y.sum().backward()
    assert head.attention.conv.weight.grad is not None and z.grad is not None


def test_model_option_and_top_down_fd():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    heads = {t: nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 2)) for t in ("a", "b", "c")}
    model = with_attention(MultiTaskModel(encoder, heads), channels=4)
    assert all(isinstance(h, AttentionHead) for h in model.heads.values())
    attn_ids = {id(p) for p in model.heads["b"].attention.parameters()}
    assert attn_ids <= {id(p) for p in model.task_parameters("b")}  # task-specific parameters
    assert not attn_ids & {id(p) for p in model.shared_parameters()}
    with pytest.raises(RuntimeError, match="forward"):
        attention_maps(model)
    x = torch.randn(3, 1, 6, 6)
    out = model(x)
    maps = attention_maps(model)
    assert list(maps) == ["a", "b", "c"]
    for t, m in maps.items():
        assert m.shape == out.representation.shape
        torch.testing.assert_close(m, model.heads[t].attention(out.representation).detach())
    fd = feature_disentanglement(maps)
    torch.testing.assert_close(fd, feature_disentanglement(torch.stack([maps[t] for t in "abc"])))
    assert 0.0 < fd.item() <= math.log(3)
    # a head whose attention is switched off (A = 0 everywhere) drops out of every position
    with torch.no_grad():
        for p in model.heads["c"].attention.pointwise.parameters():
            p.fill_(0.0)
        model.heads["c"].attention.pointwise.bias.fill_(-1e4)
    model(x)
    assert feature_disentanglement(attention_maps(model)).item() <= math.log(2) + 1e-6
    with pytest.raises(ValueError, match="already"):
        with_attention(model, channels=4)
