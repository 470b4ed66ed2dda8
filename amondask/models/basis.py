"""Molecules in a model's fixed aSLATM basis, and the kernel pieces a prediction needs.

A fitted model keeps the many-body types (mbtypes) of its training data. A query is represented
in that basis: its atoms get the columns the training atoms of their element have, and the
contributions of many-body types the training data lacks are left out (exactly what
``qmllib.representations.generate_slatm`` does with the training mbtypes). Atoms of an element
no training molecule contains have no training atom to compare with: they are counted as
*unknown atoms* (the query is then not covered), not an error. The slatm code refuses elements
that are not in mbtypes, so such a molecule is represented with the training mbtypes followed
by the types its new elements need; the training blocks keep their offsets (they come first),
so selecting the training columns gives the same values as the training basis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from amondask.kernels.local import (
    DEFAULT_ATOM_CHUNK,
    KernelName,
    _sigma_for,
    atom_kernel,
    molecule_sum,
)
from amondask.represent import ElementBlock, SlatmLayout, slatm_mbtypes
from amondask.represent.blocks import atomic_slatm


def molecule_arrays(molecule: Any) -> tuple[np.ndarray, np.ndarray]:
    """(numbers (n,) int64, positions (n, 3) float64 angstrom) of a Molecule or a
    ``(numbers, positions)`` pair; ValueError for a molecule without 3D positions."""
    if hasattr(molecule, "numbers") and hasattr(molecule, "positions"):
        numbers, positions = molecule.numbers, molecule.positions
        if positions is None:
            raise ValueError(
                f"molecule {getattr(molecule, 'id', '?')!r} has no 3D positions; embed a "
                "geometry first (amondask.chem.geometry) or pass (numbers, positions) pairs"
            )
    else:
        numbers, positions = molecule
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (numbers.shape[0], 3):
        raise ValueError(
            f"positions must have shape ({numbers.shape[0]}, 3) for {numbers.shape[0]} atoms, "
            f"got {positions.shape}"
        )
    return numbers, positions


def molecule_id(molecule: Any, position: int) -> str:
    """The molecule's ``id`` when it has one, else its position in the input as text."""
    identifier = getattr(molecule, "id", None)
    return str(identifier) if identifier not in (None, "") else str(position)


def _canonical(mbtype: Sequence[int]) -> tuple[int, ...]:
    """One key per block: pairs unordered, triples with their ends unordered (center kept)."""
    t = tuple(int(z) for z in mbtype)
    if len(t) == 2:
        return tuple(sorted(t))
    if len(t) == 3:
        return (min(t[0], t[2]), t[1], max(t[0], t[2]))
    return t


class Basis:
    """The training basis: mbtypes and the SLATM parameters, with each element's columns.

    Args:
        mbtypes: many-body types of the training data (:func:`slatm_mbtypes`).
        rcut, sigmas, dgrid, rpower: SLATM parameters (:func:`amondask.represent.slatm`).
    """

    def __init__(
        self,
        mbtypes: Sequence[Sequence[int]],
        *,
        rcut: float,
        sigmas: tuple[float, float],
        dgrid: tuple[float, float],
        rpower: float,
    ):
        self.mbtypes = [[int(z) for z in t] for t in mbtypes]
        self.rcut, self.rpower = float(rcut), float(rpower)
        self.sigmas = (float(sigmas[0]), float(sigmas[1]))
        self.dgrid = (float(dgrid[0]), float(dgrid[1]))
        self.layout = SlatmLayout.from_mbtypes(self.mbtypes, rcut=self.rcut, dgrid=self.dgrid)
        self.elements = [int(z) for z in self.layout.elements.tolist()]
        self.columns = {z: self.layout.element_columns(z) for z in self.elements}
        self._known_types = {_canonical(t) for t in self.mbtypes}
        self._extended: dict[tuple, SlatmLayout] = {}

    def _layout_for(self, numbers: np.ndarray) -> SlatmLayout:
        if set(np.unique(numbers).tolist()) <= set(self.elements):
            return self.layout
        extra = tuple(
            tuple(t)
            for t in slatm_mbtypes([numbers])
            if _canonical(t) not in self._known_types and any(z not in self.elements for z in t)
        )
        if extra not in self._extended:
            self._extended[extra] = SlatmLayout.from_mbtypes(
                self.mbtypes + [list(t) for t in extra], rcut=self.rcut, dgrid=self.dgrid
            )
        return self._extended[extra]

    def represent(
        self, molecules: Iterable[Any]
    ) -> tuple[dict[int, ElementBlock], np.ndarray, list[np.ndarray]]:
        """Per-element compact aSLATM of ``molecules`` in this basis.

        Returns:
            blocks {Z: ElementBlock(x (n_atoms_Z, d_Z), molecule_index (n_atoms_Z,))} for every
            basis element, atoms in molecule order; unknown_atoms (n_molecules,) int64 the
            number of atoms of elements outside the basis per molecule; and the (n,) atomic
            numbers of each molecule.
        """
        rows: dict[int, list[np.ndarray]] = {z: [] for z in self.elements}
        owners: dict[int, list[np.ndarray]] = {z: [] for z in self.elements}
        unknown: list[int] = []
        numbers_list: list[np.ndarray] = []
        for index, molecule in enumerate(molecules):
            numbers, _ = molecule_arrays(molecule)  # checks the positions
            numbers_list.append(numbers)
            _, atomic = atomic_slatm(
                molecule,
                self._layout_for(numbers),
                rcut=self.rcut,
                sigmas=self.sigmas,
                dgrid=self.dgrid,
                rpower=self.rpower,
            )
            known = 0
            for z in np.unique(numbers).tolist():
                if z not in self.columns:
                    continue
                of_z = numbers == z
                known += int(of_z.sum())
                rows[z].append(atomic[np.ix_(of_z, self.columns[z])])
                owners[z].append(np.full(int(of_z.sum()), index, np.int64))
            unknown.append(len(numbers) - known)
        blocks = {
            z: ElementBlock(
                np.concatenate(rows[z]) if rows[z] else np.zeros((0, len(self.columns[z]))),
                np.concatenate(owners[z]) if owners[z] else np.zeros(0, np.int64),
            )
            for z in self.elements
        }
        return blocks, np.asarray(unknown, dtype=np.int64), numbers_list


