"""Small dataset folders in the exact on-disk layouts of the NYUv2 / Cityscapes releases."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sample_arrays(index: int, height: int, width: int, num_classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Arrays whose values identify the sample: image channel 0 holds the sample index."""
    image = rng.uniform(0, 1, (height, width, 3)).astype(np.float32)
    image[..., 0] = index
    label = rng.integers(-1, num_classes, (height, width)).astype(np.float32)  # stored as floats
    depth = rng.uniform(0.5, 8.0, (height, width, 1)).astype(np.float32)
    depth[0, 0, 0] = 0.0  # an invalid pixel
    normal = rng.normal(size=(height, width, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[0, 0] = 0.0
    return {"image": image, "label": label, "depth": depth, "normal": normal}


def write_dense(
    root: Path,
    counts: dict[str, int],
    height: int = 16,
    width: int = 24,
    num_classes: int = 13,
    folders: dict[str, str] | None = None,
    with_normal: bool = True,
    seed: int = 0,
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Write ``root/<split>/<folder>/<i>.npy`` for every split in ``counts``; return the arrays.
    ``folders`` renames folders (e.g. ``{"label": "label_7"}``)."""
    folders = folders or {}
    rng = np.random.default_rng(seed)
    written: dict[str, list[dict[str, np.ndarray]]] = {}
    for split, n in counts.items():
        written[split] = []
        for i in range(n):
            arrays = sample_arrays(i, height, width, num_classes, rng)
            if not with_normal:
                arrays.pop("normal")
            for key, array in arrays.items():
                folder = root / split / folders.get(key, key)
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / f"{i}.npy", array)
            written[split].append(arrays)
    return written
