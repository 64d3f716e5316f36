"""NYUv2 / Cityscapes loaders on small folders written in the releases' exact layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data._dense import carve_validation, parse_size
from repmtl.data._npy import CorruptSampleError, DatasetLayoutError, NpyDenseDataset
from repmtl.data.cityscapes import cityscapes_splits
from repmtl.data.nyuv2 import TARGETS, nyuv2_splits

from ._fixtures import write_dense

H, W = 16, 24


@pytest.fixture
def nyu(tmp_path):
    written = write_dense(tmp_path, {"train": 10, "val": 3}, H, W)
    return tmp_path, written


def sample_id(image: torch.Tensor) -> int:
    return int(image[0, 0, 0])


def test_nyuv2_sample_formats_and_values(nyu):
    root, written = nyu
    ds = NpyDenseDataset(root, "val", list(TARGETS.values()), num_classes=13)
    assert len(ds) == 3
    image, targets = ds[2]
    ref = written["val"][2]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(ref["image"]).permute(2, 0, 1))
    assert targets["segmentation"].shape == (H, W) and targets["segmentation"].dtype == torch.int64
    assert torch.equal(targets["segmentation"], torch.from_numpy(ref["label"]).long())
    assert targets["depth"].shape == (1, H, W)
    assert torch.equal(targets["depth"][0], torch.from_numpy(ref["depth"][..., 0]))
    assert targets["normal"].shape == (3, H, W)
    assert torch.equal(targets["normal"], torch.from_numpy(ref["normal"]).permute(2, 0, 1))


def test_nyuv2_splits_val_carved_from_train_test_is_official_val(nyu):
    root, _ = nyu
    splits = nyuv2_splits(root, val_fraction=0.3, split_seed=0, image_size=(H, W))
    train_ids = sorted(sample_id(splits.train.load(i)[0]) for i in range(len(splits.train)))
    val_ids = sorted(sample_id(splits.val[i][0]) for i in range(len(splits.val)))
    assert len(val_ids) == 3 and len(train_ids) == 7
    assert sorted(train_ids + val_ids) == list(range(10))
    assert len(splits.test) == 3 and splits.test.split == "val"
    # fixed: the same split whatever else happens, another split seed gives another split
    again = nyuv2_splits(root, val_fraction=0.3, split_seed=0, image_size=(H, W))
    assert [sample_id(again.val[i][0]) for i in range(3)] == [sample_id(splits.val[i][0]) for i in range(3)]
    assert carve_validation(10, 0.3, 0) != carve_validation(10, 0.3, 1)
    # only the training part is augmented; validation and test are the files as stored
    assert splits.train.augment is not None and splits.val.augment is None and splits.test.augment is None


def test_carve_validation_properties():
    train, val = carve_validation(795, 0.1, 0)
    assert len(val) == 80 and len(train) == 715 and not set(train) & set(val)
    assert carve_validation(795, 0.1, 0) == (train, val)
    assert carve_validation(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(ValueError):
        carve_validation(5, 1.0, 0)


def test_missing_folders_list_the_expected_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="expected layout") as info:
        nyuv2_splits(tmp_path / "nowhere")
    message = str(info.value)
    for expected in ("train/image/<i>.npy", "train/label/<i>.npy", "val/depth/<i>.npy", "val/normal/<i>.npy"):
        assert expected in message
    write_dense(tmp_path, {"train": 2}, H, W)
    with pytest.raises(DatasetLayoutError, match=r"split folder .*val is missing"):
        nyuv2_splits(tmp_path, val_fraction=0.0, image_size=(H, W))
    write_dense(tmp_path, {"val": 2}, H, W, with_normal=False)
    with pytest.raises(DatasetLayoutError, match=r"normal folder .*val.normal is missing") as info:
        nyuv2_splits(tmp_path, val_fraction=0.0, image_size=(H, W))
    assert "val/normal/<i>.npy" in str(info.value)


def test_mismatched_file_sets_are_reported(nyu):
    root, _ = nyu
    (root / "train" / "depth" / "4.npy").unlink()
    with pytest.raises(DatasetLayoutError, match=r"missing here: \['4.npy'\]"):
        nyuv2_splits(root, image_size=(H, W))


def test_corrupt_file_is_named(nyu):
    root, _ = nyu
    bad = root / "train" / "depth" / "3.npy"
    bad.write_bytes(b"not a numpy file at all")
    with pytest.raises(CorruptSampleError, match=str(bad).replace("\\", "\\\\")):
        nyuv2_splits(root, image_size=(H, W))  # found by the header scan before training
    ds = NpyDenseDataset(root, "train", list(TARGETS.values()), check_headers=False)
    ds[2]
    with pytest.raises(CorruptSampleError, match="3.npy"):
        ds[3]  # and when the sample itself is loaded


def test_wrong_shapes_and_labels_are_named(nyu):
    root, _ = nyu
    np.save(root / "train" / "normal" / "5.npy", np.zeros((H, W + 1, 3), np.float32))
    with pytest.raises(CorruptSampleError, match=r"normal.5\.npy: shape \(16, 25, 3\)"):
        NpyDenseDataset(root, "train", list(TARGETS.values()))
    with pytest.raises(CorruptSampleError, match=r"image.0\.npy: .*\(288, 384, 3\)"):
        NpyDenseDataset(root, "val", list(TARGETS.values()), image_size=(288, 384))
    label = np.zeros((H, W), np.float32)
    label[3, 3] = 13
    np.save(root / "val" / "label" / "1.npy", label)
    ds = NpyDenseDataset(root, "val", list(TARGETS.values()), num_classes=13)
    with pytest.raises(CorruptSampleError, match=r"label.1\.npy: labels span -?\d+\.\.13"):
        ds[1]
    label[3, 3] = 0.5
    np.save(root / "val" / "label" / "1.npy", label)
    with pytest.raises(CorruptSampleError, match="whole numbers"):
        ds[1]


def test_cityscapes_label_folder_variants(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_dense(a, {"train": 4, "val": 2}, H, W, num_classes=7, folders={"label": "label_7"}, with_normal=False)
    write_dense(b, {"train": 4, "val": 2}, H, W, num_classes=7, with_normal=False)
    written = write_dense(c, {"train": 4, "val": 2}, H, W, num_classes=19, folders={"label": "label_19"}, with_normal=False)
    for root in (a, b):
        splits = cityscapes_splits(root, image_size=(H, W), val_fraction=0.25)
        _image, targets = splits.test[0]
        assert set(targets) == {"segmentation", "depth"} and targets["depth"].shape == (1, H, W)
        assert int(targets["segmentation"].max()) <= 6
    splits = cityscapes_splits(c, classes=19, image_size=(H, W), val_fraction=0.25)
    assert torch.equal(splits.test[1][1]["segmentation"], torch.from_numpy(written["val"][1]["label"]).long())
    with pytest.raises(DatasetLayoutError, match="label_19"):
        cityscapes_splits(a, classes=19, image_size=(H, W))
    with pytest.raises(DatasetLayoutError, match=r"label .*or .*label_7"):
        cityscapes_splits(c, classes=7, image_size=(H, W))


def test_presets_build_from_a_data_root(tmp_path):
    write_dense(tmp_path, {"train": 4, "val": 2}, H, W)
    bench = get_benchmark("nyuv2")
    options = BuildOptions(data_root=tmp_path, extra={"image_size": f"({H}, {W})", "val_fraction": "0.25"})
    splits = bench.splits(options)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 1, 2)
    with pytest.raises(CorruptSampleError, match="288, 384"):  # the paper's size is the default
        bench.splits(BuildOptions(data_root=tmp_path))
    with pytest.raises(ValueError, match="data root"):
        bench.splits(BuildOptions())


@pytest.mark.parametrize(
    "given, expected",
    [("48x64", (48, 64)), ("(48, 64)", (48, 64)), ([24, 32], (24, 32)), (16, (16, 16)), ("None", None)],
)
def test_size_options_read_height_and_width(given, expected):
    assert parse_size({"size": given}, "size", (1, 1)) == expected
    assert parse_size({}, "size", (1, 1)) == (1, 1)


@pytest.mark.parametrize("given", ["16-24", "x", [16], (0, 4), "big", True])
def test_a_bad_size_option_names_the_option(given):
    with pytest.raises(ValueError, match="option size=.*HEIGHTxWIDTH"):
        parse_size({"size": given}, "size", (1, 1))


def test_synthscenes_size_option_from_the_cli_form():
    splits = get_benchmark("synthscenes").splits(BuildOptions(extra={"size": "16x24", "n_train": 2, "n_val": 1,
                                                                    "n_test": 1}))
    image, _ = splits.train[0]
    assert image.shape[-2:] == (16, 24)
