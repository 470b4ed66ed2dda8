"""3D amon geometries: query coordinates, H caps, MMFF94 relaxation and conformer dedup.

An occurrence of an amon takes its heavy atoms and their own hydrogens from the query's
coordinates; every cut bond ``a -> b`` becomes an H on ``a`` along the ``a -> b`` direction at the
standard X-H bond length of ``a``'s element (:data:`XH_BOND_LENGTH_ANGSTROM`). Relaxation follows
the authors' recipe: MMFF94 on the H atoms with the heavy atoms fixed, then MMFF94 on all atoms
with every heavy-atom dihedral angle held within ``torsion_window_degrees`` by flat-bottomed
restraints; a geometry whose dihedrals still move by more than ``torsion_tolerance_degrees`` is
rejected. *Choice*: only dihedrals of four heavy atoms are held (the H atoms were placed by the
first step; holding their dihedrals too makes the minimization stiff and 3x slower).
Fragments without MMFF94 parameters (e.g. boron) keep their capped query geometry and say so.

Conformers: occurrences of one amon whose (relaxed) geometries differ by more than
``conformer_threshold`` in the Coulomb-matrix distance (:func:`coulomb_distance`) are distinct
conformers; the others share the first one's geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from amondask.chem.molecule import Molecule

#: Standard X-H bond lengths in angstrom (typical experimental values).
XH_BOND_LENGTH_ANGSTROM = {
    5: 1.19,
    6: 1.09,
    7: 1.01,
    8: 0.96,
    9: 0.92,
    14: 1.48,
    15: 1.42,
    16: 1.34,
    17: 1.27,
    35: 1.41,
    53: 1.61,
}
_ANGSTROM_TO_BOHR = 1.0 / 0.52917721092
# flat-bottomed dihedral restraint beyond the window, kcal/mol/rad^2: stiff enough to hold the
# dihedrals within a fraction of a degree beyond the window, soft enough to converge quickly
_TORSION_FORCE_CONSTANT = 100.0


def xh_bond_length(atomic_number: int) -> float:
    """Standard X-H bond length (angstrom); covalent radii sum for elements not tabulated."""
    length = XH_BOND_LENGTH_ANGSTROM.get(atomic_number)
    if length is None:
        table = Chem.GetPeriodicTable()
        length = table.GetRcovalent(atomic_number) + table.GetRcovalent(1)
    return float(length)


def cap_positions(
    anchor_positions: np.ndarray, target_positions: np.ndarray, anchor_numbers: Sequence[int]
) -> np.ndarray:
    """Positions (n_caps, 3) of H caps on anchors, pointing at the removed atoms (angstrom)."""
    direction = target_positions - anchor_positions
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    if np.any(norm < 1e-6):
        raise ValueError("a cut bond has zero length: two query atoms coincide")
    lengths = np.array([xh_bond_length(z) for z in anchor_numbers])[:, None]
    return anchor_positions + direction / norm * lengths


def min_nonbonded_distance(molecule: Molecule) -> float:
    """Smallest distance (angstrom) between two atoms that are not bonded; inf if none."""
    positions = molecule.positions
    n = molecule.n_atoms
    if positions is None or n < 2:
        return float("inf")
    diff = positions[:, None, :] - positions[None, :, :]
    distance = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    distance[np.diag_indices(n)] = np.inf
    if len(molecule.bonds):
        i, j = molecule.bonds[:, 0], molecule.bonds[:, 1]
        distance[i, j] = np.inf
        distance[j, i] = np.inf
    return float(distance.min())


def coulomb_matrix(numbers: np.ndarray, positions_angstrom: np.ndarray) -> np.ndarray:
    """Coulomb matrix (n, n) in atomic units: 0.5 Z^2.4 on the diagonal, Z_i Z_j / r_ij off it."""
    z = numbers.astype(np.float64)
    r = positions_angstrom * _ANGSTROM_TO_BOHR
    diff = r[:, None, :] - r[None, :, :]
    distance = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    np.fill_diagonal(distance, 1.0)
    matrix = np.outer(z, z) / distance
    np.fill_diagonal(matrix, 0.5 * z**2.4)
    return matrix


def coulomb_spectrum(numbers: np.ndarray, positions_angstrom: np.ndarray) -> np.ndarray:
    """Eigenvalues of the Coulomb matrix, sorted descending: invariant to atom order."""
    return np.sort(np.linalg.eigvalsh(coulomb_matrix(numbers, positions_angstrom)))[::-1]


def coulomb_distance(spectrum_a: np.ndarray, spectrum_b: np.ndarray) -> float:
    """Relative distance of two Coulomb spectra: ``|a - b| / |a|`` (dimensionless)."""
    return float(np.linalg.norm(spectrum_a - spectrum_b) / np.linalg.norm(spectrum_a))


def heavy_dihedrals(molecule: Molecule) -> np.ndarray:
    """(n, 4) atom indices i-j-k-l of all proper dihedrals of four heavy atoms (each once)."""
    heavy = molecule.numbers > 1
    neighbours: dict[int, list[int]] = {}
    pairs = []
    for i, j, _ in molecule.bonds.tolist():
        if heavy[i] and heavy[j]:
            neighbours.setdefault(i, []).append(j)
            neighbours.setdefault(j, []).append(i)
            pairs.append((i, j))
    out = [
        (i, j, k, l)
        for j, k in pairs
        for i in neighbours[j]
        if i != k
        for l in neighbours[k]
        if l not in (i, j)
    ]
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def bond_angles_degrees(positions: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """Angles i-j-k (degrees) for (n, 3) index rows."""
    first = positions[triples[:, 0]] - positions[triples[:, 1]]
    second = positions[triples[:, 2]] - positions[triples[:, 1]]
    cosine = np.einsum("ij,ij->i", first, second) / (
        np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    )
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (n, 3) arrays (np.cross has a large per-call overhead)."""
    return np.column_stack(
        (
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        )
    )


