"""QM9 loader: parsing qm9pack-format CSVs, units by hand, errors naming file and row, the
cache, the split and the normalisation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from repmtl.data import qm9
from tests.qm9._fixtures import HEADER, REAL, row, write_csv, write_dataset

HA = 27.211386246  # eV per Hartree (CODATA 2018)
# atomref of the QM9 release (Ramakrishnan et al. 2014), Hartree: U0, U, H, G
REF = {"H": (-0.500273, -0.498857, -0.497912, -0.510927), "C": (-37.846772, -37.845355, -37.844411, -37.861317),
       "N": (-54.583861, -54.582445, -54.581501, -54.598897), "O": (-75.064579, -75.063162, -75.062219, -75.079532)}


@pytest.fixture
def folder(tmp_path):
    return write_dataset(tmp_path / "csv")


def test_parses_every_molecule_sorted_by_id(folder):
    arrays = qm9.build_arrays(qm9.csv_files(folder), progress=False)
    assert len(arrays) == 20
    assert list(arrays.ids) == [1, 2, 3, *range(10, 27)]  # part1 holds made-up ids in reverse order
    counts = np.diff(arrays.offsets)
    assert list(counts[:3]) == [5, 4, 3]
    assert counts.sum() == len(arrays.atoms) == len(arrays.positions)
    assert list(arrays.atoms[:5]) == [6, 1, 1, 1, 1] and list(arrays.atoms[5:9]) == [7, 1, 1, 1]
    np.testing.assert_allclose(arrays.positions[9:12], np.array(REAL[2][2], dtype=np.float32))
    assert arrays.max_atoms == counts.max()


@pytest.mark.parametrize("position", [0, 1, 2])
def test_targets_by_hand(folder, position):
    """PyG's units: Hartree -> eV, U0/U/H/G minus the atoms' reference energies."""
    arrays = qm9.build_arrays(qm9.csv_files(folder), progress=False)
    _, elements, _, raw = REAL[position]
    mu, alpha, homo, lumo, _gap, r2, zpve, u0, u, h, g, cv = (float(v) for v in raw)
    refs = [sum(REF[e][k] for e in elements) for k in range(4)]
    expected = [mu, alpha, homo * HA, lumo * HA, r2, zpve * HA,
                (u0 - refs[0]) * HA, (u - refs[1]) * HA, (h - refs[2]) * HA, (g - refs[3]) * HA, cv]
    np.testing.assert_allclose(arrays.targets[position], expected, rtol=1e-12, atol=1e-12)
    if position == 0:  # methane's U0 atomisation energy, as PyG's QM9 lists it (−396.0 kcal/mol)
        assert arrays.targets[0, qm9.TARGETS.index("u0")] == pytest.approx(-17.1722, abs=1e-4)


def _broken(tmp_path, edit):
    rows = [row(*m) for m in REAL]
    header = list(HEADER)
    edit(header, rows)
    path = write_csv(tmp_path / "qm9_part1.csv", rows, header)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h, r: h.remove("HOMO_au") or [x.pop(15) for x in r], r"row 1 \(header\): missing column\(s\) \['HOMO_au'\]"),
        (lambda h, r: r[1].__setitem__(15, "n/a"), r"row 3: HOMO_au is not a number: 'n/a'"),
        (lambda h, r: r[2].__setitem__(15, "nan"), r"row 4: HOMO_au is not finite"),
        (lambda h, r: r[0].__setitem__(4, "6"), r"row 2: N_atoms is 6 but Elements lists 5"),
        (lambda h, r: r[1].__setitem__(6, "['N','H','H','Cl']"), r"row 3: unknown element\(s\) \['Cl'\]"),
        (lambda h, r: r[2].__setitem__(7, "[[0.1,0.2,0.3],[0.1,0.2,0.3],[0.1,0.2]]"), r"row 4: XYZ_Ang holds 8 numbers"),
        (lambda h, r: r[0].pop(), r"row 2: 24 fields, the header has 25"),
    ],
)
def test_malformed_csv_names_file_and_row(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(qm9.QM9FormatError, match=message) as info:
        qm9.build_arrays([path], progress=False)
    assert str(path) in str(info.value)


def test_duplicate_molecule_names_both_files(tmp_path):
    write_csv(tmp_path / "qm9_part1.csv", [row(*m) for m in REAL])
    write_csv(tmp_path / "qm9_part2.csv", [row(*REAL[1])])
    with pytest.raises(qm9.QM9FormatError, match="Index 2 appears twice.*qm9_part1.csv.*qm9_part2.csv"):
        qm9.build_arrays(qm9.csv_files(tmp_path), progress=False)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        qm9.csv_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no qm9_part<k>.csv"):
        qm9.csv_files(tmp_path)


def test_missing_qm9pack_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install \"repmtl\[qm9\]\""):
        qm9.load_arrays(None)


def test_cache_is_written_once_and_reused(folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = qm9.load_arrays(folder, cache, progress=False)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"

    def no_parsing(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(qm9, "build_arrays", no_parsing)
    again = qm9.load_arrays(folder, cache, progress=False)
    for name in ("atoms", "positions", "offsets", "targets", "ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    # an edited CSV is parsed again (the cache key holds sizes and mtimes)
    with open(folder / "qm9_part2.csv", "a") as handle:
        handle.write("")
        handle.write(",".join(f'"{v}"' for v in row(99, ["C"], [[0.0, 0.0, 0.0]], REAL[0][3])) + "\n")
    with pytest.raises(AssertionError, match="the cache should have been used"):
        qm9.load_arrays(folder, cache, progress=False)


def test_corrupt_cache_is_a_clear_error(folder, tmp_path):
    cache = tmp_path / "cache"
    qm9.load_arrays(folder, cache, progress=False)
    (path,) = cache.iterdir()
    path.write_bytes(b"not a zip")
    with pytest.raises(qm9.QM9FormatError, match="delete it to rebuild"):
        qm9.load_arrays(folder, cache, progress=False)


def test_split_is_deterministic_disjoint_and_complete():
    a, b = qm9.split_indices(1000, 700, 100), qm9.split_indices(1000, 700, 100)
    other = qm9.split_indices(1000, 700, 100, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train"], other["train"])
    assert [len(a[k]) for k in ("train", "val", "test")] == [700, 100, 200]
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(1000))
    limited = qm9.limit_split(a, {"train": 50, "test": 20})
    assert np.array_equal(limited["train"], a["train"][:50]) and np.array_equal(limited["val"], a["val"])
    with pytest.raises(ValueError, match="too few"):
        qm9.split_indices(800, 700, 100)
    with pytest.raises(ValueError, match="limit_val=101"):
        qm9.limit_split(a, {"val": 101})


def test_nash_mtl_split_sizes_on_the_release_count():
    split = qm9.split_indices(130_831, train=110_000, val=10_000)
    assert [len(split[k]) for k in ("train", "val", "test")] == [110_000, 10_000, 10_831]


def test_normalisation_from_training_split_and_mae_in_original_units(folder):
    arrays = qm9.build_arrays(qm9.csv_files(folder), progress=False)
    split = qm9.split_indices(len(arrays), 12, 4)
    norm = qm9.Normalizer.fit(arrays.targets[split["train"]])
    np.testing.assert_allclose(norm.mean, arrays.targets[split["train"]].mean(0))
    train = qm9.QM9Dataset(arrays, split["train"], norm, arrays.max_atoms)
    test = qm9.QM9Dataset(arrays, split["test"], norm, arrays.max_atoms)
    assert torch.allclose(train.targets.double().mean(0), torch.zeros(11, dtype=torch.float64), atol=1e-6)
    # a prediction 0 (the training mean) has MAE |y − mean| in original units
    k = qm9.TARGETS.index("u0")
    metric = qm9.ScaledMAE(norm.std[k])
    metric.update(torch.zeros(len(test), 1), test.targets[:, k])
    expected = np.abs(arrays.targets[split["test"], k] - norm.mean[k]).mean()
    assert metric.compute()["mae"] == pytest.approx(expected, rel=1e-5)


def test_items_are_padded_molecules(folder):
    arrays = qm9.build_arrays(qm9.csv_files(folder), progress=False)
    norm = qm9.Normalizer.fit(arrays.targets)
    data = qm9.QM9Dataset(arrays, np.arange(len(arrays)), norm, width=arrays.max_atoms)
    (atoms, positions), targets = data[2]  # water
    assert atoms.shape == (arrays.max_atoms,) and positions.shape == (arrays.max_atoms, 3)
    assert atoms[:3].tolist() == [8, 1, 1] and atoms[3:].eq(0).all() and positions[3:].eq(0).all()
    assert set(targets) == set(qm9.TARGETS)
    assert targets["cv"].item() == pytest.approx((6.002 - norm.mean[-1]) / norm.std[-1], rel=1e-5)


def test_constant_target_cannot_be_normalised():
    targets = np.ones((5, 11))
    targets[:, :10] = np.random.default_rng(0).normal(size=(5, 10))
    with pytest.raises(ValueError, match=r"\['cv'\] are constant"):
        qm9.Normalizer.fit(targets)


def test_cache_folder_is_the_option_else_the_env_else_under_out(monkeypatch, tmp_path):
    monkeypatch.delenv(qm9.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # not used: nothing outside --out
    assert qm9.cache_dir_for(None, tmp_path / "out" / ".cache") == tmp_path / "out" / ".cache" / "qm9"
    assert qm9.cache_dir_for(None, None) is None
    monkeypatch.setenv(qm9.CACHE_ENV, str(tmp_path / "mine"))
    assert qm9.cache_dir_for(None, tmp_path / "out" / ".cache") == tmp_path / "mine"
    assert qm9.cache_dir_for(str(tmp_path / "explicit"), tmp_path / "out") == tmp_path / "explicit"


def test_no_cache_folder_parses_and_writes_nothing(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    arrays = qm9.load_arrays(folder, None, progress=False)
    assert len(arrays) == 20 and sorted(tmp_path.rglob("*")) == before
