"""The two amon rule sets, "plain" and "paper", as filters on heavy-atom subsets of a query.

"plain" (every rule set starts here): a connected induced subgraph ``S`` of at most N_I heavy
atoms; bonds leaving ``S`` become H; ``S`` must be neutral (sum of formal charges 0); an atom
with two or more pi bonds keeps all its multiple bonds, so their partners must be in ``S``; the
bond orders inside ``S`` are every perfect matching of the remaining one-pi atoms
(:mod:`amondask.amons.pi_bonds`).

"paper" adds the filters of the authors' generator (Huang & von Lilienfeld, Nat. Chem. 12, 945
(2020)); ring definitions in :mod:`amondask.amons.rings`:

a. no single-atom halogen amon; a carbonyl ``[#6;X3]=O`` is in ``S`` whole or not at all; a
   P or S atom whose heavy-atom degree drops by 3 or more is rejected.
c. for a ring of R(query) whose atoms all have iconj 1, reject ``S`` when
   ``limit[size] < |S & ring| < size`` with ``limit = {3: 1, 4: 1, 5: 4, 6: 4, 7: 4}``.
d. for a ring of SR(query) with an iconj-0 atom, when ``{3: 1, 4: 2}[size] < |S & ring| < size``,
   reject the amon if an atom of ``S & ring`` is strained in the query but not in the capped
   amon or the other way round (strain judged on the amon's own R, iconj and SR).
e. meso5: when the query has more than one pi assignment, atoms on bonds whose order differs
   between assignments are mesomeric; reject the amon if an atom of a 5-membered ring of
   R(amon) with amon iconj 1 or 2 has a heavy neighbour in the amon, outside that ring, whose
   query atom is mesomeric. *Choice*: "neighbour" means a heavy neighbour inside the amon
   (H caps have no query atom).

Filters a and c and the pre-checks of d and e are bitmask tests on ``S``; the amon-level parts
of d and e, which need the capped amon's RDKit hybridizations, run only when a pre-check fires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rdkit import Chem

from amondask.amons.pi_bonds import has_perfect_matching, perfect_matchings
from amondask.amons.query import QueryGraph, bits
from amondask.amons.rings import (
    conjugation_classes,
    relevant_rings,
    simple_cycles,
    strained_atoms,
    strained_rings,
)
from amondask.errors import AmonError

RULE_SETS = ("paper", "plain")
_CONJUGATED_RING_LIMIT = {3: 1, 4: 1, 5: 4, 6: 4, 7: 4}
_STRAINED_RING_LIMIT = {3: 1, 4: 2}
_CARBONYL = Chem.MolFromSmarts("[#6;X3]=O")
_MESOMERIC_MATCHING_LIMIT = 256


def check_rule_set(rules: str) -> str:
    if rules not in RULE_SETS:
        raise AmonError(f"unknown amon rule set {rules!r}; use one of {', '.join(RULE_SETS)}")
    return rules


@dataclass
class PaperRules:
    """The query-level data of the "paper" filters (all atom sets are bitmasks)."""

    cycles: list[int]
    iconj: list[int]
    strained: int
    carbonyl_pairs: list[int]
    phosphorus_sulfur: list[int]
    conjugated_rings: list[tuple[int, int, int]]
    strained_checks: list[tuple[int, int, int]]
    mesomeric: int
    five_cycles: list[int] = field(default_factory=list)


def paper_rules(graph: QueryGraph) -> PaperRules:
    """Precompute the "paper" filters for one query."""
    cycles = simple_cycles(graph.neighbours)
    rings = relevant_rings(cycles)
    iconj = conjugation_classes(graph.mol, graph.query_index)
    strained = strained_rings(rings, iconj)
    position = {index: k for k, index in enumerate(graph.query_index)}
    carbonyl_pairs = []
    for c_index, o_index in graph.mol.GetSubstructMatches(_CARBONYL):
        carbonyl_pairs.append((1 << position[c_index]) | (1 << position[o_index]))
    conjugated_rings = []
    for ring in rings:
        size = ring.bit_count()
        if all(iconj[a] == 1 for a in bits(ring)):
            conjugated_rings.append((ring, size, _CONJUGATED_RING_LIMIT[size]))
    strained_checks = []
    for ring in strained:
        size = ring.bit_count()
        if size in _STRAINED_RING_LIMIT and any(iconj[a] == 0 for a in bits(ring)):
            strained_checks.append((ring, size, _STRAINED_RING_LIMIT[size]))
    return PaperRules(
        cycles=cycles,
        iconj=iconj,
        strained=strained_atoms(strained),
        carbonyl_pairs=carbonyl_pairs,
        phosphorus_sulfur=[a for a in range(graph.n) if graph.numbers[a] in (15, 16)],
        conjugated_rings=conjugated_rings,
        strained_checks=strained_checks,
        mesomeric=mesomeric_atoms(graph),
        five_cycles=[c for c in cycles if c.bit_count() == 5],
    )


def residual_pi_atoms(graph: QueryGraph, subset: int) -> int:
    """The one-pi atoms of ``subset`` whose pi bond is not already fixed inside it."""
    residual = subset & graph.pi1_mask
    for a in bits(residual):
        if graph.fixed_partners[a] & subset:
            residual &= ~(1 << a)
    return residual


def mesomeric_atoms(graph: QueryGraph) -> int:
    """Atoms on bonds whose order differs between the query's pi assignments (bitmask).

    Zero when the query has at most one assignment. Each connected component of the
    one-pi-atom graph is treated on its own: its matchings are listed when there are few, and
    otherwise every bond is tested for lying in some but not all perfect matchings.
    """
    residual = residual_pi_atoms(graph, graph.all_mask)
    pi_neighbours = [nbr & residual for nbr in graph.neighbours]
    mesomeric = 0
    remaining = residual
    while remaining:
        component = remaining & -remaining
        frontier = component
        while frontier:
            grown = 0
            for a in bits(frontier):
                grown |= pi_neighbours[a]
            frontier = grown & ~component
            component |= grown
        remaining &= ~component
        matchings = perfect_matchings(component, pi_neighbours, limit=_MESOMERIC_MATCHING_LIMIT)
        if len(matchings) <= 1:
            continue
        if len(matchings) <= _MESOMERIC_MATCHING_LIMIT:
            edge_sets = [set(m) for m in matchings]
            union = set().union(*edge_sets)
            common = set.intersection(*edge_sets)
            for a, b in union - common:
                mesomeric |= (1 << a) | (1 << b)
            continue
        for a in bits(component):
            for b in bits(pi_neighbours[a]):
                if b < a:
                    continue
                pair = (1 << a) | (1 << b)
                used = has_perfect_matching(component & ~pair, pi_neighbours)
                without = list(pi_neighbours)
                without[a] &= ~(1 << b)
                without[b] &= ~(1 << a)
                unused = has_perfect_matching(component, without)
                if used and unused:
                    mesomeric |= pair
    return mesomeric


def passes_subset_filters(graph: QueryGraph, rules: PaperRules, subset: int) -> bool:
    """Paper filters a and c, which depend on the atom set only."""
    if subset & graph.halogen_mask and subset.bit_count() == 1:
        return False
    for pair in rules.carbonyl_pairs:
        inside = subset & pair
        if inside and inside != pair:
            return False
    for a in rules.phosphorus_sulfur:
        if subset >> a & 1:
            lost = (graph.neighbours[a] & ~subset).bit_count()
            if lost >= 3:
                return False
    for ring, size, limit in rules.conjugated_rings:
        k = (subset & ring).bit_count()
        if limit < k < size:
            return False
    return True


def strain_atoms_to_check(rules: PaperRules, subset: int) -> int:
    """Atoms of ``subset`` whose strain must agree between query and amon (filter d)."""
    atoms = 0
    for ring, size, limit in rules.strained_checks:
        inside = subset & ring
        if limit < inside.bit_count() < size:
            atoms |= inside
    return atoms


def needs_meso_check(graph: QueryGraph, rules: PaperRules, subset: int) -> bool:
    """Cheap pre-check of filter e: a 5-cycle inside ``subset`` next to a mesomeric atom."""
    if not rules.mesomeric:
        return False
    for cycle in rules.five_cycles:
        if cycle & subset != cycle:
            continue
        outside = 0
        for a in bits(cycle):
            outside |= graph.neighbours[a]
        if outside & subset & ~cycle & rules.mesomeric:
            return True
    return False


class _LazyAmonIconj:
    """iconj of amon atoms by query atom index, computed with RDKit on first access."""

    def __init__(self, make_amon_mol: Callable[[], Chem.Mol], atoms: Sequence[int]):
        self.make_amon_mol = make_amon_mol
        self.atoms = atoms
        self.values: dict[int, int] | None = None

    def __getitem__(self, atom: int) -> int:
        if self.values is None:
            classes = conjugation_classes(self.make_amon_mol(), range(len(self.atoms)))
            self.values = dict(zip(self.atoms, classes, strict=True))
        return self.values.get(atom, 0)


def passes_amon_filters(
    graph: QueryGraph,
    rules: PaperRules,
    subset: int,
    make_amon_mol: Callable[[], Chem.Mol],
    atoms: Sequence[int],
    strain_atoms: int,
    meso_check: bool,
) -> bool:
    """Paper filters d and e on one capped amon.

    ``make_amon_mol()`` gives the sanitized amon whose atom ``k`` is query heavy atom
    ``atoms[k]``; it is only called when an amon iconj value is needed (a 5- or 7-membered
    ring next to the checked atoms, or a meso5 candidate ring).
    """
    if not strain_atoms and not meso_check:
        return True
    cycles = [c for c in rules.cycles if c & subset == c]
    amon_rings = relevant_rings(cycles)
    iconj_amon = _LazyAmonIconj(make_amon_mol, atoms)
    if strain_atoms:
        strained_amon = strained_atoms(strained_rings(amon_rings, iconj_amon, strain_atoms))
        if (strained_amon ^ rules.strained) & strain_atoms:
            return False
    if meso_check:
        for ring in amon_rings:
            if ring.bit_count() != 5:
                continue
            for a in bits(ring):
                if not graph.neighbours[a] & subset & ~ring & rules.mesomeric:
                    continue
                if iconj_amon[a] in (1, 2):
                    return False
    return True
