"""Amons of periodic queries: hydrogen-saturated finite clusters cut from the crystal.

A crystal or a sheet (:mod:`amondask.chem.periodic`) has no ends to enumerate subgraphs from, so
its amons are clusters around each atom and each bond, as the authors built them for silicon
(Si5H12, Si17H36, ... to predict the diamond cell):

- *atom-centred*: an atom and every atom within k bonds of it, for k = 0..``shells``
  (diamond silicon: SiH4, Si5H12, Si35H36 for shells = 2);
- *bond-centred*: the two atoms of a bond and every atom within k bonds of either, for
  k = 0..``shells`` - 1 (Si2H6, Si8H18).

Each cluster is closed over the rings it cuts: an outside atom bonded to two or more cluster
atoms joins it, until none is left, so no two H caps point at one missing atom. Without this
the two-shell silicon cluster is the authors' Si17H36, whose 12 pairs of caps stand 1.42
angstrom apart (hBN flakes: 0.44), and its single-point energy carries that strain: GFN2-xTB
energies of the closed clusters are additive over Si groups to ~1 kcal/mol up to Si87H76,
those of the open ones to ~50.

Bonds are perceived across the cell's faces (:func:`amondask.chem.periodic.periodic_bonds`);
every bond a cluster cuts gets an H cap along it at the standard X-H length, as the covalent
amons do, and the cluster keeps the crystal's geometry (labels are single points there).
Bond orders come from the valences: single bonds where every atom is saturated (Si, B, N with
three or four neighbours), else RDKit's bond-order perception (a C=C pair in a doped sheet); a
cluster whose valences cannot be satisfied (a C cut from its double-bond partner) is left out.
Clusters of one amon graph are one conformer when their geometries are the same conformer by
the authors' criterion, so a perfect crystal gives one conformer per cluster kind.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from amondask import config
from amondask.amons.extract import Amon, AmonConformer
from amondask.amons.geometry import (
    cap_positions,
    conformer_signature,
    first_same_conformer,
    min_nonbonded_distance,
)
from amondask.chem.molecule import Molecule, canonical_key
from amondask.chem.periodic import cell_of, periodic_bonds
from amondask.errors import AmonError

Site = tuple[int, tuple[int, int, int]]  # (cell atom, integer cell offset)


@dataclass(frozen=True)
class PeriodicAmonSettings:
    """Which clusters a periodic query gives.

    Attributes:
        shells: atom-centred clusters of 0..shells bond shells, bond-centred of 0..shells-1.
        max_heavy_atoms: clusters with more heavy atoms are left out (None: no limit).
    """

    shells: int = 2
    max_heavy_atoms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shells, bool) or int(self.shells) != self.shells or self.shells < 0:
            raise AmonError(f"shells must be a whole number of at least 0, not {self.shells!r}")
        if self.max_heavy_atoms is not None and self.max_heavy_atoms < 1:
            raise AmonError(f"max_heavy_atoms must be at least 1, not {self.max_heavy_atoms}")

    @classmethod
    def from_config(cls) -> PeriodicAmonSettings:
        limit = config.get("amons.periodic.max-heavy-atoms")
        return cls(
            shells=int(config.get("amons.periodic.shells")),
            max_heavy_atoms=None if limit is None else int(limit),
        )

    @classmethod
    def from_parameter(cls, value: dict | None) -> PeriodicAmonSettings:
        if not value:
            return cls()
        return cls(shells=int(value["shells"]), max_heavy_atoms=value.get("max_heavy_atoms"))

    def as_parameter(self) -> dict:
        return {"shells": int(self.shells), "max_heavy_atoms": self.max_heavy_atoms}


def periodic_amons(query: Molecule, settings: PeriodicAmonSettings | None = None) -> list[Amon]:
    """The cluster amons of a periodic query (see the module doc), sorted by (n_heavy, key).

    ``settings``: None for ``amondask.amons.periodic``. Each Amon's occurrences are the cell
    indices of its heavy atoms (an atom may appear twice in a cluster larger than the cell);
    its conformers are the distinct cluster geometries (angstrom), never relaxed.
    """
    settings = settings or PeriodicAmonSettings.from_config()
    lattice, pbc = cell_of(query)
    numbers = query.numbers
    positions = query.positions
    factor = float(config.get("label.topology.covalent-radius-factor"))
    neighbours = periodic_bonds(numbers, positions, lattice, pbc, factor)
    heavy = [a for a in range(len(numbers)) if numbers[a] > 1]
    if not heavy:
        raise AmonError("the cell holds no heavy atom", record_id=query.id)

    def shifted(site: Site) -> np.ndarray:
        atom, offset = site
        return positions[atom] + np.asarray(offset) @ lattice

    def bonded(site: Site) -> list[Site]:
        atom, offset = site
        return [(j, _add(offset, o)) for j, o in neighbours[atom]]

    clusters: list[frozenset[Site]] = []
    origin = (0, 0, 0)
    for atom in heavy:
        core = {(atom, origin)}
        clusters += _grown(core, settings.shells, bonded, numbers)
        for j, offset in neighbours[atom]:
            if numbers[j] > 1 and (j, offset) > (atom, origin):  # each bond once
                clusters += _grown(
                    {(atom, origin), (j, offset)}, settings.shells - 1, bonded, numbers
                )
    threshold = float(config.get("amons.conformer-threshold"))
    clash = float(config.get("amons.clash-threshold-angstrom"))
    by_key: dict[str, list[tuple[Molecule, tuple[int, ...]]]] = defaultdict(list)
    seen: set[frozenset[Site]] = set()
    for cluster in clusters:
        key_sites = _translated_to_origin(cluster)
        if key_sites in seen:
            continue
        seen.add(key_sites)
        if settings.max_heavy_atoms is not None and len(cluster) > settings.max_heavy_atoms:
            continue
        molecule = _capped_cluster(cluster, numbers, shifted, bonded, query.id)
        if molecule is not None:
            by_key[molecule.id].append((molecule, tuple(sorted(a for a, _ in cluster))))
    amons = []
    for key, entries in by_key.items():
        conformers: list[AmonConformer] = []
        kept: list[np.ndarray] = []
        members: list[list[int]] = []
        n_heavy = int((entries[0][0].numbers > 1).sum())
        for index, (molecule, _) in enumerate(entries):
            signature = conformer_signature(molecule.positions)
            match = first_same_conformer(kept, signature, n_heavy, threshold)
            if match is None:
                kept.append(signature)
                members.append([index])
            else:
                members[match].append(index)
        for number, indices in enumerate(members):
            source = entries[indices[0]][0]
            molecule = Molecule._from_arrays(
                f"{key}/{number}",
                source.numbers,
                source.bonds,
                source.formal_charges,
                source.positions,
            )
            distance = min_nonbonded_distance(molecule)
            conformers.append(
                AmonConformer(
                    molecule=molecule,
                    occurrence_indices=tuple(indices),
                    clash=distance < clash,
                    min_distance_angstrom=distance,
                    relaxed=False,
                    source_occurrence=indices[0],
                )
            )
        amons.append(
            Amon(
                key=key,
                n_heavy=n_heavy,
                count=len(entries),
                occurrences=tuple(occurrence for _, occurrence in entries),
                conformers=tuple(conformers),
                molecule=conformers[0].molecule,
            )
        )
    return sorted(amons, key=lambda amon: (amon.n_heavy, amon.key))


def _add(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _grown(core: set[Site], shells: int, bonded, numbers: np.ndarray) -> list[frozenset[Site]]:
    """``core`` and its heavy-atom shells 1..``shells`` (each a cluster), or [] if shells < 0."""
    if shells < 0:
        return []
    current = _ring_closed(set(core), bonded, numbers)
    out = [frozenset(current)]
    for _ in range(shells):
        current |= {n for site in current for n in bonded(site) if numbers[n[0]] > 1}
        current = _ring_closed(current, bonded, numbers)
        out.append(frozenset(current))
    return out


MAX_RING_CLOSED_ATOMS = 2000
"""Ring closure stops with an AmonError past this many heavy atoms (Si87 at 3 shells in
diamond): in a densely bonded crystal (close packed, 12 bonds per atom) every missing
neighbour bonds to two cluster atoms and the closure would grow without end."""


def _ring_closed(cluster: set[Site], bonded, numbers: np.ndarray) -> set[Site]:
    """``cluster`` with every outside heavy atom bonded to two or more of its atoms added,
    until none is left: two H caps never point at one missing atom (in diamond they would
    stand 1.42 angstrom apart, in hBN 0.44), so every ring the cluster cuts is cut once.
    Raises AmonError when the cluster passes MAX_RING_CLOSED_ATOMS heavy atoms."""
    cluster = set(cluster)
    while True:
        if len(cluster) > MAX_RING_CLOSED_ATOMS:
            raise AmonError(
                f"closing the rings of a cluster amon passed {MAX_RING_CLOSED_ATOMS} heavy "
                "atoms without end: the crystal is too densely bonded (e.g. close packed) for "
                "H-capped cluster amons; check the cell and the bond perception "
                "(label.topology.covalent-radius-factor), or leave this cell out"
            )
        contacts: dict[Site, int] = defaultdict(int)
        for site in cluster:
            for other in bonded(site):
                if numbers[other[0]] > 1 and other not in cluster:
                    contacts[other] += 1
        closing = {site for site, count in contacts.items() if count >= 2}
        if not closing:
            return cluster
        cluster |= closing


def _translated_to_origin(cluster: frozenset[Site]) -> frozenset[Site]:
    """The cluster moved by whole cells so that its smallest site has offset 0: the same
    cluster found from two images of one centre is one occurrence."""
    first = min(cluster)
    shift = first[1]
    return frozenset(
        (atom, (o[0] - shift[0], o[1] - shift[1], o[2] - shift[2])) for atom, o in cluster
    )


def _capped_cluster(cluster, numbers, shifted, bonded, record_id) -> Molecule | None:
    """The cluster with its own H atoms and H caps on cut bonds, bond orders from valences;
    None when no bond-order assignment saturates it. The Molecule's id is its key."""
    sites = sorted(cluster)
    index = {site: k for k, site in enumerate(sites)}
    atom_numbers = [int(numbers[a]) for a, _ in sites]
    atom_positions = [shifted(site) for site in sites]
    bonds = []
    for site in sites:
        for other in bonded(site):
            if other in index:
                if index[other] > index[site]:
                    bonds.append((index[site], index[other]))
            elif numbers[other[0]] == 1:  # the crystal's own H atom on this heavy atom
                bonds.append((index[site], len(atom_numbers)))
                atom_numbers.append(1)
                atom_positions.append(shifted(other))
            else:  # a cut bond: an H cap along it
                cap = cap_positions(
                    shifted(site)[None], shifted(other)[None], [int(numbers[site[0]])]
                )[0]
                bonds.append((index[site], len(atom_numbers)))
                atom_numbers.append(1)
                atom_positions.append(cap)
    mol = _saturated(atom_numbers, bonds, np.array(atom_positions))
    if mol is None:
        return None
    return Molecule.from_rdkit(mol, canonical_key(mol))


