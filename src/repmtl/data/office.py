"""Office-31 and Office-Home: multi-input domain benchmarks (one classification task per domain).

Every domain is a task with its own images (``multi_input=True``): the splits are mappings
task -> dataset of ``(image 3×224×224, label)``. Task names are the lower-cased domain names
(``amazon``, ``dslr``, ``webcam``; ``art``, ``clipart``, ``product``, ``real_world``).

Data under ``root`` (``docs/formulas.md#evaluation-on-disk-formats``), in either form:

1. **Split files** (LibMTL's 60/20/20 lists): ``<domain>_train.txt``, ``<domain>_val.txt``,
   ``<domain>_test.txt`` in ``root``, ``root/splits`` or ``root/data_txt`` (also in a
   sub-folder named after the dataset, e.g. ``data_txt/office-31``), one sample per line:
   ``<path relative to root> <label>``, e.g. ``amazon/images/back_pack/frame_0001.jpg 0``.
2. **Only the image folders** ``root/<Domain>/images/<class>/*.jpg`` (Office-31) or
   ``root/<Domain>/<class>/*.jpg`` (Office-Home): labels are the sorted class-folder indices
   and every class is split 60/20/20 (train/val/test) with a fixed seed (0, independent of the
   run's seed), so all runs share the same split.

Images are resized to 224×224 and normalised with the ImageNet mean and std (as LibMTL does,
no augmentation). A missing domain raises an error that lists both accepted layouts; an image
that cannot be decoded raises naming its file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.data._dense import parse_extra
from repmtl.data._npy import CorruptSampleError, DatasetLayoutError
from repmtl.metrics.classification import Accuracy
from repmtl.model import MultiTaskModel
from repmtl.nets.backbones import build_pooled_encoder, is_external
from repmtl.tasks import Task

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SPLIT_NAMES = ("train", "val", "test")
FRACTIONS = (0.6, 0.2, 0.2)

DATASETS = {
    "office31": {"domains": ("amazon", "dslr", "webcam"), "classes": 31, "aliases": ("office-31", "office31", "Office31")},
    "officehome": {
        "domains": ("Art", "Clipart", "Product", "Real_World"),
        "classes": 65,
        "aliases": ("office-home", "officehome", "OfficeHome"),
    },
}


def task_name(domain: str) -> str:
    return domain.lower().replace(" ", "_").replace("-", "_")


class ImageListDataset(Dataset):
    """``(image, label)`` pairs from a list of files; images resized to ``size`` and normalised."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], size: int = 224) -> None:
        if len(files) != len(labels):
            raise ValueError("files and labels differ in length")
        self.files, self.labels, self.size = [Path(f) for f in files], [int(x) for x in labels], size
        self._mean = torch.tensor(MEAN).view(3, 1, 1)
        self._std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        path = self.files[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
                array = np.asarray(img, dtype=np.float32) / 255.0
        except Exception as exc:
            raise CorruptSampleError(f"{path}: cannot be read as an image ({exc})") from exc
        image = (torch.from_numpy(array).permute(2, 0, 1) - self._mean) / self._std
        return image, torch.tensor(self.labels[index])


def _layout(root: Path, dataset: str) -> str:
    d = DATASETS[dataset]["domains"][0]
    return (
        f"expected under {root} either split files {d}_train.txt / {d}_val.txt / {d}_test.txt "
        f"(in {root}, {root}/splits or {root}/data_txt[/<dataset>]) listing '<path relative to root> <label>' "
        f"per line, or image folders {root}/{d}/images/<class>/*.jpg (Office-31) or {root}/{d}/<class>/*.jpg (Office-Home)"
    )


def _split_file_dirs(root: Path, dataset: str) -> list[Path]:
    dirs = [root, root / "splits", root / "data_txt"]
    for alias in DATASETS[dataset]["aliases"]:
        dirs += [root / "splits" / alias, root / "data_txt" / alias]
    return dirs


def _read_split_file(path: Path, root: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetLayoutError(f"{path}:{number}: expected '<path> <label>', got {line!r}")
        files.append(root / parts[0])
        labels.append(int(parts[1]))
    if not files:
        raise DatasetLayoutError(f"{path} lists no sample")
    return files, labels


def _domain_from_folders(root: Path, domain: str, seed: int) -> dict[str, tuple[list[Path], list[int]]] | None:
    base = next((p for p in (root / domain / "images", root / domain) if p.is_dir()), None)
    if base is None:
        return None
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        return None
    out: dict[str, tuple[list[Path], list[int]]] = {s: ([], []) for s in SPLIT_NAMES}
    rng = np.random.default_rng([seed, *domain.encode()])
    for label, cls in enumerate(classes):
        files = sorted(p for p in (base / cls).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        order = rng.permutation(len(files))
        n_train = round(FRACTIONS[0] * len(files))
        n_val = round(FRACTIONS[1] * len(files))
        bounds = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
        for split, idx in bounds.items():
            out[split][0].extend(files[i] for i in sorted(idx))
            out[split][1].extend([label] * len(idx))
    return out


def office_splits(root: str | Path, dataset: str = "office31", seed: int = 0, size: int = 224) -> Splits:
    """Multi-input splits: ``{task: ImageListDataset}`` for train, val and test."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown Office dataset {dataset!r}; choose from {list(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset root {root} is not a directory; {_layout(root, dataset)}")
    per_split: dict[str, dict[str, Dataset]] = {s: {} for s in SPLIT_NAMES}
    for domain in DATASETS[dataset]["domains"]:
        names = [domain, domain.lower()]
        found = None
        for folder in _split_file_dirs(root, dataset):
            for name in names:
                paths = [folder / f"{name}_{s}.txt" for s in SPLIT_NAMES]
                if all(p.is_file() for p in paths):
                    found = {s: _read_split_file(p, root) for s, p in zip(SPLIT_NAMES, paths)}
                    break
            if found:
                break
        if found is None:
            found = next((f for f in (_domain_from_folders(root, n, seed) for n in names) if f is not None), None)
        if found is None:
            raise DatasetLayoutError(f"no data for domain {domain!r}; {_layout(root, dataset)}")
        num_classes = DATASETS[dataset]["classes"]
        for split, (files, labels) in found.items():
            bad = [x for x in labels if not 0 <= x < num_classes]
            if bad:
                raise DatasetLayoutError(f"domain {domain!r} ({split}): labels {bad[:5]} outside 0..{num_classes - 1}")
            per_split[split][task_name(domain)] = ImageListDataset(files, labels, size)
    return Splits(train=per_split["train"], val=per_split["val"], test=per_split["test"])


class PooledResNet(nn.Module):
    """ResNet trunk + global average pooling: ``B×3×H×W -> B×C`` (``Z``)."""

    def __init__(self, name: str = "resnet18", pretrained: Path | None = None) -> None:
        super().__init__()
        from repmtl.nets.resnet import ResNetEncoder

        self.trunk = ResNetEncoder(name, output_stride=32, pretrained=pretrained)
        self.out_channels = self.trunk.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean(dim=(2, 3))


def office_tasks(dataset: str) -> list[Task]:
    return [Task(task_name(d), nn.functional.cross_entropy, Accuracy) for d in DATASETS[dataset]["domains"]]


def office_model(dataset: str, options: BuildOptions, tasks: list[Task]) -> MultiTaskModel:
    if is_external(options.encoder):
        encoder: nn.Module = build_pooled_encoder(options.encoder, options.pretrained)
    else:
        encoder = PooledResNet(options.encoder or "resnet18", options.pretrained)
    classes = DATASETS[dataset]["classes"]
    return MultiTaskModel(encoder, {t.name: nn.Linear(encoder.out_channels, classes) for t in tasks})


def _register(dataset: str, title: str) -> Benchmark:
    domains = ", ".join(DATASETS[dataset]["domains"])

    def splits(options: BuildOptions) -> Splits:
        if options.data_root is None:
            raise ValueError(f"{dataset} needs a data root")
        return office_splits(options.data_root, dataset, seed=int(parse_extra(options.extra, "split_seed", 0)))

    return register_benchmark(
        Benchmark(
            name=dataset,
            description=f"{title}: {DATASETS[dataset]['classes']}-class classification per domain ({domains}), multi-input; ResNet-18",
            tasks=lambda options: office_tasks(dataset),
            splits=splits,
            model=lambda options, tasks: office_model(dataset, options, tasks),
            defaults=TrainDefaults(epochs=100, batch_size=64, lr=1e-4, weight_decay=1e-5, optimizer="adam"),
            multi_input=True,
            needs_data_root=True,
            encoders=("resnet18", "resnet50"),
            external_encoders=True,
            expects_pretrained=True,
            options=("split_seed",),
        )
    )


OFFICE31 = _register("office31", "Office-31")
OFFICEHOME = _register("officehome", "Office-Home")
