"""The public entry point: :func:`extract_amons` and the :class:`Amon` records it returns.

Pure single-molecule code (no Dask, no Zarr): the distributed store maps it over partitions.
Output is deterministic: amons sorted by (n_heavy, key), occurrences sorted by atom indices,
conformers in the order of their geometries' signatures (independent of atom numbering).
With ``geometry=False`` amons are graphs only, even when the query has coordinates (the fast
path for counting); graph-only amon Molecules are shared between queries (they are immutable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rdkit import Chem

from amondask import config
from amondask.amons.geometry import (
    cap_positions,
    conformer_signatures,
    first_same_conformer,
    is_covalent_key,
    min_nonbonded_distance,
    relax_amon,
)
from amondask.amons.graphs import AmonGraph, AmonOccurrence, find_amon_graphs
from amondask.amons.noncovalent import NoncovalentSettings, find_noncovalent_amon_graphs
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
    relax: bool | None = None,
    seed: int | None = None,
    min_heavy_atoms: int = 1,
    containing: Sequence[int] | None = None,
    noncovalent: NoncovalentSettings | None = None,
) -> list[Amon]:
    """Every amon of ``molecule`` with at most ``max_heavy_atoms`` heavy atoms.

    ``max_heavy_atoms`` and ``rules`` ("paper" or "plain", see :mod:`amondask.amons.rules`)
    default to ``amondask.max-heavy-atoms`` and ``amondask.amon-rules``. With ``geometry``, each
    amon gets 3D conformers built from the query's coordinates (a graph-only query is embedded
    first with ETKDG + MMFF94, seeded by ``seed``, default ``amondask.geometry.seed``); with
    ``relax`` (default ``amondask.amons.relax``) they are relaxed with MMFF94 as the authors
    do, else they keep the query's geometry with H caps. Raises AmonError (or another
    AmondaskError) for a query that cannot be processed.

    ``noncovalent`` (default ``amondask.amons.noncovalent``, off): also the non-covalent
    amons (:mod:`amondask.amons.noncovalent`) of a query of several molecules (or of one folded
    onto itself, with ``intramolecular_min_bonds``): combinations of covalent amons in contact
    and clusters of whole molecules, at the query's geometry, never relaxed; they need the
    query's own coordinates.

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
    relax = bool(config.get("amons.relax", relax))
    if noncovalent is None:
        noncovalent = NoncovalentSettings.from_config()
    query = as_query_molecule(molecule)
    query_positions = query.positions  # the contacts between molecules are the input's
    if geometry and query.positions is None:
        from amondask.chem.geometry import embed_molecule

        query = embed_molecule(query, seed=seed)
    try:
        graph = query_graph(query.rdkit_mol, record_id=query.id)
        found = find_amon_graphs(graph, max_heavy_atoms, rules)
        combined = find_noncovalent_amon_graphs(
            graph, query_positions, found, noncovalent, max_heavy_atoms
        )
        if min_heavy_atoms > 1 or containing is not None:
            found = _restrict(graph, found, min_heavy_atoms, containing)
            combined = _restrict(graph, combined, min_heavy_atoms, containing)
        builder = _AmonBuilder(graph, query)
        settings = _GeometrySettings.from_config() if geometry else None
        amons = builder.amons(found, settings, relax)
        if combined:
            amons += builder.amons(combined, settings, relax=False)
            amons.sort(key=lambda amon: (amon.n_heavy, amon.key))
        return amons
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
        """The capped amon of one occurrence (positions from the query when asked).

        Atoms: the occurrence's heavy atoms in its order, then per heavy atom its own H atoms
        and an H cap for each cut bond (placed along the cut bond at the X-H length).
        """
        graph = self.graph
        atoms = occurrence.atoms
        subset = 0
        for a in atoms:
            subset |= 1 << a
        numbers = [graph.numbers[a] for a in atoms]
        charges = [graph.charges[a] for a in atoms]
        bonds = list(occurrence.bonds)
        rows = [graph.query_index[a] for a in atoms]  # the query atom of each amon atom
        cap_slots, cap_anchors, cap_targets = [], [], []
        for k, a in enumerate(atoms):
            for h in self.hydrogens[a]:
                bonds.append((k, len(rows), 1))
                rows.append(h)
            for b in bits(graph.neighbours[a] & ~subset):
                bonds.append((k, len(rows), 1))
                cap_slots.append(len(rows))
                rows.append(-1)  # a cap: no query atom
                cap_anchors.append(a)
                cap_targets.append(b)
        n_hydrogens = len(rows) - len(atoms)
        numbers.extend([1] * n_hydrogens)
        charges.extend([0] * n_hydrogens)
        positions = None
        query_positions = self.query.positions
        if with_positions and query_positions is not None:
            positions = query_positions[rows]
            if cap_slots:
                query_index = graph.query_index
                try:
                    positions[cap_slots] = cap_positions(
                        query_positions[[query_index[a] for a in cap_anchors]],
                        query_positions[[query_index[b] for b in cap_targets]],
                        [graph.numbers[a] for a in cap_anchors],
                    )
                except ValueError as exc:
                    raise AmonError(
                        f"cannot place H caps for amon {key}: {exc}; check the query's "
                        "coordinates (or pass it as a graph to have it embedded)",
                        record_id=self.query.id,
                    ) from exc
        return Molecule._from_arrays(
            key,
            np.array(numbers, dtype=np.int64),
            np.array(bonds, dtype=np.int64).reshape(-1, 3),
            np.array(charges, dtype=np.int64),
            positions,
        )

    def amons(
        self, found: list[AmonGraph], settings: _GeometrySettings | None, relax: bool
    ) -> list[Amon]:
        """The Amon records of ``found`` (conformers when ``settings`` is given).

        Conformers of one amon: its occurrences are visited in the order of their signatures
        (so the result does not depend on the query's atom numbering) and grouped greedily by
        :func:`first_same_conformer` on their capped query geometries; with ``relax`` only each
        group's first occurrence is relaxed, and groups whose relaxed geometries are the same
        conformer are merged. *Choice*: the authors relax every occurrence; occurrences whose
        capped geometries are already within the threshold (mostly symmetry copies) are
        relaxed once here.

        The geometry work runs in phases over all amons of the query at once (occurrence
        geometries; their signatures; groups; relaxation; relaxed signatures; merged
        conformers), so that the signatures of all same-sized geometries are one call.
        """
        if settings is None:
            return [self.record(entry, ()) for entry in found]
        molecules = [
            [
                self.occurrence_molecule(occurrence, entry.key, True)
                for occurrence in entry.occurrences
            ]
            for entry in found
        ]
        signatures = _signatures_by_size([[m.positions for m in ms] for ms in molecules])
        groups = [
            self.groups(entry, ms, sigs, settings.conformer_threshold)
            for entry, ms, sigs in zip(found, molecules, signatures, strict=True)
        ]
        if relax:
            for entry_groups in groups:
                self.relax(entry_groups, settings)
            relaxed = _signatures_by_size([[g.positions for g in gs] for gs in groups])
            groups = [
                self.merge_relaxed(entry, gs, sigs, settings.conformer_threshold)
                for entry, gs, sigs in zip(found, groups, relaxed, strict=True)
            ]
        return [
            self.record(entry, self.conformer_records(entry, entry_groups, settings))
            for entry, entry_groups in zip(found, groups, strict=True)
        ]

    def record(self, entry: AmonGraph, conformers: tuple[AmonConformer, ...]) -> Amon:
        occurrences = tuple(
            tuple(self.graph.query_index[a] for a in occurrence.atoms)
            for occurrence in entry.occurrences
        )
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

    @staticmethod
    def groups(
        entry: AmonGraph, molecules: list[Molecule], signatures: np.ndarray, threshold: float
    ) -> list[_Group]:
        """Occurrences grouped by their capped query geometries (see :meth:`amons`)."""
        # visit occurrences by their geometry, not their atom numbers, so that the groups and
        # their representatives do not depend on how the query's atoms are numbered
        rounded = np.round(signatures, 8).tolist()
        order = sorted(range(len(molecules)), key=lambda index: (tuple(rounded[index]), index))
        groups: list[_Group] = []
        kept: list[np.ndarray] = []
        covalent = is_covalent_key(entry.key)
        for index in order:
            match = first_same_conformer(
                kept, signatures[index], entry.n_heavy, threshold, covalent=covalent
            )
            if match is None:
                groups.append(_Group(molecules[index], signatures[index], [index]))
                kept.append(signatures[index])
            else:
                groups[match].occurrence_indices.append(index)
        return groups

    @staticmethod
    def relax(groups: list[_Group], settings: _GeometrySettings) -> None:
        """Relax each group's representative (MMFF94), in place; a group whose dihedrals moved
        beyond the tolerance is marked not accepted."""
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
            group.accepted = outcome.accepted
            if outcome.message:
                group.warnings.append(outcome.message)

    @staticmethod
    def merge_relaxed(
        entry: AmonGraph,
        groups: list[_Group],
        relaxed_signatures: np.ndarray,
        threshold: float,
    ) -> list[_Group]:
        """The accepted groups, merged where their relaxed geometries are the same conformer."""
        for group, signature in zip(groups, relaxed_signatures, strict=True):
            group.signature = signature
        accepted = [group for group in groups if group.accepted]
        if not accepted:
            # every geometry moved under MMFF94: keep the least-moved one, flagged
            accepted = [min(groups, key=lambda group: group.torsion_change)]
        merged: list[_Group] = []
        kept = []
        covalent = is_covalent_key(entry.key)
        for group in accepted:
            match = first_same_conformer(
                kept, group.signature, entry.n_heavy, threshold, covalent=covalent
            )
            if match is None:
                merged.append(group)
                kept.append(group.signature)
            else:
                merged[match].occurrence_indices.extend(group.occurrence_indices)
        return merged

    @staticmethod
    def conformer_records(
        entry: AmonGraph, groups: list[_Group], settings: _GeometrySettings
    ) -> tuple[AmonConformer, ...]:
        out = []
        for number, group in enumerate(groups):
            source = group.molecule
            molecule = Molecule._from_arrays(  # the conformer's id and final positions
                f"{entry.key}/{number}",
                source.numbers,
                source.bonds,
                source.formal_charges,
                source.positions if group.positions is None else group.positions,
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


def _signatures_by_size(positions: list[list[np.ndarray]]) -> list[np.ndarray]:
    """:func:`conformer_signatures` of lists of geometries (one list per amon, all of one
    amon's the same size): per list a (k, n) array; one call per distinct atom count n."""
    by_size: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for entry, geometries in enumerate(positions):
        for index, geometry in enumerate(geometries):
            by_size[geometry.shape[0]].append((entry, index))
    out = [
        np.empty((len(geometries), len(geometries[0]) if geometries else 0))
        for geometries in positions
    ]
    for slots in by_size.values():
        stacked = conformer_signatures(np.stack([positions[e][i] for e, i in slots]))
        for (entry, index), signature in zip(slots, stacked, strict=True):
            out[entry][index] = signature
    return out


@dataclass
class _Group:
    """Occurrences that share one geometry (mutable while conformers are being built)."""

    molecule: Molecule
    signature: np.ndarray  # conformer_signature of the current positions
    occurrence_indices: list[int]
    positions: np.ndarray | None = None  # relaxed positions (angstrom), when relaxed
    relaxed: bool = False
    accepted: bool = True  # False when relaxing moved a dihedral beyond the tolerance
    torsion_change: float = 0.0
    warnings: list[str] = field(default_factory=list)
