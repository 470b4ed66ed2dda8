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

Engine: RDKit types the atoms and supplies the MMFF94 parameters, once per amon graph (cached
per canonical atom order, per process); the energy, gradient and minimization run compiled in
:mod:`amondask.amons.mmff` (the same MMFF94 energy as RDKit's to 1e-6 kcal/mol, minimized to
1e-3 kcal/mol/A with preconditioned BFGS), several times faster than RDKit's minimizer, which
remains available as ``relax_amon(..., engine="rdkit")``, the reference in the tests. The
dihedral restraint is RDKit's MMFF torsion constraint: ``k d^2`` with ``d`` the excess over the
window in degrees and ``k`` = 100 kcal/mol/deg^2.

Conformers, the authors' criterion (binghuang2018/aqml, ``cheminfo/oechem/amon.py`` and
``cheminfo/algo/amon.py``: ``Sets.update`` with ``M='cml1'``, ``thresh=0.01``): each relaxed
geometry is described by :func:`conformer_signature` (per atom, the sum of inverse distances to
all other atoms, H included, no nuclear charges, sorted), and a geometry is a new conformer of
its amon when its L1 distance (:func:`conformer_distance`, absolute, 1/angstrom) to *every*
kept conformer exceeds the threshold; (covalent) amons of at most
:data:`SINGLE_CONFORMER_MAX_HEAVY_ATOMS` heavy atoms have one conformer. Both the per-query
dedup and the cross-query merge decide with :func:`first_same_conformer`. Non-covalent amons
(:mod:`.noncovalent`: several molecules, a key with ``.``) keep every distinct geometry however
few their heavy atoms: two water molecules are one amon graph, and how they sit is all they
tell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from amondask.amons import mmff
from amondask.chem.molecule import Molecule

_RDKIT_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}

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
# flat-bottomed dihedral restraint beyond the window: energy k d^2 with d the excess in degrees
# (RDKit's MMFF torsion constraint; k = 100 kcal/mol/deg^2 holds the dihedrals within a small
# fraction of a degree beyond the window)
_TORSION_FORCE_CONSTANT = 100.0
# a dihedral over a bond angle above this (degrees) is undefined: neither held nor checked
_STRAIGHT_ANGLE_DEGREES = 175.0


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


def coulomb_spectra(numbers: np.ndarray, positions_angstrom: np.ndarray) -> np.ndarray:
    """:func:`coulomb_spectrum` of a stack of k molecules of n atoms each: numbers (k, n),
    positions (k, n, 3); returns (k, n).

    One batched eigensolver call; the same values as one :func:`coulomb_spectrum` per
    molecule, bit for bit (tests/test_amons_mmff.py).
    """
    z = numbers.astype(np.float64)
    r = positions_angstrom * _ANGSTROM_TO_BOHR
    diff = r[:, :, None, :] - r[:, None, :, :]
    distance = np.sqrt(np.einsum("sijk,sijk->sij", diff, diff))
    diagonal = np.arange(z.shape[1])
    distance[:, diagonal, diagonal] = 1.0
    matrix = z[:, :, None] * z[:, None, :] / distance
    matrix[:, diagonal, diagonal] = 0.5 * z**2.4
    return np.sort(np.linalg.eigvalsh(matrix), axis=1)[:, ::-1]


#: Amons with at most this many heavy atoms have a single conformer (the authors' rule: their
#: geometries differ only by bond lengths and angles, which the labeler relaxes anyway).
SINGLE_CONFORMER_MAX_HEAVY_ATOMS = 2


def conformer_signature(positions_angstrom: np.ndarray) -> np.ndarray:
    """The authors' conformer descriptor ("cml1") of one geometry: (n,) per-atom sums of
    inverse distances to all other atoms (1/angstrom), sorted ascending.

    The L1 norms of the rows of the Coulomb matrix without nuclear charges (off-diagonal
    1/r_ij in angstrom, zero diagonal), over all atoms (H included). Invariant to rotation,
    translation and atom order.
    """
    return conformer_signatures(np.asarray(positions_angstrom)[None])[0]


