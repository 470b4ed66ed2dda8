"""Ring systems of a molecule, and which of them no amon contains whole.

A *ring system* is a maximal set of ring atoms joined through rings that share at least one
atom (fused, bridged and spiro rings form one system; rings are RDKit's symmetrized SSSR). A
ring system with more heavy atoms than N_I cannot lie inside any amon of at most N_I heavy
atoms: the strain of a polycyclic cage is then never seen in training, and the amon model
misses it (on QM9, fused tricyclic cages were off by tens of kcal/mol at N_I = 7). Pure
single-molecule code (RDKit only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rdkit import Chem


def ring_systems(mol: Chem.Mol) -> list[tuple[int, ...]]:
    """The ring systems of a sanitized RDKit molecule: tuples of atom indices (ascending),
    sorted by (size descending, first atom). Hydrogens are never ring atoms."""
    rings = [set(ring) for ring in Chem.GetSymmSSSR(mol)]
    systems: list[set[int]] = []
    for ring in rings:
        joined = [system for system in systems if system & ring]
        merged = set(ring).union(*joined)
        systems = [system for system in systems if not system & ring] + [merged]
    return sorted((tuple(sorted(s)) for s in systems), key=lambda s: (-len(s), s))


def uncontained_ring_systems(
    mol: Chem.Mol,
    max_heavy_atoms: int,
    occurrences: Iterable[Sequence[int]] | None = None,
) -> list[tuple[int, ...]]:
    """The ring systems of ``mol`` that no amon contains whole.

    Args:
        mol: the query (sanitized RDKit molecule; atom indices as in ``occurrences``).
        max_heavy_atoms: N_I; a ring system with more atoms fits in no amon of the plain sizes.
        occurrences: the heavy-atom index sets of the query's amon occurrences (e.g.
            ``Amon.occurrences``), when amons larger than N_I were added; a ring system inside
            one of them counts as contained. None: only the size test.

    Returns:
        The uncontained ring systems (atom index tuples), largest first.
    """
    subsets = [frozenset(o) for o in occurrences] if occurrences is not None else []
    out = []
    for system in ring_systems(mol):
        if len(system) <= max_heavy_atoms:
            continue
        if any(subset.issuperset(system) for subset in subsets):
            continue
        out.append(system)
    return out
