"""Masked dense losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repmtl.metrics.losses import DepthL1Loss, NormalCosineLoss, SegmentationLoss


def test_cross_entropy_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)
    labels = torch.randint(-1, 4, (2, 3, 5))
    loss = SegmentationLoss()(logits, labels)
    keep = labels >= 0
    manual = -F.log_softmax(logits, 1).permute(0, 2, 3, 1)[keep].gather(1, labels[keep][:, None]).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    loss.backward()
    assert logits.grad.permute(0, 2, 3, 1)[~keep].abs().max() == 0


def test_cross_entropy_all_ignored_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = SegmentationLoss()(logits, torch.full((1, 2, 2), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_depth_l1_masks_invalid_pixels():
    gt = torch.tensor([[[[1.0, 0.0], [3.0, math.nan]]]])
    pred = torch.tensor([[[[2.0, 7.0], [1.0, 4.0]]]], requires_grad=True)
    loss = DepthL1Loss()(pred, gt)
    assert loss.item() == pytest.approx((1 + 2) / 2)
    loss.backward()
    assert pred.grad.flatten().tolist() == [0.5, 0.0, -0.5, 0.0]
    empty = DepthL1Loss()(pred, torch.zeros_like(gt))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="shape"):
        DepthL1Loss()(pred, gt[0])


def test_normal_cosine_loss():
    torch.manual_seed(0)
    gt = F.normalize(torch.randn(2, 3, 4, 4), dim=1)
    gt[:, :, 0, 0] = 0  # invalid
    pred = gt * 3.0
    pred[:, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # anything at invalid pixels
    assert NormalCosineLoss()(pred, gt).item() == pytest.approx(0.0, abs=1e-6)
    assert NormalCosineLoss()(-pred, gt).item() == pytest.approx(2.0, abs=1e-6)
    # a pixel at 90°: loss 1 for that pixel; mean over the 30 valid pixels
    bent = pred.clone()
    bent[0, :, 1, 1] = torch.linalg.cross(gt[0, :, 1, 1], torch.tensor([0.3, -0.2, 0.9]), dim=0)
    assert NormalCosineLoss()(bent, gt).item() == pytest.approx(1 / 30, abs=1e-6)
    empty = NormalCosineLoss()(pred, torch.zeros_like(gt))
    assert empty.item() == 0.0


def test_losses_do_not_synchronise():
    meta = torch.device("meta")
    SegmentationLoss()(torch.randn(2, 3, 4, 4, device=meta), torch.randint(-1, 3, (2, 4, 4), device=meta))
    DepthL1Loss()(torch.randn(2, 1, 4, 4, device=meta), torch.randn(2, 1, 4, 4, device=meta))
    NormalCosineLoss()(torch.randn(2, 3, 4, 4, device=meta), torch.randn(2, 3, 4, 4, device=meta))
