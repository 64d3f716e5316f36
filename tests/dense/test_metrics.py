"""Dense metrics against hand-computed small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repmtl.metrics.depth import DepthMetric
from repmtl.metrics.normals import NormalMetric, angle_degrees
from repmtl.metrics.segmentation import SegmentationMetric

# ----------------------------------------------------------------------------- segmentation
# labelled pixels (label, pred): (0,0) (0,1) (1,1) (1,1) (1,0) (2,2) (2,0); one ignored pixel
# predicted as 2. Confusion rows: [1 1 0] [1 2 0] [1 0 1] -> TP 1,2,1; pixel acc 4/7.
# IoU: 1/(2+3-1)=1/4, 2/(3+3-2)=1/2, 1/(2+1-1)=1/2 -> mIoU 5/12. Counting the ignored pixel
# would make class 2's IoU 1/3.
LABEL = torch.tensor([[[0, 0, 1, -1], [1, 1, 2, 2]]])
PRED = torch.tensor([[[0, 1, 1, 2], [1, 0, 2, 0]]])
MIOU = 100 * 5 / 12
PIX_ACC = 100 * 4 / 7


def one_hot_logits(pred: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, k).permute(0, 3, 1, 2).float() * 3 + 0.1 * torch.randn(*pred.shape[:1], k, *pred.shape[1:])


def test_segmentation_hand_computed_with_ignored_pixel():
    metric = SegmentationMetric(3)
    metric.update(PRED, LABEL)
    out = metric.compute()
    assert out["miou"] == pytest.approx(MIOU)
    assert out["pix_acc"] == pytest.approx(PIX_ACC)
    assert metric.confusion_matrix().tolist() == [[1, 1, 0], [1, 2, 0], [1, 0, 1]]


def test_segmentation_absent_class_is_skipped_not_nan():
    metric = SegmentationMetric(5)  # classes 3 and 4 occur in neither prediction nor label
    metric.update(one_hot_logits(PRED, 5), LABEL)
    out = metric.compute()
    assert all(math.isfinite(v) for v in out.values())
    assert out["miou"] == pytest.approx(MIOU)


def test_segmentation_class_only_predicted_counts_as_zero_iou():
    metric = SegmentationMetric(4)
    pred = PRED.clone()
    pred[0, 1, 3] = 3  # (2, 0) -> (2, 3): class 3 predicted, never labelled
    metric.update(pred, LABEL)
    # TP 1,2,1,0; IoU0 = 1/(2+2-1), IoU1 = 2/(3+3-2), IoU2 = 1/(2+1-1), IoU3 = 0/(0+1-0)
    expected = 100 * (1 / 3 + 1 / 2 + 1 / 2 + 0) / 4
    assert metric.compute()["miou"] == pytest.approx(expected)


def test_segmentation_streams_over_batches():
    torch.manual_seed(0)
    labels = torch.randint(-1, 6, (4, 9, 11))
    logits = torch.randn(4, 6, 9, 11)
    whole, parts = SegmentationMetric(6), SegmentationMetric(6)
    whole.update(logits, labels)
    for i in range(4):
        parts.update(logits[i : i + 1], labels[i : i + 1])
    assert parts.compute() == pytest.approx(whole.compute())
    # independent reference: numpy confusion matrix
    keep = labels.numpy() >= 0
    cm = np.zeros((6, 6))
    np.add.at(cm, (labels.numpy()[keep], logits.argmax(1).numpy()[keep]), 1)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert whole.compute()["miou"] == pytest.approx(100 * np.nanmean(iou))
    whole.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        whole.compute()


def test_segmentation_rejects_bad_labels_and_empty_input():
    metric = SegmentationMetric(3)
    metric.update(PRED, torch.where(LABEL == 2, 7, LABEL))
    with pytest.raises(ValueError, match="outside 0..2"):
        metric.compute()
    metric = SegmentationMetric(3)
    metric.update(PRED, torch.full_like(LABEL, -1))
    with pytest.raises(RuntimeError, match="no labelled pixel"):
        metric.compute()
    with pytest.raises(ValueError, match="logits"):
        SegmentationMetric(3).update(torch.randn(1, 3, 2, 5), LABEL)


# ----------------------------------------------------------------------------- depth
def test_depth_hand_computed_with_invalid_pixels():
    gt = torch.tensor([[[[1.0, 2.0, 0.0], [4.0, -1.0, math.nan]]]])
    pred = torch.tensor([[[[2.0, 2.0, 9.0], [3.0, 5.0, 1.0]]]])
    metric = DepthMetric()
    metric.update(pred, gt)
    out = metric.compute()
    # valid: 1, 2, 4 -> |err| 1, 0, 1; rel 1, 0, 1/4
    assert out["abs_err"] == pytest.approx(2 / 3)
    assert out["rel_err"] == pytest.approx(1.25 / 3)


def test_depth_is_an_exact_pixel_average_over_batches():
    metric = DepthMetric()
    metric.update(torch.tensor([[[[2.0, 5.0]]]]), torch.tensor([[[[1.0, 0.0]]]]))  # 1 valid, err 1
    metric.update(torch.full((1, 1, 1, 3), 2.0), torch.full((1, 1, 1, 3), 2.0))  # 3 valid, err 0
    assert metric.compute()["abs_err"] == pytest.approx(0.25)  # not the mean of batch means (0.5)


def test_depth_errors():
    with pytest.raises(ValueError, match="same shape"):
        DepthMetric().update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))
    metric = DepthMetric()
    metric.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(RuntimeError, match="no valid depth"):
        metric.compute()


# ----------------------------------------------------------------------------- normals
ANGLES = [5.0, 10.0, 20.0, 25.0, 40.0, 90.0]


def normal_batch(angles, lengths=None, invalid: int = 2):
    """gt = +z; pred rotated by each angle about y (and scaled); ``invalid`` extra pixels with
    zero ground truth and an arbitrary prediction."""
    theta = torch.tensor(angles, dtype=torch.float64).deg2rad()
    lengths = torch.ones_like(theta) if lengths is None else torch.tensor(lengths, dtype=torch.float64)
    pred = torch.stack([theta.sin(), torch.zeros_like(theta), theta.cos()], 0) * lengths
    gt = torch.zeros_like(pred)
    gt[2] = 1
    pred = torch.cat([pred, torch.tensor([[0.3] * invalid, [1.0] * invalid, [-1.0] * invalid], dtype=torch.float64)], 1)
    gt = torch.cat([gt, torch.zeros(3, invalid, dtype=torch.float64)], 1)
    return pred[None, :, None, :], gt[None, :, None, :]  # (1, 3, 1, N)


@pytest.mark.parametrize("median", ["histogram", "exact"])
def test_normals_hand_computed(median):
    pred, gt = normal_batch(ANGLES, lengths=[1, 2, 0.5, 3, 1, 7])
    metric = NormalMetric(median=median)
    metric.update(pred, gt)
    out = metric.compute()
    assert out["mean_angle"] == pytest.approx(sum(ANGLES) / 6)
    assert out["median_angle"] == pytest.approx(22.5, abs=metric.resolution / 2 + 1e-9)
    assert out["within_11.25"] == pytest.approx(100 * 2 / 6)
    assert out["within_22.5"] == pytest.approx(100 * 3 / 6)
    assert out["within_30"] == pytest.approx(100 * 4 / 6)


def test_normals_histogram_median_is_within_half_a_bin():
    # values 0.2, 0.7, 1.3 with 1° bins -> middle value in bin [0, 1): reported 0.5
    pred, gt = normal_batch([0.2, 0.7, 1.3], invalid=0)
    metric = NormalMetric(resolution=1.0)
    metric.update(pred, gt)
    assert metric.compute()["median_angle"] == pytest.approx(0.5)
    torch.manual_seed(0)
    angles = (torch.rand(1001) * 60).tolist()
    for resolution in (1e-3, 0.05):
        hist, exact = NormalMetric(resolution=resolution), NormalMetric(median="exact")
        pred, gt = normal_batch(angles, invalid=5)
        for start in range(0, pred.shape[-1], 300):  # streamed in chunks
            hist.update(pred[..., start : start + 300], gt[..., start : start + 300])
            exact.update(pred[..., start : start + 300], gt[..., start : start + 300])
        assert exact.compute()["median_angle"] == pytest.approx(float(np.median(angles)))
        assert abs(hist.compute()["median_angle"] - float(np.median(angles))) <= resolution / 2 + 1e-9


def test_normal_angle_is_accurate_near_zero_in_float32():
    pred, gt = normal_batch([0.01] * 4, invalid=0)
    assert angle_degrees(pred.float(), gt.float()).flatten().tolist() == pytest.approx([0.01] * 4, rel=1e-3)


def test_zero_prediction_counts_as_ninety_degrees():
    pred, gt = normal_batch([10.0, 10.0], invalid=0)
    pred[..., 1] = 0
    metric = NormalMetric()
    metric.update(pred, gt)
    assert metric.compute()["mean_angle"] == pytest.approx(50.0)


def test_normals_errors():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        NormalMetric().update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    metric = NormalMetric()
    metric.update(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(RuntimeError, match="no valid normal"):
        metric.compute()
    with pytest.raises(ValueError):
        NormalMetric(median="approx")


# ----------------------------------------------------------------------------- protocol
def test_update_never_synchronises_with_the_host():
    """On the meta device any data-dependent step (``.item()``, boolean indexing, ``if t:``)
    raises, so a successful update proves the device never waits for the host."""
    meta = torch.device("meta")
    SegmentationMetric(5).update(torch.randn(2, 5, 4, 4, device=meta), torch.randint(-1, 5, (2, 4, 4), device=meta))
    DepthMetric().update(torch.randn(2, 1, 4, 4, device=meta), torch.randn(2, 1, 4, 4, device=meta))
    NormalMetric().update(torch.randn(2, 3, 4, 4, device=meta), torch.randn(2, 3, 4, 4, device=meta))
    NormalMetric(median="exact").update(torch.randn(2, 3, 4, 4, device=meta), torch.randn(2, 3, 4, 4, device=meta))
    with pytest.raises((RuntimeError, NotImplementedError)):
        x = torch.randn(3, device=meta)
        x[x > 0]  # the check itself can fail


def test_directions_match_the_benchmark_tables():
    assert SegmentationMetric.lower_is_better == {"miou": False, "pix_acc": False}
    assert DepthMetric.lower_is_better == {"abs_err": True, "rel_err": True}
    assert NormalMetric.lower_is_better == {
        "mean_angle": True, "median_angle": True, "within_11.25": False, "within_22.5": False, "within_30": False,
    }
