"""Compact per-element aSLATM: for element Z only the columns an atom of Z can fill.

An atom of element Z is non-zero only in the one-body block ``[Z]``, the two-body blocks that
contain Z and the three-body blocks centered on Z, and local kernels compare atoms of the same
element only. Storing, per element, just those ``d_Z`` columns gives the same kernel values
(the dropped columns are zero for every atom of Z) in a fraction of the memory: for the QM9
elements H, C, N, O, F a full vector has 5 + 15 * n_distance_bins + n_triples * n_angle_bins
columns, an element block about 1 + 5 * n_distance_bins + 15 * n_angle_bins
(:func:`compact_memory_report` gives the numbers for a data set).

Per-element blocks are ``{Z: ElementBlock(x, molecule_index)}`` with ``x`` (n_atoms_Z, d_Z)
float64 and ``molecule_index`` (n_atoms_Z,) int64, sorted by molecule: the input of
:mod:`amondask.kernels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from amondask.represent.slatm import SlatmLayout, slatm_with_layout


class ElementBlock(NamedTuple):
    """The atoms of one element: x (n_atoms_Z, d_Z) float64 representation rows, and
    molecule_index (n_atoms_Z,) int64 the molecule (row of the kernel) each atom belongs to,
    non-decreasing."""

    x: Any
    molecule_index: Any


def element_columns(
    mbtypes: Sequence[Sequence[int]],
    z: int,
    *,
    rcut: float = 4.8,
    dgrid: tuple[float, float] = (0.03, 0.03),
) -> np.ndarray:
    """(d_Z,) int64 sorted column indices of the full SLATM vector kept for element ``z``."""
    return SlatmLayout.from_mbtypes(mbtypes, rcut=rcut, dgrid=dgrid).element_columns(int(z))


def element_column_masks(
    mbtypes: Sequence[Sequence[int]],
    *,
    rcut: float = 4.8,
    dgrid: tuple[float, float] = (0.03, 0.03),
) -> dict[int, np.ndarray]:
    """{Z: (n_features,) bool mask} of the columns kept for each element of ``mbtypes``."""
    layout = SlatmLayout.from_mbtypes(mbtypes, rcut=rcut, dgrid=dgrid)
    masks = {}
    for z in layout.elements.tolist():
        mask = np.zeros(layout.n_features, dtype=bool)
        mask[layout.element_columns(z)] = True
        masks[z] = mask
    return masks


def _numbers_positions(molecule: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(molecule, "numbers") and hasattr(molecule, "positions"):
        numbers, positions = molecule.numbers, molecule.positions
        if positions is None:
            raise ValueError(
                f"molecule {getattr(molecule, 'id', '?')!r} has no 3D positions; "
                "embed a geometry first (amondask.chem.geometry)"
            )
    else:
        numbers, positions = molecule
    return np.asarray(numbers, dtype=np.int64), np.asarray(positions, dtype=np.float64)


def atomic_slatm(
    molecule: Any,
    layout: SlatmLayout,
    *,
    rcut: float,
    sigmas: tuple[float, float],
    dgrid: tuple[float, float],
    rpower: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(numbers (n,), atomic aSLATM (n, layout.n_features)) of one molecule or
    ``(numbers, positions)`` pair. A periodic query (:mod:`amondask.chem.periodic`) gets the
    periodic representation: its cell's atoms, each seeing every image within ``rcut``."""
    from amondask.chem.periodic import cell_of, is_periodic, periodic_environment

    numbers, positions = _numbers_positions(molecule)
    n_own = len(numbers)
    environment_numbers, environment_positions = numbers, positions
    if is_periodic(molecule):
        lattice, pbc = cell_of(molecule)
        environment_numbers, environment_positions = periodic_environment(
            numbers, positions, lattice, pbc, rcut
        )
    atomic = slatm_with_layout(
        environment_numbers,
        environment_positions,
        layout,
        rcut=rcut,
        sigmas=sigmas,
        dgrid=dgrid,
        rpower=rpower,
    )
    return numbers, atomic[:n_own]


def element_blocks(
    molecules: Iterable[Any],
    mbtypes: Sequence[Sequence[int]],
    *,
    rcut: float = 4.8,
    sigmas: tuple[float, float] = (0.05, 0.05),
    dgrid: tuple[float, float] = (0.03, 0.03),
    rpower: float = 6,
    first_molecule_index: int = 0,
) -> dict[int, ElementBlock]:
    """Per-element compact aSLATM of a list of molecules.

    Args:
        molecules: :class:`amondask.chem.Molecule` objects with positions, or
            ``(numbers (n,), positions (n, 3) angstrom)`` pairs.
        mbtypes: the shared many-body types (:func:`amondask.represent.slatm_mbtypes`).
        rcut, sigmas, dgrid, rpower: as in :func:`amondask.represent.slatm`.
        first_molecule_index: index given to the first molecule (for appending partitions).

    Returns:
        {Z: ElementBlock(x (n_atoms_Z, d_Z) float64, molecule_index (n_atoms_Z,) int64)} for
        every element of ``mbtypes`` (possibly with zero atoms), atoms in molecule order.
    """
    layout = SlatmLayout.from_mbtypes(mbtypes, rcut=rcut, dgrid=dgrid)
    columns = {z: layout.element_columns(z) for z in layout.elements.tolist()}
    rows: dict[int, list[np.ndarray]] = {z: [] for z in columns}
    owners: dict[int, list[np.ndarray]] = {z: [] for z in columns}
    for offset, molecule in enumerate(molecules):
        numbers, atomic = atomic_slatm(
            molecule, layout, rcut=rcut, sigmas=sigmas, dgrid=dgrid, rpower=rpower
        )
        for z in np.unique(numbers).tolist():
            of_z = numbers == z
            rows[z].append(atomic[np.ix_(of_z, columns[z])])
            owners[z].append(np.full(int(of_z.sum()), first_molecule_index + offset, np.int64))
    return {
        z: ElementBlock(
            np.concatenate(rows[z]) if rows[z] else np.zeros((0, len(columns[z]))),
            np.concatenate(owners[z]) if owners[z] else np.zeros(0, np.int64),
        )
        for z in columns
    }


def compact_memory_report(
    blocks: Mapping[int, ElementBlock],
    mbtypes: Sequence[Sequence[int]],
    *,
    rcut: float = 4.8,
    dgrid: tuple[float, float] = (0.03, 0.03),
) -> dict[str, Any]:
    """Bytes of the per-element blocks against full-width atomic vectors (float64).

    Returns:
        dict with ``n_features`` (full width), ``element_widths`` {Z: d_Z}, ``n_atoms``
        {Z: n_atoms_Z}, ``full_bytes``, ``compact_bytes`` and ``saved_fraction``.
    """
    layout = SlatmLayout.from_mbtypes(mbtypes, rcut=rcut, dgrid=dgrid)
    widths = {z: int(np.shape(block.x)[1]) for z, block in blocks.items()}
    counts = {z: int(np.shape(block.x)[0]) for z, block in blocks.items()}
    full = 8 * layout.n_features * sum(counts.values())
    compact = 8 * sum(widths[z] * counts[z] for z in blocks)
    return {
        "n_features": layout.n_features,
        "element_widths": widths,
        "n_atoms": counts,
        "full_bytes": full,
        "compact_bytes": compact,
        "saved_fraction": 1.0 - compact / full if full else 0.0,
    }
