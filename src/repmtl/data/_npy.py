"""The on-disk reader of the dense scene-understanding datasets stored as ``.npy`` files (the
MTAN / LibMTL preprocessed layout of NYUv2 and Cityscapes).

:class:`NpyDenseDataset` reads ``root/<split>/<folder>/<i>.npy`` (one folder for the image,
one per target, described by a :class:`TargetSpec`), checks the layout up front
(:class:`DatasetLayoutError`, with the expected layout in the message) and every sample when it
is loaded (:class:`CorruptSampleError`, naming the file), and yields
``(image C×H×W float32, {task: target})``. File shapes can be checked from the ``.npy``
headers alone (:func:`read_npy_header`), before training starts.

Target tensors: segmentation ``H×W`` int64 (−1 = ignore), depth ``1×H×W`` float32
(0 = invalid), normal ``3×H×W`` float32 (0 = invalid).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing or does not have the expected layout."""


class CorruptSampleError(ValueError):
    """One file of a dataset cannot be loaded or has the wrong shape / values."""


@dataclass(frozen=True)
class TargetSpec:
    """How one target is stored.

    ``folders``: candidate folder names, the first one present is used (e.g. Cityscapes'
    ``("label", "label_7")``). ``kind``: ``"label" | "depth" | "disparity" | "normal"`` (see
    :mod:`repmtl.data.transforms`). ``description``: the on-disk format, for error messages.
    """

    task: str
    folders: tuple[str, ...]
    kind: str
    description: str


IMAGE_DESCRIPTION = "H×W×3 float image"


def expected_layout(root: Path, splits: Sequence[str], specs: Sequence[TargetSpec], image_folder: str = "image") -> str:
    lines = [f"expected layout under {root}:"]
    for split in splits:
        lines.append(f"  {split}/{image_folder}/<i>.npy   {IMAGE_DESCRIPTION}")
        for spec in specs:
            folder = spec.folders[0] + (f" (or {', '.join(spec.folders[1:])})" if len(spec.folders) > 1 else "")
            lines.append(f"  {split}/{folder}/<i>.npy   {spec.description}")
    lines.append("with the same file names <i>.npy (i = 0, 1, ...) in every folder of a split")
    return "\n".join(lines)


def _sort_key(stem: str) -> tuple[int, int | str]:
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header only (no data read)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # pragma: no cover - numpy raises on unknown versions already
            raise ValueError(f"unsupported .npy version {version}")
    return tuple(shape), dtype


