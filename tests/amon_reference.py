"""A brute-force amon enumerator, written apart from amondask.amons, to test it against.

Every subset of heavy atoms of size 1..N_I is tried (itertools.combinations), kept when
connected (breadth-first search), and every bond-order assignment of its bonds is tried
(itertools.product); the rules of issue 4 are applied literally on RDKit molecules with explicit
hydrogen atoms, cycles come from networkx. Slow on purpose: only for molecules of up to ~12
heavy atoms.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import networkx as nx
from rdkit import Chem

from amondask.chem import canonical_key

HALOGENS = {9, 17, 35, 53}
CARBONYL = Chem.MolFromSmarts("[#6;X3]=O")
CONJUGATED_LIMIT = {3: 1, 4: 1, 5: 4, 6: 4, 7: 4}
STRAINED_LIMIT = {3: 1, 4: 2}
ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
BOND = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def heavy_graph(mol):
    graph = nx.Graph()
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() > 1:
            graph.add_node(atom.GetIdx())
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i in graph and j in graph:
            graph.add_edge(i, j)
    return graph


def ring_sets(graph):
    """R(M): atom sets of simple cycles of 3..7 atoms minus unions of two others."""
    cycles = {frozenset(c) for c in nx.simple_cycles(graph, length_bound=7) if len(c) >= 3}
    out = set()
    for cycle in cycles:
        others = [o for o in cycles if o != cycle and o <= cycle]
        if not any(a | b == cycle for a, b in itertools.combinations(others, 2)):
            out.add(cycle)
    return out


def iconj(mol):
    """iconj per heavy atom index, by the definition in issue 4."""
    one = {}
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 1:
            continue
        if atom.GetAtomicNum() == 7 and atom.GetTotalDegree() == 3:
            carbonyl_neighbour = any(
                n.GetAtomicNum() == 6
                and any(
                    b.GetBondType() == Chem.BondType.DOUBLE
                    and b.GetOtherAtom(n).GetAtomicNum() == 8
                    for b in n.GetBonds()
                )
                for n in atom.GetNeighbors()
            )
            one[atom.GetIdx()] = (
                atom.GetIsAromatic() or carbonyl_neighbour or atom.GetTotalValence() > 3
            )
        else:
            one[atom.GetIdx()] = str(atom.GetHybridization()) in ("SP", "SP2")
    out = {}
    for index, is_one in one.items():
        atom = mol.GetAtomWithIdx(index)
        near = any(one.get(n.GetIdx(), False) for n in atom.GetNeighbors())
        saturated = atom.GetTotalValence() == atom.GetTotalDegree()
        coordination = {7: 3, 8: 2, 16: 2}.get(atom.GetAtomicNum())
        if is_one:
            out[index] = 1
        elif near and atom.GetAtomicNum() == 6:
            out[index] = 3
        elif near and saturated and atom.GetTotalDegree() == coordination:
            out[index] = 2
        else:
            out[index] = 0
    return out


def strained(rings, conj):
    out = set()
    for ring in sorted(rings, key=len):
        smaller = set().union(*[r for r in rings if len(r) < len(ring)])
        if ring <= smaller:
            continue
        if len(ring) in (3, 4) or (len(ring) in (5, 7) and all(conj[a] for a in ring)):
            out |= ring
    return out


def pi_count(atom):
    return atom.GetTotalValence() - atom.GetTotalDegree()


def bond_assignments(mol, atoms):
    """Every bond-order assignment of the bonds inside ``atoms`` keeping each pi count.

    Returns a list of {(i, j): order}; an atom with two or more pi bonds must keep all its
    multiple bonds with their Kekule orders (else the list is empty).
    """
    kekule = Chem.Mol(mol)
    Chem.Kekulize(kekule, clearAromaticFlags=True)
    bonds = [
        b for b in kekule.GetBonds() if b.GetBeginAtomIdx() in atoms and b.GetEndAtomIdx() in atoms
    ]
    for index in atoms:
        atom = kekule.GetAtomWithIdx(index)
        if pi_count(mol.GetAtomWithIdx(index)) >= 2:
            for b in atom.GetBonds():
                if ORDER[b.GetBondType()] >= 2 and b.GetOtherAtomIdx(index) not in atoms:
                    return []
    choices = []
    for b in bonds:
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        multi = pi_count(mol.GetAtomWithIdx(i)) >= 2 or pi_count(mol.GetAtomWithIdx(j)) >= 2
        if multi and ORDER[b.GetBondType()] >= 2:
            choices.append([ORDER[b.GetBondType()]])
        else:
            choices.append([1, 2])
    out = []
    for orders in itertools.product(*choices):
        pi = defaultdict(int)
        for b, order in zip(bonds, orders, strict=True):
            pi[b.GetBeginAtomIdx()] += order - 1
            pi[b.GetEndAtomIdx()] += order - 1
        if all(pi[a] == pi_count(mol.GetAtomWithIdx(a)) for a in atoms):
            out.append(
                {
                    (b.GetBeginAtomIdx(), b.GetEndAtomIdx()): o
                    for b, o in zip(bonds, orders, strict=True)
                }
            )
    return out


def capped(mol, atoms, orders):
    """The amon as an RDKit molecule with explicit H atoms; returns (mol, query->amon index)."""
    rw = Chem.RWMol()
    index = {}
    for a in sorted(atoms):
        atom = mol.GetAtomWithIdx(a)
        new = Chem.Atom(atom.GetAtomicNum())
        new.SetFormalCharge(atom.GetFormalCharge())
        new.SetNoImplicit(True)
        index[a] = rw.AddAtom(new)
    for (i, j), order in orders.items():
        rw.AddBond(index[i], index[j], BOND[order])
    for a in sorted(atoms):
        atom = mol.GetAtomWithIdx(a)
        inside = sum(1 for n in atom.GetNeighbors() if n.GetIdx() in atoms)
        for _ in range(atom.GetTotalDegree() - inside):
            h = rw.AddAtom(Chem.Atom(1))
            rw.AddBond(index[a], h, Chem.BondType.SINGLE)
    amon = rw.GetMol()
    Chem.SanitizeMol(amon)
    return amon, index


def connected(graph, atoms):
    return nx.is_connected(graph.subgraph(atoms))


def mesomeric_atoms(mol, graph):
    heavy = set(graph.nodes)
    assignments = bond_assignments(mol, heavy)
    if len(assignments) <= 1:
        return set()
    out = set()
    for bond in assignments[0]:
        if len({a[bond] for a in assignments}) > 1:
            out |= set(bond)
    return out


def reference_amons(smiles: str, max_heavy_atoms: int, rules: str) -> dict[str, int]:
    """{key: count} of the amons of ``smiles`` with at most ``max_heavy_atoms`` heavy atoms."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    graph = heavy_graph(mol)
    paper = rules == "paper"
    if paper:
        rings = ring_sets(graph)
        conj = iconj(mol)
        strain = strained(rings, conj)
        carbonyls = [set(m) for m in mol.GetSubstructMatches(CARBONYL)]
        meso = mesomeric_atoms(mol, graph)
    counts: dict[str, int] = defaultdict(int)
    for size in range(1, max_heavy_atoms + 1):
        for atoms in itertools.combinations(sorted(graph.nodes), size):
            atoms = set(atoms)
            if not connected(graph, atoms):
                continue
            if sum(mol.GetAtomWithIdx(a).GetFormalCharge() for a in atoms):
                continue
            if paper:
                if size == 1 and mol.GetAtomWithIdx(next(iter(atoms))).GetAtomicNum() in HALOGENS:
                    continue
                if any(0 < len(c & atoms) < 2 for c in carbonyls):
                    continue
                if any(
                    mol.GetAtomWithIdx(a).GetAtomicNum() in (15, 16)
                    and graph.degree[a] - sum(1 for n in graph[a] if n in atoms) >= 3
                    for a in atoms
                ):
                    continue
                if any(
                    all(conj[a] == 1 for a in r)
                    and CONJUGATED_LIMIT[len(r)] < len(r & atoms) < len(r)
                    for r in rings
                ):
                    continue
            keys = set()
            for orders in bond_assignments(mol, atoms):
                amon, index = capped(mol, atoms, orders)
                if paper and not _paper_amon_ok(
                    mol, graph, atoms, amon, index, rings, conj, strain, meso
                ):
                    continue
                keys.add(canonical_key(amon))
            for key in keys:
                counts[key] += 1
    return dict(counts)