def dihedral_angles_degrees(positions: np.ndarray, quadruples: np.ndarray) -> np.ndarray:
    """Dihedral angles i-j-k-l (degrees, -180..180) for (n, 4) index rows."""
    p0, p1, p2, p3 = (positions[quadruples[:, c]] for c in range(4))
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = _cross(b0, b1), _cross(b1, b2)
    m1 = _cross(n1, b1 / np.linalg.norm(b1, axis=1, keepdims=True))
    x = np.einsum("ij,ij->i", n1, n2)
    y = np.einsum("ij,ij->i", m1, n2)
    return np.degrees(np.arctan2(-y, x))


@dataclass(frozen=True)
class Relaxation:
    """Outcome of :func:`relax_amon`: new positions (angstrom), whether accepted, and why not."""

    positions: np.ndarray
    accepted: bool
    max_torsion_change_degrees: float
    message: str


def relax_amon(
    molecule: Molecule,
    *,
    torsion_window_degrees: float = 2.0,
    torsion_tolerance_degrees: float = 5.0,
    max_iterations: int = 200,
) -> Relaxation:
    """MMFF94 on the H atoms (heavy atoms fixed), then on all atoms with dihedrals held.

    Returns the relaxed positions; ``accepted`` is False when a dihedral moved by more than
    ``torsion_tolerance_degrees`` (the positions are then still returned, for inspection).
    """
    mol = Chem.Mol(molecule.rdkit_mol)  # our own copy: minimization moves its conformer
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if properties is None:
        return Relaxation(
            np.array(molecule.positions), True, 0.0, "no MMFF94 parameters; not relaxed"
        )
    properties.SetMMFFVerbosity(0)
    heavy = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetAtomicNum() > 1]
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    for index in heavy:
        field.AddFixedPoint(index)
    field.Minimize(maxIts=max_iterations)
    conf = mol.GetConformer()
    dihedrals = heavy_dihedrals(molecule)
    if len(dihedrals):
        # dihedrals over a (nearly) linear angle are undefined: not held, not checked
        positions = molecule.positions
        straight = (bond_angles_degrees(positions, dihedrals[:, :3]) > 175.0) | (
            bond_angles_degrees(positions, dihedrals[:, 1:]) > 175.0
        )
        dihedrals = dihedrals[~straight]
    before = dihedral_angles_degrees(molecule.positions, dihedrals)
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    for i, j, k, l in dihedrals.tolist():
        field.MMFFAddTorsionConstraint(
            i,
            j,
            k,
            l,
            True,
            -torsion_window_degrees,
            torsion_window_degrees,
            _TORSION_FORCE_CONSTANT,
        )
    field.Minimize(maxIts=max_iterations)
    positions = np.asarray(conf.GetPositions(), dtype=np.float64)
    after = dihedral_angles_degrees(positions, dihedrals)
    change = 0.0
    if len(dihedrals):
        delta = np.abs((after - before + 180.0) % 360.0 - 180.0)
        change = float(delta.max())
    accepted = change <= torsion_tolerance_degrees
    message = "" if accepted else f"dihedrals moved by up to {change:.1f} degrees under MMFF94"
    return Relaxation(positions, accepted, change, message)
