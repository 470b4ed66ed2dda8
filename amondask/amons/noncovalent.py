"""Non-covalent amons: pieces of a query made of several molecules, at the query's geometry.

A query made of several molecules (a water cluster, a DNA base pair, a host and its guest) is
held together by hydrogen bonds and dispersion, which no covalent amon sees: each covalent amon
lies inside one molecule. Two kinds of non-covalent amon carry those interactions; both keep
the query's geometry (every atom where it is in the query, H caps on cut covalent bonds) and are
never relaxed: relaxing would move the molecules to another arrangement, whose energy says
nothing about the query's. Their labels must be single points at that geometry.

*Combinations* (the authors' non-covalent amons): 2 to ``max_components`` covalent amon
occurrences, each from a different molecule of the query (a connected component of its bond
graph), in contact, with at most ``max_heavy_atoms`` heavy atoms in all. Two components are in
contact when an atom of one (a heavy atom or one of its own H atoms; caps do not count) lies
within ``contact_angstrom`` of an atom of the other, and a combination must be connected
through contacts (a chain A...B...C counts), so it holds one interaction motif, not two
molecules that merely share a partner. The default 3.0 angstrom takes in every hydrogen bond
(H...acceptor 1.6-2.2 angstrom) and the closest H...H contacts; pi stacking (3.4-3.8 angstrom
between ring atoms) needs about 4.

*Clusters* (molecular clusters such as water): for each molecule of at most N_I heavy atoms
and each size s of ``cluster_sizes``, the molecule and its s - 1 nearest such molecules
(smallest interatomic distance), whole. Combinations of three water molecules cannot teach a
model the environment of a water inside (H2O)20, whose atoms see a full first shell and part of
the second within aSLATM's 4.8 angstrom cut-off; the authors trained on (H2O)n of n = 1, 2, 4,
5, 8, 9 and 10 to predict n = 11..21. The clusters are such small clusters cut from the query
itself: one per molecule and size, so their number grows linearly with the query. A cluster is
always smaller than the query (s below its count of small molecules).

Key: the canonical SMILES of the combined amon (RDKit writes the molecules apart with ``.``,
e.g. ``O.O`` for a water dimer); an occurrence is the sorted union of its components' query
heavy atoms (a combination and a cluster with the same atoms are one occurrence).
Intramolecular contacts (a peptide folding onto itself) are not combined: the components always
come from different molecules.

Cost: the components of combinations are the covalent occurrences below the heavy-atom limit
that touch another molecule; contacts come from a k-d tree on the query's atoms, and
combinations grow one contact partner at a time, so the work scales with the occurrences at the
molecules' interfaces, not with the square of all occurrences.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from amondask import config
from amondask.amons.graphs import AmonGraph, AmonOccurrence, amon_key, sorted_amon_graphs
from amondask.amons.query import QueryGraph, bits
from amondask.errors import AmonError


@dataclass(frozen=True)
class NoncovalentSettings:
    """How covalent amons are combined into non-covalent ones.

    Attributes:
        max_components: at most this many covalent amons per non-covalent amon (the authors:
            3); 1 switches non-covalent amons off.
        contact_angstrom: two components are in contact when two of their atoms (H atoms
            counted, caps not) are at most this far apart (angstrom).
        max_heavy_atoms: heavy atoms of a combination in all; None: the amon size N_I.
        cluster_sizes: numbers of molecules s of the cluster amons (empty: none): per molecule
            of at most N_I heavy atoms, it and its s - 1 nearest such molecules, whole (the
            authors' water clusters: 2, 4, 5, 8, 9, 10).
        intramolecular_min_bonds: combinations may also join parts of one molecule whose
            atoms are all at least this many bonds apart (a folded chain's hydrogen bonds);
            None: parts of different molecules only.
    """

    max_components: int = 1
    contact_angstrom: float = 3.0
    max_heavy_atoms: int | None = None
    cluster_sizes: tuple[int, ...] = ()
    intramolecular_min_bonds: int | None = None

    def __post_init__(self) -> None:
        far = self.intramolecular_min_bonds
        if far is not None and (isinstance(far, bool) or int(far) != far or far < 3):
            raise AmonError(
                "intramolecular_min_bonds must be a whole number of at least 3 (closer parts "
                f"share a neighbour, where both would put an H cap), or None, not {far!r}"
            )
        sizes = tuple(self.cluster_sizes or ())
        if any(isinstance(s, bool) or int(s) != s or s < 2 for s in sizes):
            raise AmonError(
                f"cluster_sizes are numbers of molecules, each at least 2, not {list(sizes)}"
            )
        object.__setattr__(self, "cluster_sizes", tuple(sorted({int(s) for s in sizes})))
        if isinstance(self.max_components, bool) or int(self.max_components) != self.max_components:
            raise AmonError(f"max_components must be a whole number, not {self.max_components!r}")
        if self.max_components < 1:
            raise AmonError(
                f"max_components must be at least 1 (1: covalent amons only), not "
                f"{self.max_components}"
            )
        if not np.isfinite(self.contact_angstrom) or self.contact_angstrom <= 0:
            raise AmonError(
                f"contact_angstrom must be a positive distance, not {self.contact_angstrom!r}"
            )
        if self.max_heavy_atoms is not None and self.max_heavy_atoms < 2:
            raise AmonError(
                "max_heavy_atoms of a non-covalent amon must be at least 2 (two molecules), "
                f"not {self.max_heavy_atoms}"
            )

    @property
    def enabled(self) -> bool:
        return self.max_components >= 2 or bool(self.cluster_sizes)

    @classmethod
    def from_config(cls) -> NoncovalentSettings:
        """The settings of ``amondask.amons.noncovalent``."""
        limit = config.get("amons.noncovalent.max-heavy-atoms")
        return cls(
            max_components=int(config.get("amons.noncovalent.max-components")),
            contact_angstrom=float(config.get("amons.noncovalent.contact-angstrom")),
            max_heavy_atoms=None if limit is None else int(limit),
            cluster_sizes=tuple(config.get("amons.noncovalent.cluster-sizes") or ()),
            intramolecular_min_bonds=config.get("amons.noncovalent.intramolecular-min-bonds"),
        )

    @classmethod
    def from_parameter(cls, value: dict | None) -> NoncovalentSettings:
        """The settings recorded in a workspace (:meth:`as_parameter`; None: off)."""
        if not value:
            return cls()
        return cls(
            max_components=int(value["max_components"]),
            contact_angstrom=float(value["contact_angstrom"]),
            max_heavy_atoms=value.get("max_heavy_atoms"),
            cluster_sizes=tuple(value.get("cluster_sizes") or ()),
            intramolecular_min_bonds=value.get("intramolecular_min_bonds"),
        )

    def as_parameter(self) -> dict | None:
        """The workspace's defining parameter: None when off, else the settings."""
        if not self.enabled:
            return None
        parameter = {
            "max_components": int(self.max_components),
            "contact_angstrom": float(self.contact_angstrom),
            "max_heavy_atoms": self.max_heavy_atoms,
            "cluster_sizes": list(self.cluster_sizes),
        }
        if self.intramolecular_min_bonds is not None:
            parameter["intramolecular_min_bonds"] = int(self.intramolecular_min_bonds)
        return parameter


def molecule_of_atoms(graph: QueryGraph) -> tuple[int, ...]:
    """Per heavy atom of ``graph``, the index of its molecule (connected component), numbered
    in order of each molecule's first heavy atom."""
    molecule = [-1] * graph.n
    count = 0
    for start in range(graph.n):
        if molecule[start] >= 0:
            continue
        stack = [start]
        molecule[start] = count
        while stack:
            atom = stack.pop()
            for neighbour in bits(graph.neighbours[atom]):
                if molecule[neighbour] < 0:
                    molecule[neighbour] = count
                    stack.append(neighbour)
        count += 1
    return tuple(molecule)


def far_atoms(
    graph: QueryGraph, min_bonds: int | None, molecule: tuple[int, ...] | None = None
) -> list[int]:
    """Per heavy atom, the bitmask of the heavy atoms a combination may join it with: those of
    other molecules, and with ``min_bonds`` those of its own molecule at least that many bonds
    away. ``molecule``: :func:`molecule_of_atoms` of the graph, when at hand."""
    molecule = molecule_of_atoms(graph) if molecule is None else molecule
    members: dict[int, int] = defaultdict(int)
    for atom, home in enumerate(molecule):
        members[home] |= 1 << atom
    everything = graph.all_mask
    out = []
    for atom in range(graph.n):
        own = members[molecule[atom]]
        if min_bonds is None:
            out.append(everything & ~own)
            continue
        near = reached = 1 << atom
        for _ in range(min_bonds - 1):  # atoms fewer than min_bonds bonds away
            frontier = 0
            for other in bits(reached):
                frontier |= graph.neighbours[other]
            reached = frontier & ~near
            near |= frontier
        out.append(everything & ~near)
    return out


def contact_partners(
    graph: QueryGraph,
    positions_angstrom: np.ndarray,
    contact_angstrom: float,
    far: list[int] | None = None,
) -> list[int]:
    """Per heavy atom ``a``, the bitmask of heavy atoms in contact with it that a combination
    may join it with (``far``, :func:`far_atoms`; None: those of other molecules): some atom of
    ``a``'s group (``a`` and its own H atoms) within ``contact_angstrom`` of some atom of
    theirs. ``positions_angstrom``: (n_atoms, 3), the whole query's."""
    far = far_atoms(graph, None) if far is None else far
    owner = _group_owner(graph, len(positions_angstrom))
    kept = np.flatnonzero(owner >= 0)
    partners = [0] * graph.n
    if len(kept) < 2:
        return partners
    tree = cKDTree(np.asarray(positions_angstrom, dtype=np.float64)[kept])
    for i, j in tree.query_pairs(float(contact_angstrom), output_type="ndarray"):
        a, b = int(owner[kept[i]]), int(owner[kept[j]])
        if far[a] >> b & 1:
            partners[a] |= 1 << b
            partners[b] |= 1 << a
    return partners


def find_noncovalent_amon_graphs(
    graph: QueryGraph,
    positions_angstrom: np.ndarray | None,
    covalent: list[AmonGraph],
    settings: NoncovalentSettings,
    max_heavy_atoms: int,
) -> list[AmonGraph]:
    """The non-covalent amons of a query: combinations and clusters (see the module doc).

    ``positions_angstrom``: (n_atoms, 3), the query's own coordinates (None: it has none, an
    error when it holds several molecules). ``covalent``: the query's covalent amons
    (:func:`~amondask.amons.graphs.find_amon_graphs`), whose occurrences are the components of
    the combinations; ``max_heavy_atoms``: the amon size N_I, the combinations' total limit
    when ``settings.max_heavy_atoms`` is None and the largest molecule a cluster takes.
    Returns AmonGraphs sorted by (n_heavy, key), occurrences sorted by atoms; empty for a
    single molecule or when off.
    """
    if not settings.enabled:
        return []
    molecule = molecule_of_atoms(graph)
    if len(set(molecule)) < 2 and settings.intramolecular_min_bonds is None:
        return []
    if positions_angstrom is None:
        raise AmonError(
            "non-covalent amons need the query's 3D coordinates (which molecules touch); read "
            "the complex from an XYZ, SDF or PDB file"
        )
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    found = []
    if settings.max_components >= 2:
        far = far_atoms(graph, settings.intramolecular_min_bonds, molecule)
        found += _combinations(graph, positions, covalent, settings, max_heavy_atoms, far)
    if settings.cluster_sizes:
        found += _clusters(graph, positions, molecule, settings.cluster_sizes, max_heavy_atoms)
    out: dict[str, AmonGraph] = {}
    seen: set[tuple[tuple[int, ...], str]] = set()
    for atoms, bonds in found:
        key = amon_key(graph, atoms, bonds)
        if (atoms, key) in seen:
            continue
        seen.add((atoms, key))
        entry = out.get(key)
        if entry is None:
            entry = out[key] = AmonGraph(key=key, n_heavy=len(atoms), occurrences=[])
        entry.occurrences.append(AmonOccurrence(atoms=atoms, bonds=bonds))
    return sorted_amon_graphs(out)


_Occurrence = tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]

#: Molecules farther apart than this are never neighbours in a cluster (beyond any
#: representation's cut-off; it bounds the distance search).
CLUSTER_REACH_ANGSTROM = 12.0


def _combinations(
    graph: QueryGraph,
    positions: np.ndarray,
    covalent: list[AmonGraph],
    settings: NoncovalentSettings,
    max_heavy_atoms: int,
    far: list[int],
) -> list[_Occurrence]:
    """Every combination of 2..max_components covalent occurrences of different molecules (or
    far apart in one, see ``intramolecular_min_bonds``; ``far``: :func:`far_atoms`), connected
    through contacts, within the heavy-atom limit (atoms, bonds)."""
    limit = int(settings.max_heavy_atoms or max_heavy_atoms)
    partners = contact_partners(graph, positions, settings.contact_angstrom, far)
    components: list[AmonOccurrence] = []  # occurrences that touch another molecule
    reach: list[int] = []  # per component, the heavy atoms of other molecules it touches
    for entry in covalent:
        if entry.n_heavy >= limit:
            continue
        for occurrence in entry.occurrences:
            touched = 0
            for atom in occurrence.atoms:
                touched |= partners[atom]
            if touched:
                components.append(occurrence)
                reach.append(touched)
    mask = [sum(1 << atom for atom in o.atoms) for o in components]
    joinable = []  # per component, the atoms another component may hold to join it
    for occurrence in components:
        allowed = graph.all_mask
        for atom in occurrence.atoms:
            allowed &= far[atom]
        joinable.append(allowed)
    size = [len(o.atoms) for o in components]
    holding: dict[int, list[int]] = defaultdict(list)  # heavy atom -> components holding it
    for index, occurrence in enumerate(components):
        for atom in occurrence.atoms:
            holding[atom].append(index)
    contacts: list[list[int]] = []
    for index in range(len(components)):
        touching = set()
        for atom in bits(reach[index]):
            touching.update(holding[atom])
        contacts.append(
            sorted(
                j
                for j in touching
                if not mask[j] & ~joinable[index] and size[j] + size[index] <= limit
            )
        )
    out: list[_Occurrence] = []
    level = {(index,) for index in range(len(components)) if contacts[index]}
    for _ in range(settings.max_components - 1):
        grown: set[tuple[int, ...]] = set()
        for combination in level:
            allowed = graph.all_mask
            for k in combination:
                allowed &= joinable[k]
            total = sum(size[k] for k in combination)
            for member in combination:
                for partner in contacts[member]:
                    if mask[partner] & ~allowed or total + size[partner] > limit:
                        continue
                    grown.add(tuple(sorted((*combination, partner))))
        out.extend(_union([components[k] for k in combination]) for combination in sorted(grown))
        level = grown
    return out


def _clusters(
    graph: QueryGraph,
    positions: np.ndarray,
    molecule: tuple[int, ...],
    sizes: tuple[int, ...],
    max_heavy_atoms: int,
) -> list[_Occurrence]:
    """Per molecule of at most ``max_heavy_atoms`` heavy atoms and per size s in ``sizes``
    (below the query's count of such molecules): it and its s - 1 nearest such molecules
    (smallest interatomic distance, H atoms counted; ties by molecule number), whole."""
    members: dict[int, list[int]] = defaultdict(list)
    for atom, home in enumerate(molecule):
        members[home].append(atom)
    small = [home for home in sorted(members) if len(members[home]) <= max_heavy_atoms]
    sizes = tuple(s for s in sizes if 2 <= s < len(small))
    if not sizes:
        return []
    owner = _group_owner(graph, len(positions))
    index_of = {home: k for k, home in enumerate(small)}
    atom_molecule = np.array(
        [index_of.get(molecule[h], -1) if h >= 0 else -1 for h in owner], dtype=np.int64
    )
    kept = np.flatnonzero(atom_molecule >= 0)
    distance = np.full((len(small), len(small)), np.inf)  # molecule to molecule, angstrom
    np.fill_diagonal(distance, 0.0)
    tree = cKDTree(positions[kept])
    pairs = tree.sparse_distance_matrix(tree, CLUSTER_REACH_ANGSTROM, output_type="ndarray")
    np.minimum.at(
        distance,
        (atom_molecule[kept][pairs["i"]], atom_molecule[kept][pairs["j"]]),
        pairs["v"],
    )
    bonds_of = {home: _whole_molecule_bonds(graph, members[home]) for home in small}
    out: list[_Occurrence] = []
    for centre in range(len(small)):
        order = np.lexsort((np.arange(len(small)), distance[centre]))
        for s in sizes:
            if not np.isfinite(distance[centre, order[s - 1]]):
                break  # fewer molecules than that within reach
            chosen = [small[k] for k in order[:s]]
            out.append(_union([AmonOccurrence(tuple(members[h]), bonds_of[h]) for h in chosen]))
    return out


def _group_owner(graph: QueryGraph, n_atoms: int) -> np.ndarray:
    """Per query atom, the heavy atom (graph index) whose group it belongs to: itself for a
    heavy atom, its heavy neighbour for an H atom bonded to one, else -1."""
    heavy_of_query_atom = {index: a for a, index in enumerate(graph.query_index)}
    owner = np.full(n_atoms, -1, dtype=np.int64)
    for atom in graph.mol.GetAtoms():
        index = atom.GetIdx()
        if index in heavy_of_query_atom:
            owner[index] = heavy_of_query_atom[index]
        elif atom.GetAtomicNum() == 1 and atom.GetDegree() == 1:
            parent = atom.GetNeighbors()[0].GetIdx()
            owner[index] = heavy_of_query_atom.get(parent, -1)
    return owner


def _whole_molecule_bonds(graph: QueryGraph, atoms: list[int]) -> tuple[tuple[int, int, int], ...]:
    """The query's bonds (Kekule orders) between ``atoms`` (ascending), in their numbering."""
    local = {atom: k for k, atom in enumerate(atoms)}
    return tuple(
        (local[a], local[b], graph.order(a, b))
        for a in atoms
        for b in bits(graph.neighbours[a])
        if b > a
    )


def _union(
    parts: list[AmonOccurrence],
) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """The combined occurrence: sorted heavy atoms and the components' bonds in its numbering."""
    atoms = tuple(sorted(atom for part in parts for atom in part.atoms))
    local = {atom: k for k, atom in enumerate(atoms)}
    bonds = []
    for part in parts:
        for k, l, order in part.bonds:
            a, b = local[part.atoms[k]], local[part.atoms[l]]
            bonds.append((min(a, b), max(a, b), order))
    return atoms, tuple(sorted(bonds))
