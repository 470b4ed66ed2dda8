"""The public entry point: :func:`extract_amons` and the :class:`Amon` records it returns.

Pure single-molecule code (no Dask, no Zarr): the distributed store maps it over partitions.
Output is deterministic: amons sorted by (n_heavy, key), occurrences sorted by atom indices,
conformers in the order of their geometries' signatures (independent of atom numbering).
With ``geometry=False`` amons are graphs only, even when the query has coordinates (the fast
path for counting); graph-only amon Molecules are shared between queries (they are immutable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem

from amondask import config
from amondask.amons.geometry import (
    cap_positions,
    conformer_signatures,
    first_same_conformer,
    min_nonbonded_distance,
    relax_amon,
)
from amondask.amons.graphs import AmonGraph, AmonOccurrence, find_amon_graphs
from amondask.amons.query import QueryGraph, bits, query_graph
from amondask.amons.rules import check_rule_set
from amondask.chem.molecule import Molecule
from amondask.errors import AmonError

# Graph-only amon Molecules are immutable and depend only on the key: shared across queries.
_GRAPH_MOLECULES: dict[str, Molecule] = {}
_GRAPH_MOLECULE_LIMIT = 20_000


@dataclass(frozen=True)
class AmonConformer:
    """One distinct 3D geometry of an amon.

    Attributes:
        molecule: the amon with H caps and 3D positions (angstrom); heavy atoms first, in the
            order of the occurrence's query atoms, then each heavy atom's H atoms.
        occurrence_indices: indices into ``Amon.occurrences`` of the occurrences that share this
            geometry, ascending.
        clash: True if two non-bonded atoms are closer than the clash threshold.
        min_distance_angstrom: the smallest non-bonded interatomic distance.
        relaxed: True if the MMFF94 relaxation ran and was accepted.
        warnings: human-readable notes (no force-field parameters, torsions moved, clash).
        source_occurrence: the index of the occurrence the geometry was built from.
    """

    molecule: Molecule
    occurrence_indices: tuple[int, ...]
    clash: bool
    min_distance_angstrom: float
    relaxed: bool
    warnings: tuple[str, ...] = ()
    source_occurrence: int = 0


@dataclass(frozen=True)
class Amon:
    """One amon of a query.

    Attributes:
        key: canonical SMILES (no H, no stereo; equals ``Molecule.key``), the dedup key.
        n_heavy: number of heavy atoms.
        count: number of distinct heavy-atom subsets of the query that give this amon.
        occurrences: per occurrence, the query atom indices (in the query's own numbering, H
            atoms counted) of its heavy atoms, ascending; sorted.
        conformers: distinct 3D geometries (empty when extracted without geometry). An
            occurrence whose relaxed geometry was rejected (dihedrals moved) belongs to no
            conformer, unless all were rejected: then the least-moved one is kept, flagged.
        molecule: the first conformer's molecule, or a graph-only Molecule without geometry.
    """

    key: str
    n_heavy: int
    count: int
    occurrences: tuple[tuple[int, ...], ...]
    conformers: tuple[AmonConformer, ...]
    molecule: Molecule


def as_query_molecule(
    molecule: str | Chem.Mol | Molecule, record_id: str | None = None
) -> Molecule:
    """A Molecule from a SMILES string, an RDKit Mol or a Molecule (returned unchanged)."""
    if isinstance(molecule, Molecule):
        return molecule
    if isinstance(molecule, str):
        return Molecule.from_smiles(molecule, record_id if record_id is not None else molecule)
    if isinstance(molecule, Chem.Mol):
        mol = Chem.Mol(molecule)
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:
            raise AmonError(
                f"RDKit rejects the query ({exc}); check valences and aromatic rings",
                record_id=record_id,
            ) from exc
        return Molecule.from_rdkit(mol, record_id or "")
    raise TypeError(
        f"extract_amons takes a SMILES string, an RDKit Mol or a Molecule, not "
        f"{type(molecule).__name__}"
    )


def extract_amons(
    molecule: str | Chem.Mol | Molecule,
    max_heavy_atoms: int | None = None,
    *,
    rules: str | None = None,
    geometry: bool = True,
    relax: bool = True,
    seed: int | None = None,
    min_heavy_atoms: int = 1,
    containing: Sequence[int] | None = None,
) -> list[Amon]:
    """Every amon of ``molecule`` with at most ``max_heavy_atoms`` heavy atoms.

    ``max_heavy_atoms`` and ``rules`` ("paper" or "plain", see :mod:`amondask.amons.rules`)
    default to ``amondask.max-heavy-atoms`` and ``amondask.amon-rules``. With ``geometry``, each
    amon gets 3D conformers built from the query's coordinates (a graph-only query is embedded
    first with ETKDG + MMFF94, seeded by ``seed``, default ``amondask.geometry.seed``); with
    ``relax`` they are relaxed with MMFF94 as the authors do. Raises AmonError (or another
    AmondaskError) for a query that cannot be processed.

    Options for amons beyond the plain set (off by default; used by the outlier remedy,
    :mod:`amondask.pipeline.remedy`): ``min_heavy_atoms`` keeps only amons of at least that many
    heavy atoms (e.g. ``min_heavy_atoms=max_heavy_atoms=8``: the next size only), and
    ``containing`` (query atom indices, H atoms counted in the numbering) keeps only the
    occurrences whose heavy atoms include all of them (e.g. a whole ring system).
    """
    max_heavy_atoms = int(config.get("max-heavy-atoms", max_heavy_atoms))
    if max_heavy_atoms < 1:
        raise AmonError(f"max_heavy_atoms must be at least 1, got {max_heavy_atoms}")
    rules = check_rule_set(str(config.get("amon-rules", rules)))
    query = as_query_molecule(molecule)
    if geometry and query.positions is None:
        from amondask.chem.geometry import embed_molecule

        query = embed_molecule(query, seed=seed)
    try:
        graph = query_graph(query.rdkit_mol, record_id=query.id)
        found = find_amon_graphs(graph, max_heavy_atoms, rules)
        if min_heavy_atoms > 1 or containing is not None:
            found = _restrict(graph, found, min_heavy_atoms, containing)
        builder = _AmonBuilder(graph, query)
        settings = _GeometrySettings.from_config() if geometry else None
        return [builder.amon(entry, settings, relax) for entry in found]
    except AmonError as exc:
        if exc.record_id is None:
            exc.record_id = query.id
        raise


def _restrict(
    graph: QueryGraph,
    found: list[AmonGraph],
    min_heavy_atoms: int,
    containing: Sequence[int] | None,
) -> list[AmonGraph]:
    """The amons of at least ``min_heavy_atoms`` heavy atoms, with only their occurrences that
    contain every query atom of ``containing``; amons left without occurrences are dropped."""
    position = {index: k for k, index in enumerate(graph.query_index)}
    required: set[int] = set()
    for index in containing or ():
        if int(index) not in position:
            raise AmonError(
                f"atom {index} of `containing` is not a heavy atom of the query; give heavy-atom "
                "indices in the query's own numbering"
            )
        required.add(position[int(index)])
    out = []
    for entry in found:
        if entry.n_heavy < min_heavy_atoms:
            continue
        kept = [o for o in entry.occurrences if required.issubset(o.atoms)]
        if kept:
            out.append(AmonGraph(key=entry.key, n_heavy=entry.n_heavy, occurrences=kept))
    return out


@dataclass(frozen=True)
class _GeometrySettings:
    clash_threshold_angstrom: float
    conformer_threshold: float
    torsion_window_degrees: float
    torsion_tolerance_degrees: float
    max_iterations: int

    @classmethod
    def from_config(cls) -> _GeometrySettings:
        return cls(
            clash_threshold_angstrom=float(config.get("amons.clash-threshold-angstrom")),
            conformer_threshold=float(config.get("amons.conformer-threshold")),
            torsion_window_degrees=float(config.get("amons.torsion-window-degrees")),
            torsion_tolerance_degrees=float(config.get("amons.torsion-tolerance-degrees")),
            max_iterations=int(config.get("amons.mmff-max-iterations")),
        )


class _AmonBuilder:
    """Turns graph-level amons of one query into Amon records with Molecules."""

    def __init__(self, graph: QueryGraph, query: Molecule):
        self.graph = graph
        self.query = query
        mol = graph.mol
        self.hydrogens = [
            [n.GetIdx() for n in mol.GetAtomWithIdx(index).GetNeighbors() if n.GetAtomicNum() == 1]
            for index in graph.query_index
        ]

    def occurrence_molecule(
        self, occurrence: AmonOccurrence, key: str, with_positions: bool
    ) -> Molecule:
        """The capped amon of one occurrence (positions from the query when asked)."""
        graph = self.graph
        atoms = occurrence.atoms
        subset = sum(1 << a for a in atoms)
        numbers = [graph.numbers[a] for a in atoms]
        charges = [graph.charges[a] for a in atoms]
        bonds = [list(bond) for bond in occurrence.bonds]
        query_positions = self.query.positions if with_positions else None
        positions = []
        anchors, targets, anchor_numbers = [], [], []
        if query_positions is not None:
            positions = [query_positions[graph.query_index[a]] for a in atoms]
        for k, a in enumerate(atoms):
            for h in self.hydrogens[a]:
                bonds.append([k, len(numbers), 1])
                numbers.append(1)
                charges.append(0)
                if query_positions is not None:
                    positions.append(query_positions[h])
            for b in bits(graph.neighbours[a] & ~subset):
                bonds.append([k, len(numbers), 1])
                numbers.append(1)
                charges.append(0)
                if query_positions is not None:
                    anchors.append(len(positions))
                    positions.append(None)
                    targets.append(query_positions[graph.query_index[b]])
                    anchor_numbers.append(graph.numbers[a])
        if query_positions is not None:
            if anchors:
                anchor_positions = np.array(
                    [
                        query_positions[graph.query_index[a]]
                        for a in _anchor_atoms(graph, atoms, subset)
                    ]
                )
                try:
                    caps = cap_positions(anchor_positions, np.array(targets), anchor_numbers)
                except ValueError as exc:
                    raise AmonError(
                        f"cannot place H caps for amon {key}: {exc}; check the query's "
                        "coordinates (or pass it as a graph to have it embedded)",
                        record_id=self.query.id,
                    ) from exc
                for slot, cap in zip(anchors, caps, strict=True):
                    positions[slot] = cap
            position_array = np.array(positions, dtype=np.float64)
        else:
            position_array = None
        return Molecule(
            id=key,
            numbers=numbers,
            bonds=np.array(bonds, dtype=np.int64).reshape(-1, 3),
            formal_charges=charges,
            positions=position_array,
        )

    def amon(self, entry: AmonGraph, settings: _GeometrySettings | None, relax: bool) -> Amon:
        occurrences = tuple(
            tuple(self.graph.query_index[a] for a in occurrence.atoms)
            for occurrence in entry.occurrences
        )
        conformers: tuple[AmonConformer, ...] = ()
        if settings is not None:
            conformers = self.conformers(entry, settings, relax)
        if conformers:
            molecule = conformers[0].molecule
        else:
            molecule = _GRAPH_MOLECULES.get(entry.key)
            if molecule is None:
                molecule = self.occurrence_molecule(entry.occurrences[0], entry.key, False)
                if len(_GRAPH_MOLECULES) >= _GRAPH_MOLECULE_LIMIT:
                    _GRAPH_MOLECULES.clear()
                _GRAPH_MOLECULES[entry.key] = molecule
        return Amon(
            key=entry.key,
            n_heavy=entry.n_heavy,
            count=len(entry.occurrences),
            occurrences=occurrences,
            conformers=conformers,
            molecule=molecule,
        )

    def conformers(
        self, entry: AmonGraph, settings: _GeometrySettings, relax: bool
    ) -> tuple[AmonConformer, ...]:
        """Distinct geometries of one amon over its occurrences.

        Occurrences are visited in the order of their signatures (so the result does not depend
        on the query's atom numbering) and grouped greedily by :func:`first_same_conformer` on
        their capped query geometries; with ``relax`` only each group's first occurrence is
        relaxed, and groups whose relaxed geometries are the same conformer are merged.
        *Choice*: the authors relax every occurrence; occurrences whose capped geometries are
        already within the threshold (mostly symmetry copies) are relaxed once here.
        """
        threshold = settings.conformer_threshold
        n_heavy = entry.n_heavy
        molecules = [
            self.occurrence_molecule(occurrence, entry.key, True)
            for occurrence in entry.occurrences
        ]
        signatures = conformer_signatures(np.stack([molecule.positions for molecule in molecules]))
        # visit occurrences by their geometry, not their atom numbers, so that the groups and
        # their representatives do not depend on how the query's atoms are numbered
        order = sorted(
            range(len(molecules)), key=lambda index: (tuple(np.round(signatures[index], 8)), index)
        )
        groups: list[_Group] = []
        kept: list[np.ndarray] = []
        for index in order:
            match = first_same_conformer(kept, signatures[index], n_heavy, threshold)
            if match is None:
                groups.append(_Group(molecules[index], signatures[index], [index]))
                kept.append(signatures[index])
            else:
                groups[match].occurrence_indices.append(index)
        if relax:
            rejected = []
            for group in groups:
                outcome = relax_amon(
                    group.molecule,
                    torsion_window_degrees=settings.torsion_window_degrees,
                    torsion_tolerance_degrees=settings.torsion_tolerance_degrees,
                    max_iterations=settings.max_iterations,
                )
                group.positions = outcome.positions
                group.relaxed = outcome.accepted and not outcome.message
                group.torsion_change = outcome.max_torsion_change_degrees
                if outcome.message:
                    group.warnings.append(outcome.message)
                if not outcome.accepted:
                    rejected.append(group)
            relaxed_signatures = conformer_signatures(
                np.stack([group.positions for group in groups])
            )
            for group, signature in zip(groups, relaxed_signatures, strict=True):
                group.signature = signature
            accepted = [group for group in groups if group not in rejected]
            if not accepted:
                # every geometry moved under MMFF94: keep the least-moved one, flagged
                accepted = [min(rejected, key=lambda group: group.torsion_change)]
            merged: list[_Group] = []
            kept = []
            for group in accepted:
                match = first_same_conformer(kept, group.signature, n_heavy, threshold)
                if match is None:
                    merged.append(group)
                    kept.append(group.signature)
                else:
                    merged[match].occurrence_indices.extend(group.occurrence_indices)
            groups = merged
        out = []
        for number, group in enumerate(groups):
            source = group.molecule
            molecule = Molecule(  # one construction: the conformer's id and final positions
                id=f"{entry.key}/{number}",
                numbers=source.numbers,
                bonds=source.bonds,
                formal_charges=source.formal_charges,
                positions=source.positions if group.positions is None else group.positions,
            )
            distance = min_nonbonded_distance(molecule)
            clash = distance < settings.clash_threshold_angstrom
            notes = list(group.warnings)
            if clash:
                notes.append(
                    f"non-bonded atoms {distance:.2f} angstrom apart (threshold "
                    f"{settings.clash_threshold_angstrom})"
                )
            out.append(
                AmonConformer(
                    molecule=molecule,
                    occurrence_indices=tuple(sorted(group.occurrence_indices)),
                    clash=clash,
                    min_distance_angstrom=distance,
                    relaxed=group.relaxed,
                    warnings=tuple(notes),
                    source_occurrence=group.occurrence_indices[0],
                )
            )
        return tuple(out)


@dataclass
class _Group:
    """Occurrences that share one geometry (mutable while conformers are being built)."""

    molecule: Molecule
    signature: np.ndarray  # conformer_signature of the current positions
    occurrence_indices: list[int]
    positions: np.ndarray | None = None  # relaxed positions (angstrom), when relaxed
    relaxed: bool = False
    torsion_change: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _anchor_atoms(graph: QueryGraph, atoms: tuple[int, ...], subset: int) -> list[int]:
    """The heavy atom of each cap, in cap order (one entry per cut bond)."""
    out = []
    for a in atoms:
        out.extend([a] * (graph.neighbours[a] & ~subset).bit_count())
    return out
