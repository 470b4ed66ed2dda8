"""Periodic queries: a crystal or a 2D sheet given as the atoms of one cell and its lattice.

A periodic query is a :class:`~amondask.chem.Molecule` with the atoms of one cell (positions in
angstrom), no bonds (its bonds cross the cell's faces, which an RDKit graph cannot hold), and two
metadata fields: ``lattice``, the three cell vectors as 9 numbers in angstrom (row by row, as in
an extended-XYZ ``Lattice=`` field), and ``pbc``, three of ``T``/``F`` for the periodic
directions (a sheet: ``T T F``). This module holds what every stage needs of the cell: the
lattice, the images of the atoms within a distance of the cell (for a local representation
such as aSLATM), and the bonded neighbours across the faces (for the cluster amons).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from rdkit import Chem
from scipy.spatial import cKDTree

LATTICE_KEY = "lattice"
PBC_KEY = "pbc"


def is_periodic(molecule: Any) -> bool:
    """True for a Molecule (or anything with ``metadata``) that carries a lattice."""
    metadata = getattr(molecule, "metadata", None) or {}
    return LATTICE_KEY in metadata


def parse_lattice(text: str) -> np.ndarray:
    """(3, 3) cell vectors (angstrom, one per row) from 9 numbers separated by blanks."""
    values = [float(v) for v in str(text).replace(",", " ").split()]
    if len(values) != 9 or not np.all(np.isfinite(values)):
        raise ValueError(f"a lattice is 9 finite numbers (3 cell vectors), not {text!r}")
    lattice = np.array(values, dtype=np.float64).reshape(3, 3)
    return lattice


def parse_pbc(text: str | None) -> np.ndarray:
    """(3,) bool periodic directions from ``"T T T"``-like text (None: all periodic)."""
    if text is None:
        return np.ones(3, dtype=bool)
    flags = str(text).replace(",", " ").split()
    truth = {"t": True, "true": True, "1": True, "f": False, "false": False, "0": False}
    if len(flags) != 3 or any(flag.lower() not in truth for flag in flags):
        raise ValueError(f"pbc is three of T/F (e.g. 'T T F' for a sheet), not {text!r}")
    return np.array([truth[flag.lower()] for flag in flags], dtype=bool)


def cell_metadata(lattice: np.ndarray, pbc: np.ndarray) -> dict[str, str]:
    """The metadata fields of a periodic query (see the module doc)."""
    return {
        LATTICE_KEY: " ".join(f"{v:.10g}" for v in np.asarray(lattice, dtype=float).ravel()),
        PBC_KEY: " ".join("T" if p else "F" for p in pbc),
    }


def cell_of(molecule: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lattice (3, 3) angstrom, pbc (3,) bool) of a periodic query."""
    metadata: Mapping[str, Any] = molecule.metadata
    return parse_lattice(metadata[LATTICE_KEY]), parse_pbc(metadata.get(PBC_KEY))


def check_cell(lattice: np.ndarray, pbc: np.ndarray) -> None:
    """Refuse a lattice whose periodic vectors are (nearly) linearly dependent."""
    vectors = lattice[pbc]
    if len(vectors) and np.linalg.matrix_rank(vectors, tol=1e-6) < len(vectors):
        raise ValueError("the periodic cell vectors are linearly dependent; check the lattice")
    if np.linalg.det(lattice) == 0 and pbc.all():
        raise ValueError("the cell has zero volume; check the lattice")


def image_offsets(lattice: np.ndarray, pbc: np.ndarray, reach_angstrom: float) -> np.ndarray:
    """(m, 3) int cell offsets whose images can hold atoms within ``reach_angstrom`` of the
    central cell (zero offset first); along a non-periodic direction only 0."""
    counts = []
    for axis in range(3):
        if not pbc[axis]:
            counts.append(0)
            continue
        others = [lattice[k] for k in range(3) if k != axis]
        normal = np.cross(*others)
        norm = np.linalg.norm(normal)
        if norm == 0:  # a degenerate non-periodic partner vector: fall back to the length
            spacing = np.linalg.norm(lattice[axis])
        else:
            spacing = abs(np.dot(lattice[axis], normal)) / norm
        counts.append(int(np.ceil(reach_angstrom / spacing)) + 1)
    ranges = [range(-n, n + 1) for n in counts]
    offsets = sorted(itertools.product(*ranges), key=lambda o: (any(o), o))
    return np.array(offsets, dtype=np.int64)


def periodic_environment(
    numbers: np.ndarray,
    positions_angstrom: np.ndarray,
    lattice: np.ndarray,
    pbc: np.ndarray,
    reach_angstrom: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The cell's atoms first, then every image atom within ``reach_angstrom`` of one of them.

    Returns (numbers (n_env,), positions (n_env, 3) angstrom); rows 0..n-1 are the cell's own
    atoms. A local representation computed on this environment with a cut-off at most
    ``reach_angstrom`` is the periodic one for the first n rows.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    tree = cKDTree(positions)
    out_numbers, out_positions = [numbers], [positions]
    for offset in image_offsets(lattice, pbc, reach_angstrom)[1:]:
        shifted = positions + offset @ lattice
        distance, _ = tree.query(shifted, distance_upper_bound=reach_angstrom)
        near = np.isfinite(distance)
        if near.any():
            out_numbers.append(numbers[near])
            out_positions.append(shifted[near])
    return np.concatenate(out_numbers), np.concatenate(out_positions)


def periodic_bonds(
    numbers: np.ndarray,
    positions_angstrom: np.ndarray,
    lattice: np.ndarray,
    pbc: np.ndarray,
    radius_factor: float = 1.15,
) -> list[list[tuple[int, tuple[int, int, int]]]]:
    """Per cell atom i, its bonded neighbours ``(j, offset)``: atom j of the cell shifted by the
    integer cell ``offset``, closer than ``radius_factor`` x the sum of RDKit's covalent radii
    (the factor of ``amondask.label.topology.covalent-radius-factor``)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(int(z)) for z in numbers])
    reach = float(radius_factor * 2 * radii.max()) if len(radii) else 0.0
    tree = cKDTree(positions)
    neighbours: list[list[tuple[int, tuple[int, int, int]]]] = [[] for _ in numbers]
    for offset in image_offsets(lattice, pbc, reach):
        shifted = positions + offset @ lattice
        for i, candidates in enumerate(tree.query_ball_point(shifted, reach)):
            # atom i's image at `offset` is near cell atoms `candidates`: j ~ (i, offset)
            for j in candidates:
                if j == i and not offset.any():
                    continue
                d = np.linalg.norm(shifted[i] - positions[j])
                if 0 < d <= radius_factor * (radii[i] + radii[j]):
                    neighbours[j].append((i, tuple(int(o) for o in offset)))
    for row in neighbours:
        row.sort()
    return neighbours
