"""``qm9`` / ``qm9-small``: the 11 molecular-property regression tasks of QM9.

Data: the 130,831 molecules of QM9 (Ramakrishnan et al., "Quantum chemistry structures and
properties of 134 kilo molecules", Scientific Data 1, 2014; the 3,054 that failed its
consistency check are not included) as they ship in the PyPI package ``qm9pack``
(``qm9_part{1,2,3}.csv`` in its ``data`` folder; no download). The CSVs are read here with the
standard library (not the package's pandas helper) and never imported as code. ``--data-root``
may point to any folder of CSVs in the same format instead.

Graphs: one per molecule, atoms in the XYZ order of the release. Node features are the element
one-hot (H, C, N, O, F) and the atomic number; edges are the complete graph without self-loops
with the interatomic distance in Å as the only edge feature (PyG's ``Complete()`` +
``Distance(norm=False)``, which the Nash-MTL setup applies). PyG's QM9 adds RDKit features
(aromaticity, hybridisation, hydrogen count, bond types) from the SDF release; the CSVs carry
only SMILES, whose atom order is not the XYZ order, so those features are **not** used here.
Graphs are built on the fly from padded atoms and positions (see :mod:`repmtl.nets.mpnn`).

Targets (PyG's units, the Nash-MTL / FAMO selection ``[0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11]``
of PyG's QM9): ``mu`` (D), ``alpha`` (a₀³), ``homo``, ``lumo`` (eV), ``r2`` (a₀²), ``zpve``
(eV), ``u0``, ``u``, ``h``, ``g`` (eV, atomisation energies: the molecule's energy minus the
sum of its atoms' reference energies, from the release's ``atomref`` table), ``cv``
(cal mol⁻¹ K⁻¹). Hartree values are converted with 1 Ha = 27.211386246 eV (CODATA 2018, as
PyG). Each target is normalised with the training split's mean and standard deviation; the
loss is the MSE of the normalised target, the metric the MAE in the original units.

Split (Nash-MTL's protocol): a fixed permutation (seed :data:`SPLIT_SEED`, independent of the
run seed), 110,000 train / 10,000 validation / the remaining 10,831 test. Nash-MTL's own
permutation came from PyG's ``shuffle()`` and cannot be reproduced without PyG's processed
file, so the molecules in each split differ from theirs; the sizes are theirs. ``qm9-small``
trains on the first 5,000 molecules of that training split, validates on the first 1,000 of
the validation split and tests on the first 2,000 of the test split (CPU-sized).

The parsed arrays are cached in one ``.npz`` file (loaded with ``allow_pickle=False``) in the
cache folder: ``--option cache_dir=DIR``, else ``$REPMTL_CACHE_DIR``, else ``<out>/.cache/qm9``
under the run's ``--out`` (``BuildOptions.cache_root``), shared by every run there, so a run
writes nothing outside the folder the user chose. Built without any of them (a bare
``BuildOptions()``), the CSVs are parsed and nothing is written. The file name holds a hash of
the CSV files' names, sizes and modification times, so edited CSVs are parsed again.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn
from torch.utils.data import Dataset

from repmtl.benchmarks import (
    Benchmark,
    BuildOptions,
    PlateauSchedule,
    Splits,
    TrainDefaults,
    register_benchmark,
)
from repmtl.extras import missing_extra
from repmtl.metrics.base import StreamingMetric
from repmtl.model import MultiTaskModel
from repmtl.nets.mpnn import MPNNEncoder
from repmtl.tasks import Task

TARGETS = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "u0", "u", "h", "g", "cv")
#: the qm9pack column of each target
COLUMNS = {
    "mu": "Dipole_debye",
    "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au",
    "lumo": "LUMO_au",
    "r2": "R2_bohr2",
    "zpve": "ZPVE_au",
    "u0": "InternalEnergy_0K_au",
    "u": "InternalEnergy_298K_au",
    "h": "Enthalphy_298K_au",  # sic, the package's spelling
    "g": "GibbsFreeEnergy_298K_au",
    "cv": "Heatcapacity_Cv_cal_mol_K",
}
UNITS = {"mu": "D", "alpha": "a0^3", "homo": "eV", "lumo": "eV", "r2": "a0^2", "zpve": "eV",
         "u0": "eV", "u": "eV", "h": "eV", "g": "eV", "cv": "cal/mol/K"}
HARTREE_TO_EV = 27.211386246
#: targets given in Hartree in the release
HARTREE_TARGETS = ("homo", "lumo", "zpve", "u0", "u", "h", "g")
#: atom reference energies (Ha) of the release's atomref table: U0, U (298.15 K), H, G
ATOM_REFERENCE = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063162, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}
ATOMISATION_TARGETS = ("u0", "u", "h", "g")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
ID_COLUMN, COUNT_COLUMN, ELEMENTS_COLUMN, XYZ_COLUMN = "Index", "N_atoms", "Elements", "XYZ_Ang"
REQUIRED_COLUMNS = (ID_COLUMN, COUNT_COLUMN, ELEMENTS_COLUMN, XYZ_COLUMN, *COLUMNS.values())
CSV_PATTERN = re.compile(r"qm9_part(\d+)\.csv")

SPLIT_SEED = 0
SPLIT_SIZES = {"train": 110_000, "val": 10_000}
#: qm9-small uses the first molecules of each split
SMALL_LIMITS = {"train": 5_000, "val": 1_000, "test": 2_000}
CACHE_VERSION = 1
#: ``--option`` keys: cache folder; the split's cut points and seed; the first N molecules of
#: a split to use; the encoder width and its message computation (``factored`` | ``per_edge``)
OPTIONS = ("cache_dir", "train_size", "val_size", "split_seed", "limit_train", "limit_val", "limit_test", "hidden",
           "message")


class QM9FormatError(ValueError):
    """A QM9 CSV (or cache) file does not have the expected content."""


# ---- locating and parsing the CSV files -----------------------------------------------------


def qm9pack_data_folder() -> Path:
    """The ``data`` folder of the installed ``qm9pack`` (found without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("QM9", "qm9pack (its CSV files hold the data set)", "qm9",
                            "or pass --data-root with a folder of qm9_part*.csv files")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def csv_files(folder: Path) -> list[Path]:
    """``qm9_part<k>.csv`` files of ``folder``, ordered by ``k``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"QM9 data folder {folder} does not exist")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CSV_PATTERN.fullmatch(p.name))]
    if not found:
        raise FileNotFoundError(f"no qm9_part<k>.csv files in {folder} (the layout of qm9pack's data folder)")
    return [p for _, p in sorted(found)]


@dataclass(frozen=True)
class QM9Arrays:
    """Every molecule, atoms concatenated: molecule ``m`` owns atoms ``offsets[m]:offsets[m+1]``.

    ``atoms``: atomic numbers (int8); ``positions``: Å (float32, ``(A, 3)``); ``targets``:
    ``(M, 11)`` float64 in the units of :data:`UNITS`, columns in :data:`TARGETS` order;
    ``ids``: the release's molecule index (1-based, gaps where molecules were excluded).
    """

    atoms: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def max_atoms(self) -> int:
        return int(np.diff(self.offsets).max())

    def check(self, source: Path) -> None:
        """Structural consistency (for a cache file read back)."""
        m = len(self.ids)
        ok = (
            self.offsets.shape == (m + 1,) and self.offsets[0] == 0 and self.offsets[-1] == len(self.atoms)
            and bool(np.all(np.diff(self.offsets) > 0)) and self.positions.shape == (len(self.atoms), 3)
            and self.targets.shape == (m, len(TARGETS)) and bool(np.isfinite(self.targets).all())
        )
        if not ok:
            raise QM9FormatError(f"{source} is not a consistent QM9 cache; delete it to rebuild from the CSV files")


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise QM9FormatError(f"{where}: {what} is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise QM9FormatError(f"{where}: {what} is not finite: {text!r}")
    return value


def _elements(text: str, where: str) -> list[str]:
    """``"['C','H','H']"`` -> ``["C", "H", "H"]``."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise QM9FormatError(f"{where}: {ELEMENTS_COLUMN} is not a list: {text[:60]!r}")
    names = [item.strip().strip("'\"") for item in body[1:-1].split(",") if item.strip()]
    unknown = sorted(set(names) - set(ATOMIC_NUMBER))
    if unknown:
        raise QM9FormatError(f"{where}: unknown element(s) {unknown}; QM9 has {list(ATOMIC_NUMBER)}")
    return names


def _coordinates(text: str, count: int, where: str) -> list[float]:
    """``"[[x,y,z],[x,y,z]]"`` -> flat ``[x, y, z, x, y, z]`` (``3 · count`` numbers)."""
    flat = text.replace("[", " ").replace("]", " ").split(",")
    values = [_number(v, XYZ_COLUMN, where) for v in flat if v.strip()]
    if len(values) != 3 * count:
        raise QM9FormatError(f"{where}: {XYZ_COLUMN} holds {len(values)} numbers, expected 3 × {count} atoms")
    return values


def _counted_lines(handle: Iterable[str], advance, every: int = 2000) -> Iterator[str]:
    """Yield ``handle``'s lines, telling ``advance`` the characters read every ``every`` lines."""
    pending = 0
    for number, line in enumerate(handle, start=1):
        pending += len(line)
        if number % every == 0:
            advance(pending)
            pending = 0
        yield line
    advance(pending)


def parse_csv(path: Path, advance=lambda n: None) -> tuple[list[int], list[int], list[float], list[list[float]], list[int]]:
    """One qm9pack CSV -> (atomic numbers, flat coordinates, raw target rows, atom counts, ids).

    Targets are returned as in the file (release units); ``advance(n)`` is told the characters read.
    """
    atoms: list[int] = []
    coordinates: list[float] = []
    targets: list[list[float]] = []
    counts: list[int] = []
    ids: list[int] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(_counted_lines(handle, advance))
        header = next(reader, None)
        if header is None:
            raise QM9FormatError(f"{path} is empty (expected a qm9pack header row)")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise QM9FormatError(f"{path}, row 1 (header): missing column(s) {missing}")
        col = {name: header.index(name) for name in REQUIRED_COLUMNS}
        target_cols = [col[COLUMNS[t]] for t in TARGETS]
        for row_number, row in enumerate(reader, start=2):
            where = f"{path}, row {row_number}"
            if len(row) != len(header):
                raise QM9FormatError(f"{where}: {len(row)} fields, the header has {len(header)}")
            ident = _number(row[col[ID_COLUMN]], ID_COLUMN, where)
            count = _number(row[col[COUNT_COLUMN]], COUNT_COLUMN, where)
            if count != int(count) or count < 1 or ident != int(ident):
                raise QM9FormatError(f"{where}: {COUNT_COLUMN} and {ID_COLUMN} must be positive integers")
            names = _elements(row[col[ELEMENTS_COLUMN]], where)
            if len(names) != count:
                raise QM9FormatError(f"{where}: {COUNT_COLUMN} is {int(count)} but {ELEMENTS_COLUMN} lists {len(names)}")
            coordinates += _coordinates(row[col[XYZ_COLUMN]], len(names), where)
            atoms += [ATOMIC_NUMBER[n] for n in names]
            values = [_number(row[c], COLUMNS[t], where) for t, c in zip(TARGETS, target_cols, strict=True)]
            targets.append(values)
            counts.append(len(names))
            ids.append(int(ident))
    if not ids:
        raise QM9FormatError(f"{path} holds a header but no molecule")
    return atoms, coordinates, targets, counts, ids


def to_pyg_units(raw: np.ndarray, atoms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Release units -> PyG's: Hartree targets to eV, and U0, U, H, G to atomisation energies
    ``E − Σ_atoms E_ref(element)`` (then to eV)."""
    out = raw.astype(np.float64, copy=True)
    number_to_symbol = {z: s for s, z in ATOMIC_NUMBER.items()}
    reference = np.zeros((max(ATOMIC_NUMBER.values()) + 1, len(ATOMISATION_TARGETS)))
    for z, symbol in number_to_symbol.items():
        reference[z] = ATOM_REFERENCE[symbol]
    per_atom = reference[atoms.astype(np.int64)]
    per_molecule = np.add.reduceat(per_atom, offsets[:-1], axis=0)
    columns = [TARGETS.index(t) for t in ATOMISATION_TARGETS]
    out[:, columns] -= per_molecule
    out[:, [TARGETS.index(t) for t in HARTREE_TARGETS]] *= HARTREE_TO_EV
    return out


def build_arrays(files: list[Path], progress: bool = True, console: Console | None = None) -> QM9Arrays:
    """Parse every CSV (with a progress bar) into :class:`QM9Arrays`, molecules sorted by id."""
    atoms: list[int] = []
    coordinates: list[float] = []
    raw: list[list[float]] = []
    counts: list[int] = []
    ids: list[int] = []
    sources: list[Path] = []
    columns = (TextColumn("[bold]parsing QM9 {task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=True, disable=not progress) as bar:
        for path in files:
            task = bar.add_task(path.name, total=path.stat().st_size)
            parsed = parse_csv(path, advance=lambda n, task=task: bar.advance(task, n))
            bar.update(task, completed=path.stat().st_size)
            for part, values in zip((atoms, coordinates, raw, counts, ids), parsed, strict=True):
                part += values
            sources += [path] * len(parsed[4])
    id_array = np.asarray(ids, dtype=np.int64)
    order = np.argsort(id_array, kind="stable")
    sorted_ids = id_array[order]
    duplicate = np.flatnonzero(np.diff(sorted_ids) == 0)
    if len(duplicate):
        first, second = order[duplicate[0]], order[duplicate[0] + 1]
        raise QM9FormatError(
            f"molecule {ID_COLUMN} {sorted_ids[duplicate[0]]} appears twice ({sources[first]} and {sources[second]})"
        )
    count_array = np.asarray(counts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(count_array)])
    atom_array = np.asarray(atoms, dtype=np.int8)
    position_array = np.asarray(coordinates, dtype=np.float32).reshape(-1, 3)
    # reorder molecules by id, atoms with them
    atom_order = np.concatenate([np.arange(offsets[m], offsets[m + 1]) for m in order])
    new_offsets = np.concatenate([[0], np.cumsum(count_array[order])])
    atom_array, position_array = atom_array[atom_order], position_array[atom_order]
    targets = to_pyg_units(np.asarray(raw, dtype=np.float64)[order], atom_array, new_offsets)
    return QM9Arrays(atom_array, position_array, new_offsets, targets, sorted_ids)


# ---- the cache --------------------------------------------------------------------------------


#: environment variable naming a cache folder shared across output folders
CACHE_ENV = "REPMTL_CACHE_DIR"


def cache_dir_for(option: str | None, cache_root: Path | None) -> Path | None:
    """Where the parsed data set is cached: ``option`` (``--option cache_dir``), else
    ``$REPMTL_CACHE_DIR``, else ``<cache_root>/qm9`` (the run's ``<out>/.cache``), else ``None``
    (no cache: nothing is written)."""
    if option:
        return Path(option)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(cache_root) / "qm9" if cache_root is not None else None


def cache_path(files: list[Path], cache_dir: Path) -> Path:
    """``qm9-v<version>-<hash of the files' names, sizes and mtimes>.npz`` in ``cache_dir``."""
    digest = hashlib.sha1(str(CACHE_VERSION).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return cache_dir / f"qm9-v{CACHE_VERSION}-{digest.hexdigest()[:16]}.npz"


def save_cache(arrays: QM9Arrays, path: Path) -> None:
    """Write atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, atoms=arrays.atoms, positions=arrays.positions, offsets=arrays.offsets,
                     targets=arrays.targets, ids=arrays.ids)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_cache(path: Path) -> QM9Arrays:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = QM9Arrays(data["atoms"], data["positions"], data["offsets"], data["targets"], data["ids"])
    except (OSError, KeyError, ValueError) as exc:
        raise QM9FormatError(f"cannot read the QM9 cache {path} ({exc}); delete it to rebuild") from exc
    arrays.check(path)
    return arrays


def load_arrays(
    data_root: Path | None = None, cache_dir: Path | None = None, progress: bool = True, console: Console | None = None
) -> QM9Arrays:
    """The whole data set: from the cache when it matches the CSV files, else parsed (and cached).

    ``data_root``: a folder of ``qm9_part*.csv`` (default: qm9pack's data folder);
    ``cache_dir``: where the cache file lives (``None``: parse and write nothing).
    """
    files = csv_files(Path(data_root) if data_root is not None else qm9pack_data_folder())
    if cache_dir is None:
        return build_arrays(files, progress=progress, console=console)
    path = cache_path(files, Path(cache_dir))
    if path.exists():
        return load_cache(path)
    arrays = build_arrays(files, progress=progress, console=console)
    save_cache(arrays, path)
    return arrays


# ---- split, normalisation, data set -----------------------------------------------------------


def split_indices(n: int, train: int, val: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """A fixed permutation of ``range(n)`` cut into ``train`` / ``val`` / the rest (test)."""
    if train < 1 or val < 1:
        raise ValueError(f"QM9 split sizes must be positive, got train_size={train}, val_size={val}")
    if n - train - val < 1:
        raise ValueError(f"QM9 has {n} molecules: too few for train_size={train} and val_size={val} plus a test split")
    order = np.random.default_rng(seed).permutation(n)
    return {"train": order[:train], "val": order[train : train + val], "test": order[train + val :]}


def limit_split(split: Mapping[str, np.ndarray], limits: Mapping[str, int | None]) -> dict[str, np.ndarray]:
    """The first ``limits[name]`` molecules of each part (``None``: all of it)."""
    out = {}
    for name, indices in split.items():
        limit = limits.get(name)
        if limit is not None and not 1 <= limit <= len(indices):
            raise ValueError(f"QM9 option limit_{name}={limit}: the {name} split holds {len(indices)} molecules")
        out[name] = indices if limit is None else indices[:limit]
    return out


@dataclass(frozen=True)
class Normalizer:
    """Per-target mean and standard deviation (of the training split)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, targets: np.ndarray) -> Normalizer:
        mean, std = targets.mean(axis=0), targets.std(axis=0)
        flat = [t for t, s in zip(TARGETS, std, strict=True) if not s > 0]
        if flat:
            raise ValueError(f"QM9 targets {flat} are constant on the training split: cannot normalise")
        return cls(mean, std)


class QM9Dataset(Dataset):
    """Items ``((atoms (P,) int64, positions (P, 3) float32), {target: normalised value})``,
    molecules padded to ``P`` atoms with atomic number 0."""

    def __init__(self, arrays: QM9Arrays, indices: np.ndarray, normalizer: Normalizer, width: int) -> None:
        self.arrays, self.indices, self.width = arrays, np.asarray(indices), width
        normalised = (arrays.targets[self.indices] - normalizer.mean) / normalizer.std
        self.targets = torch.from_numpy(normalised.astype(np.float32))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        m = int(self.indices[item])
        start, end = self.arrays.offsets[m], self.arrays.offsets[m + 1]
        atoms = torch.zeros(self.width, dtype=torch.int64)
        positions = torch.zeros(self.width, 3, dtype=torch.float32)
        atoms[: end - start] = torch.from_numpy(self.arrays.atoms[start:end].astype(np.int64))
        positions[: end - start] = torch.from_numpy(self.arrays.positions[start:end])
        row = self.targets[item]
        return (atoms, positions), {t: row[k] for k, t in enumerate(TARGETS)}


# ---- tasks: loss and metric ----------------------------------------------------------------------


def scalar_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of a ``(B, 1)`` head output against ``(B,)`` normalised targets."""
    if prediction.shape != (*target.shape, 1):
        raise ValueError(f"expected a (B, 1) prediction for (B,) targets, got {tuple(prediction.shape)} and {tuple(target.shape)}")
    return nn.functional.mse_loss(prediction.squeeze(-1), target)


class ScaledMAE(StreamingMetric):
    """``mae = std · mean |ŷ − y|`` on normalised values: the MAE in the target's original units."""

    lower_is_better: ClassVar[dict[str, bool]] = {"mae": True}

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)
        self.reset()

    def reset(self) -> None:
        self._sums: torch.Tensor | None = None  # [Σ |error|, count] in float64

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        if prediction.shape != (*target.shape, 1):
            raise ValueError(f"ScaledMAE expects (B, 1) predictions for (B,) targets, got {tuple(prediction.shape)} and {tuple(target.shape)}")
        error = (prediction.detach().squeeze(-1).double() - target.detach().double()).abs()
        sums = torch.stack([error.sum(), torch.tensor(float(error.numel()), dtype=torch.float64, device=error.device)])
        self._sums = sums if self._sums is None else self._sums + sums

    def compute(self) -> dict[str, float]:
        if self._sums is None:
            raise RuntimeError("ScaledMAE.compute() called before any update()")
        total, count = self._sums.tolist()
        return {"mae": self.scale * total / count}


# ---- the benchmark ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QM9Setup:
    """What a preset builds from its options: the arrays, the split in use and its normaliser."""

    arrays: QM9Arrays
    split: dict[str, np.ndarray]
    normalizer: Normalizer
    hidden: int
    message: str


def _int_option(extra: Mapping[str, object], key: str, default: int | None) -> int | None:
    value = extra.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"QM9 option {key}={value!r}: expected an integer")
    return value


@lru_cache(maxsize=2)
def _arrays(data_root: Path | None, cache_dir: Path | None) -> QM9Arrays:
    return load_arrays(data_root, cache_dir)


def setup_from_options(options: BuildOptions, limits: Mapping[str, int | None]) -> QM9Setup:
    """Read the preset's options (see :data:`OPTIONS`); ``limits`` are the preset's defaults."""
    extra = options.extra
    cache = extra.get("cache_dir")
    if cache is not None and not isinstance(cache, str):
        raise TypeError(f"QM9 option cache_dir={cache!r}: expected a folder path")
    arrays = _arrays(options.data_root, cache_dir_for(cache, options.cache_root))
    split = split_indices(
        len(arrays),
        _int_option(extra, "train_size", SPLIT_SIZES["train"]),
        _int_option(extra, "val_size", SPLIT_SIZES["val"]),
        _int_option(extra, "split_seed", SPLIT_SEED),
    )
    split = limit_split(split, {name: _int_option(extra, f"limit_{name}", limits.get(name)) for name in split})
    hidden = _int_option(extra, "hidden", 64)
    if hidden < 1:
        raise ValueError(f"QM9 option hidden={hidden}: must be positive")
    message = extra.get("message", "factored")
    if message not in MPNNEncoder.MESSAGES:
        raise ValueError(f"QM9 option message={message!r}: expected one of {MPNNEncoder.MESSAGES}")
    return QM9Setup(arrays, split, Normalizer.fit(arrays.targets[split["train"]]), hidden, message)


def qm9_tasks_from(setup: QM9Setup) -> list[Task]:
    return [Task(t, scalar_mse, partial(ScaledMAE, float(setup.normalizer.std[k]))) for k, t in enumerate(TARGETS)]


def qm9_splits_from(setup: QM9Setup) -> Splits:
    width = setup.arrays.max_atoms
    made = {name: QM9Dataset(setup.arrays, idx, setup.normalizer, width) for name, idx in setup.split.items()}
    return Splits(made["train"], made["val"], made["test"])


def qm9_model(hidden: int, tasks: list[Task], message: str = "factored") -> MultiTaskModel:
    """The MPNN encoder with one linear head ``Z -> 1`` per target."""
    encoder = MPNNEncoder(hidden=hidden, message=message)
    return MultiTaskModel(encoder, {t.name: nn.Linear(encoder.out_features, 1) for t in tasks})


def _model_from(setup: QM9Setup, tasks: list[Task]) -> MultiTaskModel:
    return qm9_model(setup.hidden, tasks, setup.message)


def _preset(name: str, description: str, limits: Mapping[str, int | None], defaults: TrainDefaults) -> Benchmark:
    return Benchmark(
        name=name,
        description=description,
        tasks=lambda options: qm9_tasks_from(setup_from_options(options, limits)),
        splits=lambda options: qm9_splits_from(setup_from_options(options, limits)),
        model=lambda options, tasks: _model_from(setup_from_options(options, limits), tasks),
        defaults=defaults,
        options=OPTIONS,
    )


#: The papers' schedule: ``ReduceLROnPlateau(mode="min", factor=0.7, patience=5, min_lr=1e-5)``
#: stepped every epoch on the validation Δm (Navon et al., ICML 2022, §6.1 and their
#: ``experiments/quantum_chemistry/trainer.py``; FAMO, Liu et al., NeurIPS 2023, uses the same
#: trainer). Our selection score is Δp_task on validation, whose negation is that Δm.
PAPERS_PLATEAU = PlateauSchedule(factor=0.7, patience=5, min_lr=1e-5)

#: Nash-MTL / FAMO: 300 epochs, Adam 1e-3, batch 120, the plateau schedule above
QM9 = register_benchmark(_preset(
    "qm9",
    "QM9 (qm9pack CSVs): 11 molecular property regressions, MPNN encoder, 110k/10k/10,831 split",
    {},
    TrainDefaults(epochs=300, batch_size=120, lr=1e-3, eval_batch_size=500, lr_plateau=PAPERS_PLATEAU),
))
#: the same protocol on a CPU-sized subset (the schedule only acts after 6 epochs without progress)
QM9_SMALL = register_benchmark(_preset(
    "qm9-small",
    "QM9 on CPU: the first 5k train / 1k val / 2k test molecules of the qm9 split, same tasks and MPNN",
    SMALL_LIMITS,
    TrainDefaults(epochs=5, batch_size=120, lr=1e-3, eval_batch_size=500, lr_plateau=PAPERS_PLATEAU),
))
