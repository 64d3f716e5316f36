"""Small CSV files in qm9pack's format, written by the tests themselves.

The first three molecules (CH4, NH3, H2O) are copied verbatim from the QM9 release as qm9pack
ships it, so their targets can be checked by hand; the others are made up (random geometry,
made-up properties) to give the splits and the network something to work with.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HEADER = [
    "XYZ_file", "Index", "SMILES", "InChi", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang", "Mulliken_pop",
    "Harmonic_Freq_cmi", "RotA_GHz", "RotB_GHz", "RotC_GHz", "Dipole_debye", "Polarizability_bohr3", "HOMO_au",
    "LUMO_au", "HOMO_LUMO_gap_au", "R2_bohr2", "ZPVE_au", "InternalEnergy_0K_au", "InternalEnergy_298K_au",
    "Enthalphy_298K_au", "GibbsFreeEnergy_298K_au", "Heatcapacity_Cv_cal_mol_K",
]

#: (index, elements, xyz, [mu, alpha, homo, lumo, gap, r2, zpve, U0, U, H, G, cv]) from the release
REAL = [
    (1, ["C", "H", "H", "H", "H"],
     [[-0.0126981359, 1.0858041578, 0.0080009958], [0.002150416, -0.0060313176, 0.0019761204],
      [1.0117308433, 1.4637511618, 0.0002765748], [-0.540815069, 1.4475266138, -0.8766437152],
      [-0.5238136345, 1.4379326443, 0.9063972942]],
     ["0.", "13.21", "-0.3877", "0.1171", "0.5048", "35.3641", "0.044749", "-40.47893", "-40.476062",
      "-40.475117", "-40.498597", "6.469"]),
    (2, ["N", "H", "H", "H"],
     [[-0.0404260543, 1.0241077531, 0.0625637998], [0.0172574639, 0.0125452063, -0.0273771593],
      [0.9157893661, 1.3587451948, -0.0287577581], [-0.5202777357, 1.3435321258, -0.7755426124]],
     ["1.6256", "9.46", "-0.257", "0.0829", "0.3399", "26.1563", "0.034358", "-56.525887", "-56.523026",
      "-56.522082", "-56.544961", "6.316"]),
    (3, ["O", "H", "H"],
     [[-0.0343604951, 0.9775395708, 0.0076015923], [0.0647664923, 0.0205721989, 0.0015346341],
      [0.8717903737, 1.3007924048, 0.0006931336]],
     ["1.8511", "6.31", "-0.2928", "0.0687", "0.3615", "19.0002", "0.021375", "-76.404702", "-76.401867",
      "-76.400922", "-76.422349", "6.002"]),
]


def row(index: int, elements: list[str], xyz, properties: list[str]) -> list[str]:
    counts = [elements.count(e) for e in ("H", "C", "N", "O", "F")]
    coords = "[" + ",".join("[" + ",".join(repr(float(v)) for v in atom) + "]" for atom in xyz) + "]"
    return [f"dsgdb9nsd_{index:06d}.xyz", str(index), "C", "InChI=1S/x", str(len(elements)),
            "[" + ",".join(map(str, counts)) + "]", "[" + ",".join(f"'{e}'" for e in elements) + "]", coords,
            "[" + ",".join(["0.0"] * len(elements)) + "]", "[1.0,2.0]", "1.0", "1.0", "1.0", *properties]


def made_up(index: int, rng: np.random.Generator) -> list[str]:
    heavy = list(rng.choice(["C", "N", "O", "F"], size=int(rng.integers(1, 5))))
    elements = heavy + ["H"] * int(rng.integers(0, 5))
    xyz = rng.normal(scale=1.5, size=(len(elements), 3)).round(6)
    props = [rng.uniform(0, 5), rng.uniform(5, 90), rng.uniform(-0.4, -0.2), rng.uniform(-0.1, 0.1),
             rng.uniform(0.1, 0.5), rng.uniform(20, 1000), rng.uniform(0.01, 0.2)]
    energy = rng.uniform(-400, -40)
    props += [energy, energy + 0.003, energy + 0.004, energy - 0.03, rng.uniform(6, 40)]
    return row(index, elements, xyz.tolist(), [f"{v:.6f}" for v in props])


def write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header or HEADER)
        writer.writerows(rows)
    return path


def write_dataset(folder: Path, n_made_up: int = 17, seed: int = 0) -> Path:
    """``qm9_part1.csv`` (the three real molecules, then made-up ones in shuffled id order) and
    ``qm9_part2.csv`` (more made-up ones): ``3 + n_made_up`` molecules in all."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    made = [made_up(10 + k, rng) for k in range(n_made_up)]
    half = len(made) // 2
    first = [row(*m) for m in REAL] + made[:half][::-1]
    write_csv(folder / "qm9_part1.csv", first)
    write_csv(folder / "qm9_part2.csv", made[half:])
    return folder
