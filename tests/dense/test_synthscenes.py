"""synthscenes: deterministic from the seed, and its normals are those of its depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repmtl.benchmarks import BuildOptions
from repmtl.data import get_benchmark
from repmtl.data.synthscenes import (
    CEILING,
    CLASSES,
    FLOOR,
    Camera,
    SynthScenes,
    generate,
)


def fd_normal_errors(sample: dict, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) between the stored normals and the normals of the back-projected depth
    (central differences, cross product), at pixels whose 4 neighbours lie on the same smooth
    surface patch with valid depth. Returns (errors on flat patches, errors on curved ones)."""
    points = camera.backproject(sample["depth"])
    du = points[1:-1, 2:] - points[1:-1, :-2]
    dv = points[2:, 1:-1] - points[:-2, 1:-1]
    fd = np.cross(du, dv)
    fd /= np.linalg.norm(fd, axis=-1, keepdims=True) + 1e-300
    centre = points[1:-1, 1:-1]
    fd = np.where(((fd * centre).sum(-1) > 0)[..., None], -fd, fd)  # face the camera
    normal, surface, valid = sample["normal"], sample["surface"], sample["valid"]
    shifts = [(slice(1, -1), slice(2, None)), (slice(1, -1), slice(None, -2)), (slice(2, None), slice(1, -1)), (slice(None, -2), slice(1, -1))]
    c = (slice(1, -1), slice(1, -1))
    smooth = valid[c].copy()
    for s in shifts:
        smooth &= (surface[s] == surface[c]) & valid[s]
    error = np.degrees(np.arccos(np.clip((fd * normal[c]).sum(-1), -1, 1)))
    variation = sum(np.linalg.norm(normal[s] - normal[c], axis=-1) for s in shifts)
    flat = smooth & (variation < 1e-9)
    return error[flat], error[smooth & ~flat]


def test_normals_are_those_of_the_depth():
    camera = Camera.from_fov(48, 64)
    flat, curved = [], []
    for i in range(12):
        f, c = fd_normal_errors(generate(3, "train", i), camera)
        flat.append(f)
        curved.append(c)
    flat, curved = np.concatenate(flat), np.concatenate(curved)
    assert flat.size > 10_000 and curved.size > 200
    assert flat.max() < 0.05  # planes: exact up to rounding
    assert np.median(curved) < 1.0 and np.percentile(curved, 90) < 5.0


def test_curved_normals_converge_with_resolution():
    """Central differences are second order: doubling the resolution divides the error on
    spheres / cylinders by about 4 only if the stored normals are the true ones."""
    medians = []
    for size in ((48, 64), (96, 128)):
        camera = Camera.from_fov(*size)
        errors = np.concatenate([fd_normal_errors(generate(5, "train", i, size=size), camera)[1] for i in range(6)])
        medians.append(np.median(errors))
    assert medians[1] < medians[0] / 2.5


def test_sample_contents_are_consistent():
    camera = Camera.from_fov(48, 64)
    rays = camera.rays()
    seen = set()
    for i in range(30):
        s = generate(0, "train", i)
        label, depth, normal, valid = s["label"], s["depth"], s["normal"], s["valid"]
        assert s["image"].shape == (48, 64, 3) and 0 <= s["image"].min() and s["image"].max() <= 1
        assert set(np.unique(label)) <= set(range(-1, len(CLASSES)))
        assert (depth[valid] > 0).all() and (depth[~valid] == 0).all()
        assert np.allclose(np.linalg.norm(normal[valid], axis=-1), 1) and (normal[~valid] == 0).all()
        assert ((normal * rays).sum(-1)[valid] < 0).all()  # normals face the camera
        # camera y points down: floors face up (n_y < 0), ceilings face down
        floor, ceiling = (label == FLOOR) & valid, (label == CEILING) & valid
        assert (normal[floor][:, 1] < -0.5).all() and (normal[ceiling][:, 1] > 0.5).all()
        seen |= set(np.unique(label).tolist())
    assert seen == set(range(-1, len(CLASSES)))  # every class (and the ignore label) occurs


def test_generation_is_deterministic_from_the_seed():
    a, b = generate(7, "train", 3), generate(7, "train", 3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(generate(8, "train", 3)["depth"], a["depth"])
    assert not np.array_equal(generate(7, "val", 3)["depth"], a["depth"])
    assert not np.array_equal(generate(7, "train", 4)["depth"], a["depth"])
    ds = SynthScenes("train", 5, seed=7)
    image, targets = ds[3]
    assert torch.equal(image, torch.from_numpy(a["image"]).float().permute(2, 0, 1))
    assert torch.equal(targets["segmentation"], torch.from_numpy(a["label"]))
    assert torch.equal(targets["depth"][0], torch.from_numpy(a["depth"]).float())
    assert torch.equal(targets["normal"], torch.from_numpy(a["normal"]).float().permute(2, 0, 1))
    # order of access does not matter (lazy generation, per-index streams)
    assert torch.equal(SynthScenes("train", 5, seed=7, cache=False)[3][0], image)
    with pytest.raises(IndexError):
        ds[5]


def test_preset_builds_and_trains_one_step():
    import repmtl

    bench = get_benchmark("synthscenes")
    assert not bench.needs_data_root
    options = BuildOptions(extra={"n_train": "8", "n_val": "4", "n_test": "4"})
    tasks = bench.tasks(options)
    assert [t.name for t in tasks] == ["segmentation", "depth", "normal"]
    splits = bench.splits(options)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, 4)
    torch.manual_seed(0)
    model = bench.model(options, tasks)
    x = torch.stack([splits.train[i][0] for i in range(8)])
    y = {t.name: torch.stack([splits.train[i][1][t.name] for i in range(8)]) for t in tasks}
    out = model(x)
    assert out.predictions["segmentation"].shape == (8, len(CLASSES), 48, 64)
    assert out.predictions["normal"].shape == (8, 3, 48, 64)
    losses = {t.name: t.loss(out.predictions[t.name], y[t.name]) for t in tasks}
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    repmtl.backward(losses, representation=out.representation, method="ew")
    optimizer.step()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
