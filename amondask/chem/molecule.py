"""The immutable :class:`Molecule`: the unit every stage of amondask passes around.

A Molecule holds *all* atoms explicitly (hydrogens included), its bonds as Kekule orders, the
formal charge of every atom, and optionally 3D positions in angstrom. The RDKit molecule and the
canonical key are derived on demand and cached. Arrays are read-only so a Molecule can be shared
between threads and hashed by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Geometry import Point3D

from amondask.errors import SanitizationError

_BOND_TYPES = {
    1: Chem.BondType.SINGLE,
    2: Chem.BondType.DOUBLE,
    3: Chem.BondType.TRIPLE,
}
_BOND_ORDERS = {bond_type: order for order, bond_type in _BOND_TYPES.items()}


def _frozen(array: Any, dtype: Any, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    if shape_tail and out.size == 0:
        out = out.reshape((0, *shape_tail))
    out.setflags(write=False)
    return out


def canonical_key(mol: Chem.Mol) -> str:
    """The dedup key of a molecular graph: RDKit canonical SMILES without H atoms or stereo.

    Two structures with the same heavy-atom graph, bond orders (up to aromaticity perception)
    and charges get the same key; conformers and stereoisomers share it.
    """
    heavy = Chem.RemoveHs(mol, sanitize=False)
    try:
        Chem.SanitizeMol(heavy)
    except Exception:  # keep the key computable for odd but parsed structures
        heavy.UpdatePropertyCache(strict=False)
    return Chem.MolToSmiles(heavy, isomericSmiles=False)


@dataclass(frozen=True, eq=False)
class Molecule:
    """A neutral or charged molecule with explicit hydrogens.

    Attributes:
        id: the record id (unique within a dataset).
        numbers: (n_atoms,) int atomic numbers, hydrogens included.
        bonds: (n_bonds, 3) int rows ``(i, j, order)`` with Kekule order 1, 2 or 3, ``i < j``.
        formal_charges: (n_atoms,) int formal charge per atom.
        positions: (n_atoms, 3) float64 Cartesian coordinates in angstrom, or None for a graph.
        metadata: extra per-record fields carried from the input (str -> str).
    """

    id: str
    numbers: np.ndarray
    bonds: np.ndarray
    formal_charges: np.ndarray | None = None
    positions: np.ndarray | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        numbers = _frozen(self.numbers, np.int64)
        n_atoms = numbers.shape[0]
        bonds = _frozen(self.bonds, np.int64, (3,))
        if bonds.ndim != 2 or bonds.shape[1] != 3:
            raise ValueError(f"bonds must have shape (n_bonds, 3), got {bonds.shape}")
        if len(bonds):
            lo = np.minimum(bonds[:, 0], bonds[:, 1])
            hi = np.maximum(bonds[:, 0], bonds[:, 1])
            bonds = _frozen(np.column_stack([lo, hi, bonds[:, 2]]), np.int64, (3,))
            if hi.max() >= n_atoms or lo.min() < 0:
                raise ValueError("bond atom index out of range")
        charges = self.formal_charges
        charges = np.zeros(n_atoms, np.int64) if charges is None else charges
        charges = _frozen(charges, np.int64)
        if charges.shape != (n_atoms,):
            raise ValueError(f"formal_charges must have shape ({n_atoms},), got {charges.shape}")
        positions = self.positions
        if positions is not None:
            positions = _frozen(positions, np.float64)
            if positions.shape != (n_atoms, 3):
                raise ValueError(f"positions must have shape ({n_atoms}, 3), got {positions.shape}")
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "numbers", numbers)
        object.__setattr__(self, "bonds", bonds)
        object.__setattr__(self, "formal_charges", charges)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def _from_arrays(
        cls,
        id: str,
        numbers: np.ndarray,
        bonds: np.ndarray,
        formal_charges: np.ndarray,
        positions: np.ndarray | None,
    ) -> Molecule:
        """A Molecule from arrays already in the form ``__post_init__`` gives, without its
        checks and copies: the fast path for code that builds many fragments of a validated
        query (:mod:`amondask.amons.extract`).

        The caller guarantees: ``numbers`` and ``formal_charges`` int64 (n,), ``bonds`` int64
        (n_bonds, 3) with ``i < j`` and indices in range, ``positions`` float64 (n, 3) or None,
        and that it no longer writes to these arrays (they are made read-only here).
        """
        molecule = object.__new__(cls)
        for array in (numbers, bonds, formal_charges, positions):
            if array is not None:
                array.setflags(write=False)
        object.__setattr__(molecule, "id", str(id))
        object.__setattr__(molecule, "numbers", numbers)
        object.__setattr__(molecule, "bonds", bonds)
        object.__setattr__(molecule, "formal_charges", formal_charges)
        object.__setattr__(molecule, "positions", positions)
        object.__setattr__(molecule, "metadata", MappingProxyType({}))
        return molecule

    def __reduce__(self):
        # The metadata mapping proxy does not pickle; rebuild from plain values (Dask moves
        # Molecules between processes).
        return (
            Molecule,
            (
                self.id,
                self.numbers,
                self.bonds,
                self.formal_charges,
                self.positions,
                dict(self.metadata),
            ),
        )

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def from_rdkit(
        cls,
        mol: Chem.Mol,
        id: str = "",
        *,
        metadata: Mapping[str, Any] | None = None,
        conformer_id: int = -1,
        add_hydrogens: bool = True,
    ) -> Molecule:
        """A Molecule from an RDKit molecule (sanitized; hydrogens are made explicit).

        Positions are taken from the conformer ``conformer_id`` if the molecule has a 3D one;
        hydrogens added here get coordinates when the molecule has a conformer.
        """
        if add_hydrogens and any(atom.GetTotalNumHs() for atom in mol.GetAtoms()):
            mol = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
        kekule = Chem.Mol(mol)
        try:
            Chem.Kekulize(kekule, clearAromaticFlags=True)
        except Exception as exc:
            raise SanitizationError(
                f"cannot assign a Kekule structure: {exc}; check the aromatic rings "
                "(e.g. a missing [nH])",
                record_id=id,
            ) from exc
        bonds = []
        for bond in kekule.GetBonds():
            order = _BOND_ORDERS.get(bond.GetBondType())
            if order is None:
                raise SanitizationError(
                    f"bond {bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()} has unsupported "
                    f"type {bond.GetBondType()}; only single, double, triple and aromatic bonds "
                    "are modelled",
                    record_id=id,
                )
            bonds.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), order))
        positions = None
        if mol.GetNumConformers():
            conf = mol.GetConformer(conformer_id)
            if conf.Is3D():
                positions = np.array(conf.GetPositions(), dtype=np.float64)
        return cls(
            id=id,
            numbers=[atom.GetAtomicNum() for atom in mol.GetAtoms()],
            bonds=np.array(bonds, dtype=np.int64).reshape(-1, 3),
            formal_charges=[atom.GetFormalCharge() for atom in mol.GetAtoms()],
            positions=positions,
            metadata=metadata or {},
        )

    @classmethod
    def from_smiles(
        cls, smiles: str, id: str = "", *, metadata: Mapping[str, Any] | None = None
    ) -> Molecule:
        """A graph-only Molecule (no positions) from a SMILES string."""
        from amondask.errors import ParseError

        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise ParseError(
                f"RDKit cannot parse SMILES {smiles!r}; check brackets, ring closures and "
                "aromatic atoms",
                record_id=id,
            )
        return cls.from_rdkit(mol, id, metadata=metadata)

    # ---- derived properties ------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def n_heavy(self) -> int:
        """Number of non-hydrogen atoms."""
        return int(np.count_nonzero(self.numbers > 1))

    @property
    def charge(self) -> int:
        """Net formal charge."""
        return int(self.formal_charges.sum())

    @property
    def has_positions(self) -> bool:
        return self.positions is not None

    @property
    def rdkit_mol(self) -> Chem.Mol:
        """A sanitized RDKit molecule with explicit H atoms (and a conformer when positioned).

        A fresh copy is returned on every access, so callers may modify it.
        """
        return Chem.Mol(self._rdkit_mol)

    @cached_property
    def _rdkit_mol(self) -> Chem.Mol:
        rw = Chem.RWMol()
        for z, q in zip(self.numbers.tolist(), self.formal_charges.tolist(), strict=True):
            atom = Chem.Atom(int(z))
            atom.SetFormalCharge(int(q))
            atom.SetNoImplicit(True)
            rw.AddAtom(atom)
        for i, j, order in self.bonds.tolist():
            rw.AddBond(int(i), int(j), _BOND_TYPES[int(order)])
        mol = rw.GetMol()
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:
            raise SanitizationError(
                f"RDKit rejects the structure: {exc}; check valences and charges",
                record_id=self.id,
            ) from exc
        if self.positions is not None:
            conf = Chem.Conformer(self.n_atoms)
            for index, (x, y, z) in enumerate(self.positions.tolist()):
                conf.SetAtomPosition(index, Point3D(x, y, z))
            conf.Set3D(True)
            mol.AddConformer(conf, assignId=True)
        return mol

    @cached_property
    def key(self) -> str:
        """Canonical key of the molecular graph (see :func:`canonical_key`)."""
        return canonical_key(self._rdkit_mol)

    @cached_property
    def smiles(self) -> str:
        """Canonical SMILES (heavy atoms, stereo where perceivable from the structure)."""
        return Chem.MolToSmiles(Chem.RemoveHs(self._rdkit_mol))

    @property
    def symbols(self) -> list[str]:
        table = Chem.GetPeriodicTable()
        return [table.GetElementSymbol(int(z)) for z in self.numbers]

    def with_positions(self, positions: np.ndarray | None) -> Molecule:
        """A copy with new positions (angstrom), or without positions when None."""
        return Molecule(
            id=self.id,
            numbers=self.numbers,
            bonds=self.bonds,
            formal_charges=self.formal_charges,
            positions=positions,
            metadata=self.metadata,
        )

    def with_id(self, id: str) -> Molecule:
        return Molecule(
            id=id,
            numbers=self.numbers,
            bonds=self.bonds,
            formal_charges=self.formal_charges,
            positions=self.positions,
            metadata=self.metadata,
        )

    def __repr__(self) -> str:
        where = "3D" if self.positions is not None else "graph"
        return f"Molecule(id={self.id!r}, {self.n_atoms} atoms, {self.n_heavy} heavy, {where})"

    def same_structure(self, other: Molecule, *, atol: float = 0.0) -> bool:
        """True if atoms, bonds, charges and (within ``atol`` angstrom) positions are equal."""
        if (
            self.n_atoms != other.n_atoms
            or not np.array_equal(self.numbers, other.numbers)
            or not np.array_equal(self.bonds, other.bonds)
            or not np.array_equal(self.formal_charges, other.formal_charges)
        ):
            return False
        if (self.positions is None) != (other.positions is None):
            return False
        if self.positions is None:
            return True
        return bool(np.allclose(self.positions, other.positions, rtol=0.0, atol=atol))