def _paper_amon_ok(mol, graph, atoms, amon, index, rings, conj, strain, meso):
    amon_graph = heavy_graph(amon)
    amon_rings = ring_sets(amon_graph)
    amon_conj = iconj(amon)
    amon_strain = strained(amon_rings, amon_conj)
    back = {v: k for k, v in index.items()}
    for ring in rings:
        if len(ring) not in STRAINED_LIMIT or not any(conj[a] == 0 for a in ring):
            continue
        if not _in_strained_rings(ring, rings, conj):
            continue
        inside = ring & atoms
        if STRAINED_LIMIT[len(ring)] < len(inside) < len(ring):
            for a in inside:
                if (a in strain) != (index[a] in amon_strain):
                    return False
    if meso:
        for ring in amon_rings:
            if len(ring) != 5:
                continue
            for k in ring:
                if amon_conj[k] not in (1, 2):
                    continue
                for n in amon_graph[k]:
                    if n not in ring and back[n] in meso:
                        return False
    return True


def _in_strained_rings(ring, rings, conj):
    """True if ``ring`` itself is one of SR(M) (not only made of strained atoms)."""
    smaller = set().union(*[r for r in rings if len(r) < len(ring)])
    if ring <= smaller:
        return False
    return len(ring) in (3, 4) or (len(ring) in (5, 7) and all(conj[a] for a in ring))