def conformer_signatures(positions_angstrom: np.ndarray) -> np.ndarray:
    """:func:`conformer_signature` of a stack of k geometries of n atoms: (k, n, 3) -> (k, n)."""
    r = np.asarray(positions_angstrom, dtype=np.float64)
    diff = r[:, :, None, :] - r[:, None, :, :]
    distance = np.sqrt(np.einsum("sijk,sijk->sij", diff, diff))
    diagonal = np.arange(r.shape[1])
    distance[:, diagonal, diagonal] = np.inf  # zero diagonal in the inverse
    return np.sort((1.0 / distance).sum(axis=2), axis=1)


def conformer_distance(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
    """The authors' conformer distance: ``sum |a - b|`` of two signatures (L1, absolute,
    1/angstrom); see :func:`conformer_signature`."""
    return float(_l1_distance(_as_vector(signature_a), _as_vector(signature_b)))


def is_covalent_key(key: str) -> bool:
    """True for the key of a covalent amon (one molecule), False for a non-covalent one (several
    molecules: canonical SMILES with ``.``)."""
    return "." not in key


def first_same_conformer(
    kept: np.ndarray | Sequence[np.ndarray],
    signature: np.ndarray,
    n_heavy: int,
    threshold: float,
    *,
    covalent: bool = True,
) -> int | None:
    """Index of the first of the ``kept`` signatures (m, n) of one amon that ``signature`` is
    the same conformer as, or None when it is a new conformer.

    Same conformer: :func:`conformer_distance` at most ``threshold`` (1/angstrom); a
    ``covalent`` amon of at most :data:`SINGLE_CONFORMER_MAX_HEAVY_ATOMS` heavy atoms has only
    one conformer (a non-covalent one is compared like any other, see the module doc).
    Compiled, stopping at the first match: the merge calls it for every query's conformer
    against up to thousands of kept ones.
    """
    if len(kept) == 0:
        return None
    if covalent and n_heavy <= SINGLE_CONFORMER_MAX_HEAVY_ATOMS:
        return 0
    match = _first_within(_as_matrix(kept), _as_vector(signature), float(threshold))
    return None if match < 0 else int(match)


def nearest_conformer(kept: np.ndarray | Sequence[np.ndarray], signature: np.ndarray) -> int:
    """Index of the ``kept`` signature (m, n) nearest to ``signature`` (n,) in the authors'
    :func:`conformer_distance` (the first of equally near ones): where a capped store puts a
    geometry that is a new conformer but finds its amon's conformers full."""
    if len(kept) == 0:
        raise ValueError("no kept conformer to choose from")
    return int(_nearest(_as_matrix(kept), _as_vector(signature)))


def _as_matrix(kept: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(kept, dtype=np.float64)).reshape(len(kept), -1)


def _as_vector(signature: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(signature, dtype=np.float64).reshape(-1)


@numba.njit(cache=True)
def _l1_distance(row: np.ndarray, signature: np.ndarray) -> float:
    """sum |row - signature|, summed in index order (the one definition of
    :func:`conformer_distance` that every dedup decision uses)."""
    total = 0.0
    for k in range(signature.shape[0]):
        total += abs(row[k] - signature[k])
    return total


@numba.njit(cache=True)
def _first_within(kept: np.ndarray, signature: np.ndarray, threshold: float) -> int:
    for j in range(kept.shape[0]):
        if _l1_distance(kept[j], signature) <= threshold:
            return j
    return -1


@numba.njit(cache=True)
def _nearest(kept: np.ndarray, signature: np.ndarray) -> int:
    best = 0
    best_distance = np.inf
    for j in range(kept.shape[0]):
        distance = _l1_distance(kept[j], signature)
        if distance < best_distance:
            best = j
            best_distance = distance
    return best


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
    max_iterations: int = 1000,
    engine: str = "compiled",
) -> Relaxation:
    """MMFF94 on the H atoms (heavy atoms fixed), then on all atoms with dihedrals held.

    Returns the relaxed positions; ``accepted`` is False when a dihedral moved by more than
    ``torsion_tolerance_degrees`` (the positions are then still returned, for inspection).
    ``engine`` "compiled" (default) minimizes with :mod:`amondask.amons.mmff` (the same MMFF94
    energy, converged to 1e-3 kcal/mol/A, several times faster); "rdkit" with RDKit's own force
    field and minimizer (the reference).
    """
    if engine == "rdkit":
        return _relax_amon_rdkit(
            molecule,
            torsion_window_degrees=torsion_window_degrees,
            torsion_tolerance_degrees=torsion_tolerance_degrees,
            max_iterations=max_iterations,
        )
    if engine != "compiled":
        raise ValueError(f"engine must be 'compiled' or 'rdkit', not {engine!r}")
    setup = _relaxation_setup(molecule)
    if setup is None:
        # no parameters from RDKit's getters (or no MMFF94 types at all): RDKit's own path
        # decides, with its empirical rules, or reports the fragment as not relaxed
        return _relax_amon_rdkit(
            molecule,
            torsion_window_degrees=torsion_window_degrees,
            torsion_tolerance_degrees=torsion_tolerance_degrees,
            max_iterations=max_iterations,
        )
    terms, hydrogen_terms, hydrogens, all_atoms, dihedrals = setup
    positions, change = mmff.relax_two_step(
        hydrogen_terms,
        terms,
        molecule.positions,
        hydrogens,
        all_atoms,
        dihedrals,
        window_degrees=torsion_window_degrees,
        force_constant=_TORSION_FORCE_CONSTANT,
        straight_degrees=_STRAIGHT_ANGLE_DEGREES,  # dihedrals over these are undefined
        max_iterations=max_iterations,
    )
    accepted = change <= torsion_tolerance_degrees
    message = "" if accepted else f"dihedrals moved by up to {change:.1f} degrees under MMFF94"
    return Relaxation(positions, accepted, change, message)


# What the relaxation needs of an amon's graph, cached per process at two levels: per
# atom-ordered graph (MMFF terms in that order, H atoms, all atoms, heavy dihedrals; None
# without MMFF94 parameters), and per canonically ordered graph (the MMFF terms), so that the
# parameters of one amon are extracted once whichever query and atom order it comes in.
# Bounded: ~16 kB per setup entry, ~8.5 kB per terms entry (measured on QM9 amons), ~410 MB per
# process when both are full; when one is full, its older half goes. A terms miss costs ~0.5 ms
# (RDKit typing and parameters), a setup miss ~0.15 ms (canonical ranking). The setup cache is
# the larger: one amon comes in many atom orders; on 9-heavy QM9 queries (after 4,000 of them)
# a limit of 5,000 missed on 14% of the relaxations, one of 40,000 on 6%; 20,000 is between.
_SETUP_CACHE: dict[bytes, tuple | None] = {}
_CANONICAL_TERMS: dict[bytes, mmff.MMFFTerms | None] = {}
_SETUP_CACHE_LIMIT = 20_000
_TERMS_CACHE_LIMIT = 10_000


def _make_room(cache: dict, limit: int) -> None:
    if len(cache) >= limit:
        for key in list(itertools.islice(cache, len(cache) // 2)):
            del cache[key]


def _relaxation_setup(molecule: Molecule):
    """The MMFF terms (all; those that move with the H atoms), H atoms, all atoms and heavy
    dihedrals of ``molecule`` (cached)."""
    key = _graph_code(molecule.numbers, molecule.formal_charges, molecule.bonds)
    if key in _SETUP_CACHE:
        return _SETUP_CACHE[key]
    terms = _ordered_terms(molecule)
    setup = None
    if terms is not None:
        hydrogens = np.flatnonzero(molecule.numbers == 1)
        setup = (
            terms,
            mmff.moving_terms(terms, hydrogens, molecule.n_atoms),
            hydrogens,
            np.arange(molecule.n_atoms),
            heavy_dihedrals(molecule),
        )
    _make_room(_SETUP_CACHE, _SETUP_CACHE_LIMIT)
    _SETUP_CACHE[key] = setup
    return setup


def _graph_code(numbers: np.ndarray, charges: np.ndarray, bonds: np.ndarray) -> bytes:
    return b"|".join((numbers.tobytes(), charges.tobytes(), bonds.tobytes()))


def _ordered_terms(molecule: Molecule) -> mmff.MMFFTerms | None:
    """MMFF terms in the molecule's atom order, via the canonical order's cached terms."""
    order = _canonical_order(molecule)
    if order is None:
        return mmff.mmff_terms(molecule.rdkit_mol)
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    bonds = new_index[molecule.bonds[:, :2]]
    canonical_bonds = np.column_stack((bonds.min(axis=1), bonds.max(axis=1), molecule.bonds[:, 2]))
    canonical_bonds = canonical_bonds[np.lexsort(canonical_bonds[:, ::-1].T)]
    numbers = molecule.numbers[order]
    charges = molecule.formal_charges[order]
    code = _graph_code(numbers, charges, canonical_bonds)
    if code not in _CANONICAL_TERMS:
        canonical = Molecule(
            id=molecule.id,
            numbers=numbers,
            bonds=canonical_bonds,
            formal_charges=charges,
            positions=molecule.positions[order],
        )
        _make_room(_CANONICAL_TERMS, _TERMS_CACHE_LIMIT)
        _CANONICAL_TERMS[code] = mmff.mmff_terms(canonical.rdkit_mol)
    terms = _CANONICAL_TERMS[code]
    return None if terms is None else mmff.permuted(terms, order)


def _canonical_order(molecule: Molecule) -> np.ndarray | None:
    """Atom indices in a canonical order: heavy atoms by RDKit canonical rank (of the heavy
    atom graph with H counts), then each heavy atom's H atoms. None when an H atom is not
    bonded to exactly one heavy atom."""
    numbers = molecule.numbers
    heavy = np.flatnonzero(numbers > 1)
    bonds = molecule.bonds
    is_h = numbers[bonds[:, :2]] == 1
    h_bonds = bonds[is_h.any(axis=1)]
    if np.any(is_h.all(axis=1)):
        return None
    h_atoms = np.where(numbers[h_bonds[:, 0]] == 1, h_bonds[:, 0], h_bonds[:, 1])
    h_owner = np.where(numbers[h_bonds[:, 0]] == 1, h_bonds[:, 1], h_bonds[:, 0])
    if len(h_atoms) != molecule.n_atoms - len(heavy) or len(set(h_atoms.tolist())) != len(h_atoms):
        return None
    local = np.full(molecule.n_atoms, -1)
    local[heavy] = np.arange(len(heavy))
    h_count = np.bincount(local[h_owner], minlength=len(heavy))
    rw = Chem.RWMol()
    for index, atom_index in enumerate(heavy.tolist()):
        atom = Chem.Atom(int(numbers[atom_index]))
        atom.SetFormalCharge(int(molecule.formal_charges[atom_index]))
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(int(h_count[index]))
        rw.AddAtom(atom)
    for i, j, bond_order in bonds[~is_h.any(axis=1)].tolist():
        rw.AddBond(int(local[i]), int(local[j]), _RDKIT_BOND_TYPES[bond_order])
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    ranks = np.array(Chem.CanonicalRankAtoms(mol, breakTies=True))
    heavy_order = heavy[np.argsort(ranks, kind="stable")]
    h_order = h_atoms[np.lexsort((h_atoms, ranks[local[h_owner]]))]
    return np.concatenate((heavy_order, h_order))


def _bent_dihedrals(positions: np.ndarray, dihedrals: np.ndarray) -> np.ndarray:
    """The dihedrals not over a (nearly) linear angle: those are undefined, neither held nor
    checked."""
    if not len(dihedrals):
        return dihedrals
    straight = (bond_angles_degrees(positions, dihedrals[:, :3]) > _STRAIGHT_ANGLE_DEGREES) | (
        bond_angles_degrees(positions, dihedrals[:, 1:]) > _STRAIGHT_ANGLE_DEGREES
    )
    return dihedrals[~straight]


def _torsion_outcome(
    positions: np.ndarray, dihedrals: np.ndarray, before: np.ndarray, tolerance_degrees: float
) -> Relaxation:
    change = 0.0
    if len(dihedrals):
        after = dihedral_angles_degrees(positions, dihedrals)
        delta = np.abs((after - before + 180.0) % 360.0 - 180.0)
        change = float(delta.max())
    accepted = change <= tolerance_degrees
    message = "" if accepted else f"dihedrals moved by up to {change:.1f} degrees under MMFF94"
    return Relaxation(positions, accepted, change, message)


def _relax_amon_rdkit(
    molecule: Molecule,
    *,
    torsion_window_degrees: float,
    torsion_tolerance_degrees: float,
    max_iterations: int,
) -> Relaxation:
    """:func:`relax_amon` with RDKit's MMFF94 force field and minimizer (the reference)."""
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
    dihedrals = _bent_dihedrals(molecule.positions, heavy_dihedrals(molecule))
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
    return _torsion_outcome(positions, dihedrals, before, torsion_tolerance_degrees)
