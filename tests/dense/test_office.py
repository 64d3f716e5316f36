"""Office-31 / Office-Home multi-input loaders on tiny image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import repmtl
from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data._npy import CorruptSampleError, DatasetLayoutError
from repmtl.data.office import office_splits

DOMAINS = ("amazon", "dslr", "webcam")


def write_office31(root, per_class=5, classes=("back_pack", "bike", "mug")):
    for d, domain in enumerate(DOMAINS):
        for c, cls in enumerate(classes):
            folder = root / domain / "images" / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = np.full((12, 10, 3), 40 * c + 10 * d + i, np.uint8)
                Image.fromarray(colour).save(folder / f"frame_{i:04d}.jpg")


def test_split_files_are_read(tmp_path):
    write_office31(tmp_path)
    for domain in DOMAINS:
        for split, files in (("train", [0, 1, 2]), ("val", [3]), ("test", [4])):
            lines = [f"{domain}/images/mug/frame_{i:04d}.jpg 2" for i in files]
            (tmp_path / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    splits = office_splits(tmp_path, "office31", size=32)
    assert set(splits.train) == set(DOMAINS)
    assert [len(splits.train["dslr"]), len(splits.val["dslr"]), len(splits.test["dslr"])] == [3, 1, 1]
    image, label = splits.test["webcam"][0]
    assert image.shape == (3, 32, 32) and label.item() == 2
    # normalised with the ImageNet statistics: a uniform grey image maps to (v - mean) / std
    value = (40 * 2 + 10 * 2 + 4) / 255
    assert image[0].mean().item() == pytest.approx((value - 0.485) / 0.229, abs=0.05)


def test_folders_only_give_a_fixed_stratified_60_20_20_split(tmp_path):
    write_office31(tmp_path, per_class=10)
    a = office_splits(tmp_path, "office31", size=16)
    b = office_splits(tmp_path, "office31", size=16)
    for domain in DOMAINS:
        sizes = [len(s[domain]) for s in (a.train, a.val, a.test)]
        assert sizes == [18, 6, 6]
        files = [set(s[domain].files) for s in (a.train, a.val, a.test)]
        assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
        assert a.test[domain].files == b.test[domain].files
        assert sorted(set(a.val[domain].labels)) == [0, 1, 2]  # stratified per class


def test_errors_name_the_layout_and_the_file(tmp_path):
    with pytest.raises(DatasetLayoutError, match="amazon_train.txt"):
        office_splits(tmp_path, "office31")
    write_office31(tmp_path)
    bad = next((tmp_path / "dslr" / "images" / "bike").iterdir())
    bad.write_bytes(b"not a jpeg")
    splits = office_splits(tmp_path, "office31")
    dataset = next(s["dslr"] for s in (splits.train, splits.val, splits.test) if bad in s["dslr"].files)
    with pytest.raises(CorruptSampleError, match=bad.name):
        dataset[dataset.files.index(bad)]


def test_office_presets_one_step(tmp_path):
    write_office31(tmp_path)
    bench = get_benchmark("office31")
    assert bench.multi_input and bench.needs_data_root
    assert get_benchmark("officehome").tasks(BuildOptions())[3].name == "real_world"
    options = BuildOptions(data_root=tmp_path)
    tasks = bench.tasks(options)
    splits = bench.splits(options)
    torch.manual_seed(0)
    model = bench.model(options, tasks)
    inputs = {t: torch.stack([splits.train[t][i][0][:, :64, :64] for i in range(2)]) for t in splits.train}
    labels = {t: torch.stack([splits.train[t][i][1] for i in range(2)]) for t in splits.train}
    out = model(inputs)
    assert out.representation["amazon"].shape == (2, 512)
    losses = {t.name: t.loss(out.predictions[t.name], labels[t.name]) for t in tasks}
    repmtl.backward(losses, representation=out.representation, method="ew")
    assert all(p.grad is not None for p in model.parameters())
