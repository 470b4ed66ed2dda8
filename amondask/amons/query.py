"""The heavy-atom graph of a query molecule, precomputed as bitmasks for amon enumeration.

Atoms are the query's heavy atoms, renumbered ``0..n_heavy-1`` in the query's atom order; a set
of atoms is a Python ``int`` whose bit ``i`` is heavy atom ``i``. Per atom the graph keeps what an
amon must preserve: element, formal charge, coordination number (heavy + H neighbours) and the
number of pi bonds ``pi(a) = total valence - coordination``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdkit import Chem

from amondask.errors import AmonError

_HALOGENS = frozenset({9, 17, 35, 53, 85})


def bits(mask: int) -> list[int]:
    """The indices of the set bits of ``mask``, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


@dataclass(frozen=True)
class QueryGraph:
    """Heavy-atom graph of a query with everything the amon rules need per atom.

    Attributes (tuples of length ``n``, indexed by heavy-atom index):
        query_index: the atom's index in the query molecule (H atoms included in that numbering).
        numbers / charges / n_hydrogens / coordination / pi: element, formal charge, attached H,
            total number of neighbours and number of pi bonds.
        neighbours: bitmask of heavy neighbours.
        fixed_partners: for an atom with ``pi >= 2``, the bitmask of atoms it shares a multiple
            bond with (these bonds must stay whole); for a ``pi == 1`` atom, the ``pi >= 2``
            atoms it shares its multiple bond with (its pi bond is used when they are present).
        bond_orders: {(i, j): Kekule order} with ``i < j`` for every heavy-heavy bond.
    """

    mol: Chem.Mol
    query_index: tuple[int, ...]
    numbers: tuple[int, ...]
    charges: tuple[int, ...]
    n_hydrogens: tuple[int, ...]
    coordination: tuple[int, ...]
    pi: tuple[int, ...]
    neighbours: tuple[int, ...]
    fixed_partners: tuple[int, ...]
    bond_orders: dict[tuple[int, int], int]
    pi1_mask: int
    multi_pi_mask: int
    charged_mask: int
    halogen_mask: int

    @property
    def n(self) -> int:
        return len(self.numbers)

    @property
    def all_mask(self) -> int:
        return (1 << self.n) - 1

    def order(self, i: int, j: int) -> int:
        return self.bond_orders[(i, j) if i < j else (j, i)]


def query_graph(mol: Chem.Mol, record_id: str = "") -> QueryGraph:
    """The :class:`QueryGraph` of a sanitized RDKit molecule (H explicit or implicit)."""
    kekule = Chem.Mol(mol)
    try:
        Chem.Kekulize(kekule, clearAromaticFlags=False)
    except Exception as exc:
        raise AmonError(
            f"cannot assign a Kekule structure to the query ({exc}); fix its aromatic rings",
            record_id=record_id,
        ) from exc
    heavy = [atom.GetIdx() for atom in mol.GetAtoms() if atom.GetAtomicNum() > 1]
    position = {index: k for k, index in enumerate(heavy)}
    numbers, charges, n_h, coordination, pi = [], [], [], [], []
    for index in heavy:
        atom = mol.GetAtomWithIdx(index)
        if atom.GetNumRadicalElectrons():
            raise AmonError(
                f"query atom {index} ({atom.GetSymbol()}) is a radical; amons are defined for "
                "closed-shell molecules only",
                record_id=record_id,
            )
        numbers.append(atom.GetAtomicNum())
        charges.append(atom.GetFormalCharge())
        n_h.append(atom.GetTotalNumHs(includeNeighbors=True))
        coordination.append(atom.GetTotalDegree())
        pi.append(atom.GetTotalValence() - atom.GetTotalDegree())
    n = len(heavy)
    neighbours = [0] * n
    bond_orders: dict[tuple[int, int], int] = {}
    for bond in kekule.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i not in position or j not in position:
            continue
        a, b = sorted((position[i], position[j]))
        order = {
            Chem.BondType.SINGLE: 1,
            Chem.BondType.DOUBLE: 2,
            Chem.BondType.TRIPLE: 3,
        }.get(bond.GetBondType())
        if order is None:
            raise AmonError(
                f"query bond {i}-{j} has type {bond.GetBondType()}; only single, double, "
                "triple and aromatic bonds are supported",
                record_id=record_id,
            )
        bond_orders[(a, b)] = order
        neighbours[a] |= 1 << b
        neighbours[b] |= 1 << a
    fixed = [0] * n
    for (a, b), order in bond_orders.items():
        if order >= 2 and (pi[a] >= 2 or pi[b] >= 2):
            fixed[a] |= 1 << b
            fixed[b] |= 1 << a
    for a in range(n):
        if pi[a] == 1:
            fixed[a] = sum(1 << b for b in bits(fixed[a]) if pi[b] >= 2)
    return QueryGraph(
        mol=mol,
        query_index=tuple(heavy),
        numbers=tuple(numbers),
        charges=tuple(charges),
        n_hydrogens=tuple(n_h),
        coordination=tuple(coordination),
        pi=tuple(pi),
        neighbours=tuple(neighbours),
        fixed_partners=tuple(fixed),
        bond_orders=bond_orders,
        pi1_mask=sum(1 << a for a in range(n) if pi[a] == 1),
        multi_pi_mask=sum(1 << a for a in range(n) if pi[a] >= 2),
        charged_mask=sum(1 << a for a in range(n) if charges[a]),
        halogen_mask=sum(1 << a for a in range(n) if numbers[a] in _HALOGENS),
    )
