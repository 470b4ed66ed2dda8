"""Are the cluster amons' GFN2-xTB energies local enough to predict the crystal? (issue 13)

Fits the single-point energies of diamond silicon's cluster amons
(:func:`amondask.amons.periodic.periodic_amons`, ``--shells``) by least squares to a sum of
group energies, one per kind of Si (with 0..4 H atoms) plus one per H atom, and compares the
group energy of a Si with four Si neighbours (the bulk-like group) with tblite's periodic
energy per atom of the 64-atom cell. The residuals say how additive (local) the cluster
energies are; the difference says what no local model trained on these clusters can recover.

    python3 benchmarks/periodic_additivity.py

Writes ``benchmarks/results/periodic_additivity.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qm9_sample import machine_record, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shells", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/periodic_additivity.json"
    )
    args = parser.parse_args()
    load_start = os.getloadavg()
    from amondask.amons.periodic import PeriodicAmonSettings, periodic_amons
    from amondask.chem import read_molecules
    from amondask.chem.periodic import cell_of
    from amondask.label.xtb import XTBLabeler
    from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE

    cells = read_molecules(ROOT / "examples/periodic/crystals.extxyz", on_error="raise")
    silicon = next(m for m in cells.molecules if m.id == "si64")
    labeler = XTBLabeler()
    lattice, pbc = cell_of(silicon)
    cell_energy, _ = labeler.single_point(
        silicon.numbers, silicon.positions, lattice_angstrom=lattice, pbc=pbc
    )
    bulk = cell_energy * KCAL_PER_MOL_PER_HARTREE / len(silicon.numbers)
    rows = []
    for amon in periodic_amons(silicon, PeriodicAmonSettings(shells=args.shells)):
        molecule = amon.conformers[0].molecule
        numbers, positions = molecule.numbers, molecule.positions
        groups = [0] * 5  # Si atoms with 0..4 H neighbours
        hydrogens_on = np.zeros(len(numbers), dtype=int)
        for i, j, _ in molecule.bonds:
            if numbers[i] == 1:
                hydrogens_on[j] += 1
            elif numbers[j] == 1:
                hydrogens_on[i] += 1
        for atom in np.flatnonzero(numbers == 14):
            groups[hydrogens_on[atom]] += 1
        started = time.perf_counter()
        energy, _ = labeler.single_point(numbers, positions)
        rows.append(
            {
                "formula": f"Si{int((numbers == 14).sum())}H{int((numbers == 1).sum())}",
                "si_groups_by_h": groups,
                "n_h": int((numbers == 1).sum()),
                "energy_kcal_mol": energy * KCAL_PER_MOL_PER_HARTREE,
                "seconds": time.perf_counter() - started,
            }
        )
    design = np.array([r["si_groups_by_h"] + [r["n_h"]] for r in rows], dtype=float)
    target = np.array([r["energy_kcal_mol"] for r in rows])
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    for row, residual in zip(rows, design @ coefficients - target, strict=True):
        row["fit_residual_kcal_mol"] = float(residual)
    bulk_like = float(coefficients[0])
    result = {
        "shells": args.shells,
        "cell_energy_per_atom_kcal_mol": bulk,
        "bulk_like_group_kcal_mol": bulk_like,
        "group_minus_cell_kcal_mol": bulk_like - bulk,
        "max_abs_residual_kcal_mol": float(np.abs(design @ coefficients - target).max()),
        "clusters": rows,
        "machine": machine_record(1, load_start),
    }
    lines = [
        f"# Group additivity of diamond silicon's cluster amons (GFN2-xTB, shells {args.shells})",
        "",
        "| cluster | Si with 0/1/2/3/4 H | energy (kcal/mol) | fit residual (kcal/mol) | seconds |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['formula']} | {'/'.join(map(str, row['si_groups_by_h']))} | "
            f"{row['energy_kcal_mol']:.2f} | {row['fit_residual_kcal_mol']:.2f} | "
            f"{row['seconds']:.1f} |"
        )
    lines += [
        "",
        f"Bulk-like Si group (four Si neighbours): {bulk_like:.2f} kcal/mol; periodic cell per "
        f"atom: {bulk:.2f}; difference {bulk_like - bulk:.2f} kcal/mol per atom. Largest fit "
        f"residual {result['max_abs_residual_kcal_mol']:.2f} kcal/mol.",
        "",
        "Command: `python3 benchmarks/periodic_additivity.py`.",
    ]
    write_result(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
