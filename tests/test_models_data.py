"""Shared data for the tests of amondask.models (imported by tests/test_models_*.py).

The first QM9 records (QM9 numbers them by size) hold all molecules with <= 6 heavy atoms; the
energies are QM9's U0 (hartree, B3LYP/6-31G(2df,p)).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


@functools.lru_cache(maxsize=1)
def qm9_small(max_heavy_atoms: int = 6) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """QM9 molecules with <= ``max_heavy_atoms`` heavy atoms (from the first 900 records):
    ([(numbers, positions angstrom)], U0 hartree)."""
    pandas = pytest.importorskip("pandas")
    qm9pack = pytest.importorskip("qm9pack")
    path = Path(qm9pack.__file__).parent / "data" / "qm9_part1.csv"
    table = pandas.read_csv(
        path, nrows=900, usecols=["Index", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
    ).sort_values("Index")
    molecules, energies = [], []
    for elements, xyz, energy in zip(
        table.Elements, table.XYZ_Ang, table.InternalEnergy_0K_au, strict=True
    ):
        numbers = np.array([SYMBOLS[s] for s in ast.literal_eval(elements)], dtype=np.int64)
        if int(np.sum(numbers > 1)) > max_heavy_atoms:
            continue
        positions = np.array(ast.literal_eval(xyz), dtype=np.float64)
        molecules.append((numbers, positions))
        energies.append(float(energy))
    return molecules, np.asarray(energies)


def qm9_split(n_train: int, n_test: int, seed: int = 0):
    """A seeded random split of :func:`qm9_small`: (train molecules, train U0, test molecules,
    test U0)."""
    molecules, energies = qm9_small()
    order = np.random.default_rng(seed).permutation(len(molecules))
    train, test = order[:n_train], order[n_train : n_train + n_test]
    return (
        [molecules[i] for i in train],
        energies[train],
        [molecules[i] for i in test],
        energies[test],
    )