def _saturated(numbers: list[int], bonds: list[tuple[int, int]], positions: np.ndarray):
    """A sanitized RDKit molecule (explicit H, 3D) with single bonds when every atom is then
    saturated, else RDKit's bond orders from the connectivity; None when neither works."""
    rw = Chem.RWMol()
    for z in numbers:
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    for i, j in bonds:
        rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    conformer = Chem.Conformer(len(numbers))
    for k, (x, y, z) in enumerate(positions.tolist()):
        conformer.SetAtomPosition(k, Point3D(x, y, z))
    mol = rw.GetMol()
    mol.AddConformer(conformer, assignId=True)
    try:
        Chem.SanitizeMol(mol)
        if not any(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()):
            return mol
    except Exception:
        pass
    if sum(numbers) % 2:  # an odd electron count has no closed-shell neutral bond orders
        return None  # (and RDKit's search can take minutes to find that out)
    try:
        perceived = Chem.Mol(mol)
        for atom in perceived.GetAtoms():
            atom.SetNumRadicalElectrons(0)
        rdDetermineBonds.DetermineBondOrders(perceived, charge=0)
        Chem.SanitizeMol(perceived)
    except Exception:
        return None
    if any(atom.GetNumRadicalElectrons() for atom in perceived.GetAtoms()):
        return None
    return perceived