class NpyDenseDataset(Dataset):
    """One split of a ``root/<split>/{image, <target folders>}/<i>.npy`` dataset.

    Args:
        root: dataset root.
        split: folder under ``root`` (``"train"`` or ``"val"``).
        specs: one :class:`TargetSpec` per task to load.
        num_classes: labels must lie in ``-1..num_classes-1`` (checked per sample).
        indices: positions (in the sorted file list) this dataset exposes; ``None`` = all.
        augment: a :class:`DenseAugment` (or any ``(image, targets) -> (image, targets)``).
        image_size: required ``(H, W)``; ``None``: taken from the first file.
        check_headers: read every file's ``.npy`` header when the dataset is built, so a wrong
            shape or an unreadable file is reported before training starts.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        specs: Sequence[TargetSpec],
        *,
        num_classes: int | None = None,
        indices: Sequence[int] | None = None,
        augment: Callable | None = None,
        image_size: tuple[int, int] | None = None,
        check_headers: bool = True,
        image_folder: str = "image",
        all_splits: Sequence[str] = ("train", "val"),
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.specs = tuple(specs)
        self.num_classes = num_classes
        self.augment = augment
        self.image_folder = image_folder
        layout = expected_layout(self.root, all_splits, self.specs, image_folder)
        self.folders = self._resolve_folders(layout)
        self.stems = self._list_files(layout)
        self.indices = list(range(len(self.stems))) if indices is None else [int(i) for i in indices]
        bad = [i for i in self.indices if not 0 <= i < len(self.stems)]
        if bad:
            raise IndexError(f"indices {bad[:5]} out of range for {len(self.stems)} files in {self.root / split}")
        self.image_size = image_size
        if check_headers:
            self.check_headers()

    # ----------------------------------------------------------------------------- layout
    def _resolve_folders(self, layout: str) -> dict[str, Path]:
        if not self.root.is_dir():
            raise DatasetLayoutError(f"dataset root {self.root} is not a directory\n{layout}")
        base = self.root / self.split
        if not base.is_dir():
            raise DatasetLayoutError(f"split folder {base} is missing\n{layout}")
        folders = {"image": base / self.image_folder}
        if not folders["image"].is_dir():
            raise DatasetLayoutError(f"image folder {folders['image']} is missing\n{layout}")
        for spec in self.specs:
            found = next((base / f for f in spec.folders if (base / f).is_dir()), None)
            if found is None:
                names = " or ".join(f"{base / f}" for f in spec.folders)
                raise DatasetLayoutError(f"{spec.task} folder {names} is missing\n{layout}")
            folders[spec.task] = found
        return folders

    def _list_files(self, layout: str) -> list[str]:
        stems = {key: {p.stem for p in folder.glob("*.npy")} for key, folder in self.folders.items()}
        reference = stems["image"]
        if not reference:
            raise DatasetLayoutError(f"no .npy files in {self.folders['image']}\n{layout}")
        for key, names in stems.items():
            if names != reference:
                only_image = sorted(reference - names, key=_sort_key)[:5]
                only_here = sorted(names - reference, key=_sort_key)[:5]
                raise DatasetLayoutError(
                    f"{self.folders[key]} and {self.folders['image']} hold different files "
                    f"(missing here: {[s + '.npy' for s in only_image]}; extra here: "
                    f"{[s + '.npy' for s in only_here]})\n{layout}"
                )
        return sorted(reference, key=_sort_key)

    def path(self, key: str, position: int) -> Path:
        return self.folders[key] / f"{self.stems[position]}.npy"

    # ----------------------------------------------------------------------------- checks
    def _expected_shape(self, key: str, hw: tuple[int, int]) -> list[tuple[int, ...]]:
        h, w = hw
        kind = "image" if key == "image" else next(s.kind for s in self.specs if s.task == key)
        if kind == "image":
            return [(h, w, 3)]
        if kind == "label":
            return [(h, w), (h, w, 1)]
        if kind in ("depth", "disparity"):
            return [(h, w, 1), (h, w)]
        return [(h, w, 3)]

    def _check_shape(self, key: str, path: Path, shape: tuple[int, ...]) -> None:
        if self.image_size is None:
            if key != "image" or len(shape) != 3:
                raise CorruptSampleError(f"{path}: image has shape {shape}, expected (H, W, 3)")
            self.image_size = (int(shape[0]), int(shape[1]))
        allowed = self._expected_shape(key, self.image_size)
        if tuple(shape) not in allowed:
            raise CorruptSampleError(
                f"{path}: shape {tuple(shape)}, expected {' or '.join(str(a) for a in allowed)} "
                f"(image size {self.image_size[0]}×{self.image_size[1]})"
            )

    def check_headers(self) -> None:
        """Check every exposed file's shape from its ``.npy`` header (no pixel data read)."""
        for position in self.indices:
            for key in self.folders:
                path = self.path(key, position)
                try:
                    shape, dtype = read_npy_header(path)
                except Exception as exc:  # any failure to read, reported with the file name
                    raise CorruptSampleError(f"{path}: not a readable .npy file ({exc})") from exc
                if dtype.hasobject:
                    raise CorruptSampleError(f"{path}: holds Python objects, expected a numeric array")
                self._check_shape(key, path, shape)

    def _load(self, key: str, position: int) -> np.ndarray:
        path = self.path(key, position)
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # any failure to load, reported with the file name
            raise CorruptSampleError(f"{path}: cannot be loaded as .npy ({exc})") from exc
        self._check_shape(key, path, array.shape)
        return array

    # ----------------------------------------------------------------------------- samples
    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sample ``index`` without augmentation."""
        position = self.indices[index]
        image = torch.from_numpy(np.ascontiguousarray(self._load("image", position), dtype=np.float32)).permute(2, 0, 1)
        targets: dict[str, torch.Tensor] = {}
        for spec in self.specs:
            array = self._load(spec.task, position)
            if spec.kind == "label":
                targets[spec.task] = self._label(array.reshape(array.shape[:2]), self.path(spec.task, position))
            else:
                array = np.ascontiguousarray(array, dtype=np.float32)
                if array.ndim == 2:
                    array = array[:, :, None]
                targets[spec.task] = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        return image.contiguous(), targets

    def _label(self, array: np.ndarray, path: Path) -> torch.Tensor:
        if array.dtype.kind == "f":
            if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
                raise CorruptSampleError(f"{path}: labels must be whole numbers")
        elif array.dtype.kind not in "iu":
            raise CorruptSampleError(f"{path}: labels have dtype {array.dtype}, expected integers or floats")
        label = array.astype(np.int64)
        if self.num_classes is not None and label.size:
            lo, hi = int(label.min()), int(label.max())
            if lo < -1 or hi >= self.num_classes:
                raise CorruptSampleError(
                    f"{path}: labels span {lo}..{hi}, expected -1 (ignore) or 0..{self.num_classes - 1}"
                )
        return torch.from_numpy(label)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, targets = self.load(index)
        if self.augment is not None:
            image, targets = self.augment(image, targets)
        return image, targets

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
