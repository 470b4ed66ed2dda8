"""Graph-level amons of one query: enumeration, rules, pi assignment and canonical keys.

For every connected heavy-atom subset ``S`` of at most N_I atoms (:mod:`.subgraphs`) the rule
set's subset filters run first (bitmask tests), then every pi assignment of ``S``
(:mod:`.pi_bonds`) is turned into a capped amon whose canonical key is looked up in a
process-wide cache keyed by the labelled graph (atom labels and bonds in the fragment's own
atom order, not canonical), so RDKit builds and canonicalizes a fragment only the first time
that labelled graph is seen; across a dataset most fragments repeat. The cost is
``O(|connected subsets| * N_I)`` bit operations plus one RDKit canonicalization per new
labelled graph.

A subset contributes at most once to an amon's count: two pi assignments of ``S`` that give
the same key are one occurrence; assignments with different keys each count for their key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rdkit import Chem

from amondask.amons.pi_bonds import perfect_matchings
from amondask.amons.query import QueryGraph, bits
from amondask.amons.rules import (
    check_rule_set,
    needs_meso_check,
    paper_rules,
    passes_amon_filters,
    passes_subset_filters,
    residual_pi_atoms,
    strain_atoms_to_check,
)
from amondask.amons.subgraphs import connected_subgraphs
from amondask.chem.molecule import canonical_key
from amondask.errors import AmonError

_RDKIT_BOND = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_KEY_CACHE: dict[tuple, str] = {}
_KEY_CACHE_LIMIT = 50_000  # ~1 kB per entry: a bounded ~50 MB per process


@dataclass(frozen=True)
class AmonOccurrence:
    """One occurrence: the query heavy-atom indices (``atoms``, ascending, positions in the
    QueryGraph) and the amon's bonds ``(k, l, order)`` between positions in ``atoms``."""

    atoms: tuple[int, ...]
    bonds: tuple[tuple[int, int, int], ...]


@dataclass
class AmonGraph:
    """All occurrences of one amon key in a query."""

    key: str
    n_heavy: int
    occurrences: list[AmonOccurrence]


def amon_bonds(
    graph: QueryGraph, atoms: Sequence[int], double_pairs: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int, int], ...]:
    """Bonds ``(k, l, order)`` (local indices) of the amon on ``atoms`` with the given doubles."""
    local = {a: k for k, a in enumerate(atoms)}
    doubles = set(double_pairs)
    out = []
    for a in atoms:
        for b in bits(graph.neighbours[a]):
            if b <= a or b not in local:
                continue
            order = graph.order(a, b)
            if order >= 2 and (graph.pi[a] >= 2 or graph.pi[b] >= 2):
                pass  # a fixed multiple bond keeps its query order
            else:
                order = 2 if (a, b) in doubles else 1
            out.append((local[a], local[b], order))
    return tuple(out)


def amon_rdkit_mol(
    graph: QueryGraph, atoms: Sequence[int], bonds: Sequence[tuple[int, int, int]]
) -> Chem.Mol:
    """The sanitized capped amon (heavy atoms with H counts; atom ``k`` is ``atoms[k]``)."""
    degree = [0] * len(atoms)
    for k, l, _ in bonds:
        degree[k] += 1
        degree[l] += 1
    rw = Chem.RWMol()
    for k, a in enumerate(atoms):
        atom = Chem.Atom(graph.numbers[a])
        atom.SetFormalCharge(graph.charges[a])
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(graph.coordination[a] - degree[k])
        rw.AddAtom(atom)
    for k, l, order in bonds:
        rw.AddBond(k, l, _RDKIT_BOND[order])
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:
        raise AmonError(
            f"fragment {Chem.MolToSmiles(mol)} of the query does not sanitize ({exc}); "
            "report this molecule as a bug"
        ) from exc
    return mol


def _labelled_code(
    graph: QueryGraph, atoms: Sequence[int], bonds: Sequence[tuple[int, int, int]]
) -> tuple:
    """A hashable description of the labelled amon graph (not canonical: a cache key only)."""
    labels = tuple(
        (graph.numbers[a], graph.charges[a], graph.coordination[a], graph.pi[a]) for a in atoms
    )
    return labels, tuple(bonds)


def amon_key(graph: QueryGraph, atoms: Sequence[int], bonds: Sequence[tuple[int, int, int]]) -> str:
    """Canonical key of the capped amon (cached on the labelled graph)."""
    code = _labelled_code(graph, atoms, bonds)
    key = _KEY_CACHE.get(code)
    if key is None:
        key = canonical_key(amon_rdkit_mol(graph, atoms, bonds))
        if len(_KEY_CACHE) >= _KEY_CACHE_LIMIT:
            _KEY_CACHE.clear()
        _KEY_CACHE[code] = key
    return key


def find_amon_graphs(
    graph: QueryGraph, max_heavy_atoms: int, rules: str = "paper"
) -> list[AmonGraph]:
    """All amons of the query with at most ``max_heavy_atoms`` heavy atoms.

    Returns AmonGraphs sorted by (n_heavy, key); occurrences sorted by atom indices.
    """
    check_rule_set(rules)
    if max_heavy_atoms < 1:
        raise AmonError(f"max_heavy_atoms must be at least 1, got {max_heavy_atoms}")
    paper = paper_rules(graph) if rules == "paper" else None
    pi1 = graph.pi1_mask
    multi = graph.multi_pi_mask
    charged = graph.charged_mask
    fixed = graph.fixed_partners
    neighbours = graph.neighbours
    found: dict[str, AmonGraph] = {}
    for subset in connected_subgraphs(neighbours, max_heavy_atoms):
        if subset & charged and sum(graph.charges[a] for a in bits(subset & charged)):
            continue
        if subset & multi:
            if any(fixed[a] & ~subset for a in bits(subset & multi)):
                continue
        residual = subset & pi1
        if residual:
            residual = residual_pi_atoms(graph, subset)
            if residual.bit_count() % 2:
                continue
        strain_atoms = 0
        meso_check = False
        if paper is not None:
            if not passes_subset_filters(graph, paper, subset):
                continue
            strain_atoms = strain_atoms_to_check(paper, subset)
            meso_check = needs_meso_check(graph, paper, subset)
        matchings = perfect_matchings(residual, neighbours) if residual else [()]
        if not matchings:
            continue
        atoms = tuple(bits(subset))
        keys_of_subset: set[str] = set()
        for doubles in matchings:
            bonds = amon_bonds(graph, atoms, doubles)
            if (strain_atoms or meso_check) and not passes_amon_filters(
                graph,
                paper,
                subset,
                lambda atoms=atoms, bonds=bonds: amon_rdkit_mol(graph, atoms, bonds),
                atoms,
                strain_atoms,
                meso_check,
            ):
                continue
            key = amon_key(graph, atoms, bonds)
            if key in keys_of_subset:
                continue
            keys_of_subset.add(key)
            entry = found.get(key)
            if entry is None:
                entry = found[key] = AmonGraph(key=key, n_heavy=len(atoms), occurrences=[])
            entry.occurrences.append(AmonOccurrence(atoms=atoms, bonds=bonds))
    return sorted_amon_graphs(found)


def sorted_amon_graphs(found: dict[str, AmonGraph]) -> list[AmonGraph]:
    """The AmonGraphs of ``found`` (by key) sorted by (n_heavy, key), each one's occurrences
    by atom indices (one occurrence per atom set and key), in place."""
    out = sorted(found.values(), key=lambda amon: (amon.n_heavy, amon.key))
    for amon in out:
        amon.occurrences.sort(key=lambda occurrence: occurrence.atoms)
    return out
