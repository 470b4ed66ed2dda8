"""Validation of parsed structures: what amondask accepts as a query molecule.

A record passes when it has at most ``amondask.read.max-heavy-atoms`` heavy atoms (checked first,
before any costly step), RDKit sanitizes it, all its elements are supported, it is neutral,
closed-shell and one connected molecule (unless ``read.allow-fragments``), and (if it has
coordinates) they are finite and no two atoms overlap. Problems are
raised as :class:`~amondask.errors.RecordError` subclasses whose messages say what to do; the
readers turn them into error rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from rdkit import Chem

from amondask import config
from amondask.chem.molecule import Molecule
from amondask.errors import (
    ChargedMoleculeError,
    GeometryError,
    OpenShellError,
    ParseError,
    RecordError,
    SanitizationError,
    UnsupportedElementError,
)

#: Two atoms closer than this (angstrom) are taken as overlapping: the geometry is unusable.
MIN_ATOM_DISTANCE_ANGSTROM = 0.5

_PERIODIC_TABLE = Chem.GetPeriodicTable()


class DisconnectedMoleculeError(RecordError):
    """The record holds several disconnected fragments (a salt, a solvate, a mixture)."""


class MoleculeTooLargeError(RecordError):
    """The molecule has more heavy atoms than ``amondask.read.max-heavy-atoms`` allows."""


def check_size(n_heavy_atoms: int, record_id: str, *, limit: int | None = None) -> None:
    """Refuse a molecule above ``read.max-heavy-atoms`` heavy atoms (null: no limit).

    Called before sanitization, embedding or bond perception, whose cost grows faster than the
    size: a query of thousands of heavy atoms becomes an error row at once instead of
    exhausting the worker that extracts its amons.
    """
    limit = config.get("read.max-heavy-atoms", limit)
    if limit is not None and n_heavy_atoms > int(limit):
        raise MoleculeTooLargeError(
            f"the molecule has {n_heavy_atoms} heavy atoms, more than "
            f"amondask.read.max-heavy-atoms = {int(limit)} (the bound that keeps a query's amon "
            "extraction within a worker's memory budget, see docs/reliability.md); split it "
            "into smaller queries, or raise the limit (AMONDASK_READ__MAX_HEAVY_ATOMS) on "
            "workers with more memory",
            record_id=record_id,
        )


def supported_atomic_numbers(elements: Iterable[str] | None = None) -> frozenset[int]:
    """Atomic numbers of the supported elements (``amondask.elements`` by default)."""
    symbols = config.get("elements", list(elements) if elements is not None else None)
    return frozenset(_PERIODIC_TABLE.GetAtomicNumber(str(symbol)) for symbol in symbols)


def sanitize(mol: Chem.Mol, record_id: str) -> Chem.Mol:
    """Sanitize an unsanitized RDKit molecule in place; raise SanitizationError on failure."""
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:
        raise SanitizationError(
            f"RDKit rejects the structure: {str(exc).strip()}; check valences, charges and "
            "aromatic rings (an aromatic N with an H must be written [nH])",
            record_id=record_id,
        ) from exc
    return mol


def check_chemistry(
    mol: Chem.Mol,
    record_id: str,
    *,
    allowed: frozenset[int] | None = None,
    allow_charged: bool | None = None,
    allow_radicals: bool | None = None,
) -> None:
    """Raise if a sanitized molecule is empty, has unsupported elements, a charge or radicals."""
    if mol.GetNumAtoms() == 0:
        raise ParseError("the record holds no atoms; remove it", record_id=record_id)
    allowed = supported_atomic_numbers() if allowed is None else allowed
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in allowed})
    if bad:
        supported = ", ".join(_PERIODIC_TABLE.GetElementSymbol(z) for z in sorted(allowed) if z > 0)
        raise UnsupportedElementError(
            f"unsupported element(s) {', '.join(bad)}; amondask handles {supported} "
            "(extend amondask.elements only if your labeler and data cover them)",
            record_id=record_id,
        )
    if not config.get("read.allow-radicals", allow_radicals):
        radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
        if radicals:
            raise OpenShellError(
                f"the molecule has {radicals} unpaired electron(s) (a radical); amondask models "
                "closed-shell molecules: add the missing hydrogens or bonds",
                record_id=record_id,
            )
    if not config.get("read.allow-fragments"):
        n_fragments = len(Chem.GetMolFrags(mol))
        if n_fragments > 1:
            raise DisconnectedMoleculeError(
                f"the record holds {n_fragments} disconnected fragments (a salt, solvate or "
                "mixture); give one molecule per record: keep the largest fragment (e.g. "
                "rdkit.Chem.MolStandardize.rdMolStandardize.LargestFragmentChooser) or set "
                "amondask.read.allow-fragments to model the complex as one query (with "
                "non-covalent amons: --config examples/noncovalent/noncovalent.yaml)",
                record_id=record_id,
            )
    if not config.get("read.allow-charged", allow_charged):
        charge = Chem.GetFormalCharge(mol)
        if charge:
            raise ChargedMoleculeError(
                f"net formal charge {charge:+d}; amondask models neutral molecules: neutralize "
                "it (e.g. rdkit.Chem.MolStandardize.rdMolStandardize.Uncharger) or drop the "
                "counter-ion",
                record_id=record_id,
            )


def check_positions(positions: np.ndarray, record_id: str) -> None:
    """Raise GeometryError for non-finite coordinates or overlapping atoms (< 0.5 angstrom)."""
    if not np.all(np.isfinite(positions)):
        raise GeometryError(
            "coordinates contain NaN or infinity; fix the structure file",
            record_id=record_id,
        )
    if len(positions) < 2:
        return
    # Cell-list-free check on sorted x: atoms closer than the threshold are close in x too.
    order = np.argsort(positions[:, 0], kind="stable")
    sorted_pos = positions[order]
    for shift in range(1, len(sorted_pos)):
        dx = sorted_pos[shift:, 0] - sorted_pos[:-shift, 0]
        if dx.min() >= MIN_ATOM_DISTANCE_ANGSTROM:
            break
        dist = np.linalg.norm(sorted_pos[shift:] - sorted_pos[:-shift], axis=1)
        hit = np.flatnonzero(dist < MIN_ATOM_DISTANCE_ANGSTROM)
        if len(hit):
            i, j = sorted((int(order[hit[0]]), int(order[hit[0] + shift])))
            raise GeometryError(
                f"atoms {i} and {j} are {dist[hit[0]]:.3f} angstrom apart (overlapping, below "
                f"{MIN_ATOM_DISTANCE_ANGSTROM}); the geometry is unusable: fix the coordinates or "
                "give the molecule as SMILES to generate them",
                record_id=record_id,
            )


def molecule_from_parsed(
    mol: Chem.Mol,
    record_id: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    sanitized: bool = False,
) -> Molecule:
    """Validate a parsed RDKit molecule and turn it into a Molecule (explicit H, Kekule bonds)."""
    check_size(mol.GetNumHeavyAtoms(), record_id)
    if not sanitized:
        sanitize(mol, record_id)
    check_chemistry(mol, record_id)
    molecule = Molecule.from_rdkit(mol, record_id, metadata=metadata)
    if molecule.positions is not None:
        check_positions(molecule.positions, record_id)
    return molecule
