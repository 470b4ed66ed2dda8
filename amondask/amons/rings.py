"""Rings, conjugation classes and strain as the "paper" amon rules define them.

All functions work on heavy-atom graphs given as neighbour bitmasks (see
:mod:`amondask.amons.query`); rings are bitmasks of their atoms.

* :func:`simple_cycles`: atom sets of all simple cycles of 3..7 atoms. Two different cycles on
  the same atom set (possible only in cages such as tetrahedrane) count once.
* :func:`relevant_rings` -- R(M): those cycles, minus every cycle whose atom set is the union of
  the atom sets of two other cycles (a bicyclo[1.1.0]butane perimeter, a housane perimeter).
* :func:`conjugation_classes` -- iconj(a) per heavy atom (1 conjugated, 3 C next to a conjugated
  atom, 2 saturated N/O/S next to one, 0 otherwise), from RDKit's hybridization.
* :func:`strained_rings` -- SR(M): rings of R(M), by increasing size, that do not consist
  entirely of atoms of strictly smaller rings of R(M), and are 3- or 4-membered, or 5- or
  7-membered with every atom's iconj != 0. *Choice*: "smaller rings" means rings of R(M) of
  smaller size (not only those already in SR).
"""

from __future__ import annotations

from collections.abc import Sequence

from rdkit import Chem

from amondask.amons.query import bits

MIN_RING_SIZE = 3
MAX_RING_SIZE = 7
_SATURATED_COORDINATION = {7: 3, 8: 2, 16: 2}


def simple_cycles(neighbours: Sequence[int], max_size: int = MAX_RING_SIZE) -> list[int]:
    """Atom sets (bitmasks) of the simple cycles of 3..``max_size`` atoms, sorted by size, mask.

    Each cycle is grown from its smallest atom through larger atoms only, so the search is
    bounded by the number of paths of at most ``max_size`` atoms.
    """
    found: set[int] = set()
    for start in range(len(neighbours)):
        above = ~((1 << (start + 1)) - 1)
        start_bit = 1 << start
        stack = [(start, start_bit, 1)]
        while stack:
            atom, path, length = stack.pop()
            nbrs = neighbours[atom]
            if length >= MIN_RING_SIZE and nbrs & start_bit:
                found.add(path)
            if length == max_size:
                continue
            candidates = nbrs & above & ~path
            while candidates:
                low = candidates & -candidates
                candidates ^= low
                stack.append((low.bit_length() - 1, path | low, length + 1))
    return sorted(found, key=lambda mask: (mask.bit_count(), mask))


def relevant_rings(cycles: Sequence[int]) -> list[int]:
    """R(M): the cycles minus those whose atom set is the union of two other cycles' sets."""
    kept = []
    for cycle in cycles:
        parts = [other for other in cycles if other != cycle and other & cycle == other]
        is_union = any(
            parts[i] | parts[j] == cycle
            for i in range(len(parts))
            for j in range(i + 1, len(parts))
        )
        if not is_union:
            kept.append(cycle)
    return kept


def conjugation_classes(mol: Chem.Mol, heavy_atoms: Sequence[int]) -> list[int]:
    """iconj for each atom index in ``heavy_atoms`` of a sanitized RDKit molecule.

    1: RDKit calls the atom SP or SP2, except that an N with three connections is 1 only when
    aromatic, bonded to a C double-bonded to O, or of valence above 3; otherwise 3: a C bonded to
    an iconj-1 atom; otherwise 2: a saturated N, O or S (coordination 3, 2, 2) bonded to an
    iconj-1 atom; otherwise 0.
    """
    conjugated = {}
    for index in heavy_atoms:
        atom = mol.GetAtomWithIdx(index)
        if atom.GetAtomicNum() == 7 and atom.GetTotalDegree() == 3:
            value = atom.GetIsAromatic() or atom.GetTotalValence() > 3 or _next_to_carbonyl(atom)
        else:
            value = atom.GetHybridization() in (
                Chem.HybridizationType.SP,
                Chem.HybridizationType.SP2,
            )
        conjugated[index] = bool(value)
    out = []
    for index in heavy_atoms:
        atom = mol.GetAtomWithIdx(index)
        if conjugated[index]:
            out.append(1)
            continue
        next_to_conjugated = any(conjugated.get(nbr.GetIdx(), False) for nbr in atom.GetNeighbors())
        z = atom.GetAtomicNum()
        if next_to_conjugated and z == 6:
            out.append(3)
        elif (
            next_to_conjugated
            and _SATURATED_COORDINATION.get(z) == atom.GetTotalDegree()
            and atom.GetTotalValence() == atom.GetTotalDegree()
        ):
            out.append(2)
        else:
            out.append(0)
    return out


def _next_to_carbonyl(atom: Chem.Atom) -> bool:
    for nbr in atom.GetNeighbors():
        if nbr.GetAtomicNum() != 6:
            continue
        for bond in nbr.GetBonds():
            other = bond.GetOtherAtom(nbr)
            if other.GetAtomicNum() == 8 and bond.GetBondType() == Chem.BondType.DOUBLE:
                return True
    return False


def strained_rings(rings: Sequence[int], iconj: Sequence[int], touching: int = -1) -> list[int]:
    """SR(M) from R(M) (bitmasks, any order) and iconj per atom (indexed like the bitmasks).

    ``iconj`` is only read for 5- and 7-membered rings; with ``touching`` (a bitmask), rings of
    those sizes that share no atom with it are left out without reading ``iconj`` (callers that
    only ask about those atoms can then compute iconj lazily).
    """
    out = []
    for ring in sorted(rings, key=lambda mask: (mask.bit_count(), mask)):
        size = ring.bit_count()
        smaller = 0
        for other in rings:
            if other.bit_count() < size:
                smaller |= other
        if ring & smaller == ring:
            continue
        if size in (3, 4):
            out.append(ring)
        elif size in (5, 7) and ring & touching:
            if all(iconj[a] != 0 for a in bits(ring)):
                out.append(ring)
    return out


def strained_atoms(rings: Sequence[int]) -> int:
    """Bitmask of the atoms that lie in any of ``rings``."""
    mask = 0
    for ring in rings:
        mask |= ring
    return mask