def cross_kernel_with_similarity(
    rows: Mapping[int, ElementBlock],
    cols: Mapping[int, ElementBlock],
    *,
    sigma: float | Mapping[int, float],
    kernel: KernelName,
    n_row_molecules: int,
    n_col_molecules: int,
    atom_chunk: int = DEFAULT_ATOM_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The local kernel K (n_row_molecules, n_col_molecules) and, per row molecule, the smallest
    over its atoms of the largest atom-kernel value to any same-element column atom.

    The second output (n_row_molecules,) is in [0, 1]: 1 means every atom has an identical
    twin among the column atoms, a small value that some atom is far from all of them (0 when
    an atom's element has no column atom; 1 for a molecule with no atoms in ``rows``). Memory
    is bounded by ``atom_chunk``: one (atom_chunk, atom_chunk) matrix at a time.
    """
    out = np.zeros((n_row_molecules, n_col_molecules))
    atom_min_similarity = np.ones(n_row_molecules)
    for z, row_block in rows.items():
        x_rows = np.asarray(row_block.x, dtype=np.float64)
        row_owner = np.asarray(row_block.molecule_index, dtype=np.int64)
        if len(row_owner) == 0:
            continue
        col_block = cols.get(z)
        n_col_atoms = 0 if col_block is None else len(col_block.molecule_index)
        if n_col_atoms == 0:
            np.minimum.at(atom_min_similarity, row_owner, 0.0)
            continue
        x_cols = np.asarray(col_block.x, dtype=np.float64)
        col_owner = np.asarray(col_block.molecule_index, dtype=np.int64)
        width = _sigma_for(sigma, z)
        col_norms = np.einsum("ij,ij->i", x_cols, x_cols) if kernel == "gaussian" else None
        for r0 in range(0, len(row_owner), atom_chunk):
            r1 = min(r0 + atom_chunk, len(row_owner))
            best = np.zeros(r1 - r0)
            for c0 in range(0, n_col_atoms, atom_chunk):
                c1 = min(c0 + atom_chunk, n_col_atoms)
                values = atom_kernel(
                    x_rows[r0:r1],
                    x_cols[c0:c1],
                    width,
                    kernel,
                    col_norms=None if col_norms is None else col_norms[c0:c1],
                )
                np.maximum(best, values.max(axis=1), out=best)
                summed, mols_r, mols_c = molecule_sum(values, row_owner[r0:r1], col_owner[c0:c1])
                out[np.ix_(mols_r, mols_c)] += summed
            np.minimum.at(atom_min_similarity, row_owner[r0:r1], best)
    return out, atom_min_similarity


def self_kernel(
    blocks: Mapping[int, ElementBlock],
    *,
    sigma: float | Mapping[int, float],
    kernel: KernelName,
    n_molecules: int,
) -> np.ndarray:
    """(n_molecules,) diagonal K(x, x) of the local kernel: per molecule, the sum of k over
    its same-element atom pairs (each atom with itself included)."""
    diagonal = np.zeros(n_molecules)
    for z, block in blocks.items():
        x = np.asarray(block.x, dtype=np.float64)
        owner = np.asarray(block.molecule_index, dtype=np.int64)
        if len(owner) == 0:
            continue
        width = _sigma_for(sigma, z)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        stops = np.r_[starts[1:], len(owner)]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            atoms = x[start:stop]
            diagonal[owner[start]] += float(atom_kernel(atoms, atoms, width, kernel).sum())
    return diagonal
