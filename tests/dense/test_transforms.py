"""Joint augmentation keeps the image and every target aligned; flips negate normal x."""

from __future__ import annotations

import pytest
import torch

from repmtl.data.transforms import DenseAugment, hflip, scale_crop

H, W = 24, 32
KINDS = {"segmentation": "label", "depth": "depth", "normal": "normal", "disp": "disparity"}


def coordinate_sample():
    """Image channel 0 = column, channel 1 = row (smooth ramps a bilinear resize reproduces);
    every target stores the same coordinates in its own way."""
    rows = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
    cols = torch.arange(W, dtype=torch.float32)[None, :].expand(H, W)
    image = torch.stack([cols, rows, torch.zeros(H, W)])
    targets = {
        "segmentation": cols.long(),  # label = source column
        "depth": (rows + 1)[None].clone(),  # depth = source row + 1
        "normal": torch.stack([cols + 1, rows + 1, torch.ones(H, W)]),  # x = source column + 1
        "disp": (1 / (rows + 1))[None].clone(),
    }
    return image, targets


def check_aligned(image, targets, scale, flipped):
    col, row = image[0], image[1]
    # each target pixel comes from the source pixel nearest to where the image was sampled
    assert (targets["segmentation"].float() - col).abs().max() <= 0.5 + 1e-4
    assert (targets["depth"][0] * scale - 1 - row).abs().max() <= 0.5 + 1e-4
    # disparity (stored as 1/depth) is multiplied by the zoom, from the same source pixel
    assert torch.allclose(targets["disp"][0] / scale, 1 / (targets["depth"][0] * scale))
    sign = -1 if flipped else 1
    assert (sign * targets["normal"][0] - 1 - col).abs().max() <= 0.5 + 1e-4
    assert (targets["normal"][1] - 1 - row).abs().max() <= 0.5 + 1e-4
    assert torch.equal(targets["normal"][0].abs() - 1, targets["segmentation"].float())


@pytest.mark.parametrize("scale", [1.2, 1.5, 2.0])
def test_scale_crop_keeps_targets_aligned_and_rescales_depth(scale):
    image, targets = coordinate_sample()
    h, w = int(H / scale), int(W / scale)
    for top, left in [(0, 0), (H - h, W - w), ((H - h) // 2, 1)]:
        out_image, out = scale_crop(image, targets, KINDS, scale, top, left)
        assert out_image.shape == image.shape and all(out[k].shape == targets[k].shape for k in targets)
        check_aligned(out_image, out, scale, flipped=False)
        # the crop window: the output spans the source rows/columns of the window
        assert out["segmentation"].min() == left and out["segmentation"].max() == left + w - 1
        assert out["depth"].max() * scale == pytest.approx(top + h)  # depth divided by the zoom
        assert out["segmentation"].dtype == torch.int64


def test_hflip_mirrors_everything_and_negates_normal_x():
    image, targets = coordinate_sample()
    out_image, out = hflip(image, targets, KINDS)
    assert torch.equal(out_image[0], image[0].flip(-1))
    assert torch.equal(out["segmentation"], targets["segmentation"].flip(-1))
    assert torch.equal(out["normal"][0], -targets["normal"][0].flip(-1))
    assert torch.equal(out["normal"][1:], targets["normal"][1:].flip(-1))
    assert torch.equal(targets["normal"][0], coordinate_sample()[1]["normal"][0])  # input untouched
    check_aligned(out_image, out, 1.0, flipped=True)


def test_flip_keeps_normals_geometrically_consistent():
    # a surface facing right in the image (normal +x) faces left once mirrored
    normal = torch.zeros(3, 2, 2)
    normal[0], normal[2] = 0.6, -0.8
    _, out = hflip(torch.zeros(3, 2, 2), {"normal": normal}, {"normal": "normal"})
    assert torch.allclose(out["normal"][:, 0, 0], torch.tensor([-0.6, 0.0, -0.8]))


def test_random_augment_is_aligned_and_draws_every_option():
    image, targets = coordinate_sample()
    augment = DenseAugment(KINDS, scales=(1.0, 1.2, 1.5), flip_p=0.5, generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(40):
        out_image, out = augment(image, targets)
        flipped = bool(out["normal"][0, 0, 0] < 0)
        scale = float((out_image[1] + 1).max() / out["depth"].max())  # rows + 1 over rescaled depth
        scale = min((1.0, 1.2, 1.5), key=lambda s: abs(s - scale))
        check_aligned(out_image, out, scale, flipped)
        seen.add((scale, flipped))
    assert seen == {(s, f) for s in (1.0, 1.2, 1.5) for f in (False, True)}


def test_invalid_pixels_stay_invalid():
    image, targets = coordinate_sample()
    targets["depth"][:, :, :5] = 0
    targets["normal"][:, :, :5] = 0
    _, out = scale_crop(image, targets, KINDS, 1.5, 0, 0)
    zero_depth = out["depth"][0] == 0
    zero_normal = (out["normal"] == 0).all(0)
    assert torch.equal(zero_depth, zero_normal) and zero_depth.any() and not zero_depth.all()
    # nearest neighbour: no interpolated values between 0 and the valid ones
    valid = out["depth"][0][~zero_depth]
    assert (valid >= (1 / 1.5) - 1e-6).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown target kinds"):
        DenseAugment({"x": "colour"})
    with pytest.raises(ValueError, match=">= 1"):
        DenseAugment(KINDS, scales=(0.5,))
    image, targets = coordinate_sample()
    with pytest.raises(ValueError, match="does not fit"):
        scale_crop(image, targets, KINDS, 1.5, H, 0)
