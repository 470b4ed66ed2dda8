"""The conformer criterion (the authors': sorted per-atom inverse-distance sums, L1, 0.01).

Hand-built pairs (butane gauche vs anti; one geometry rotated, translated and renumbered), the
signature and distance against loops written here, the amon-level decision against a
brute-force greedy dedup of independently relaxed occurrences, and the cross-query merge
deciding with the same function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms
from scipy.spatial.transform import Rotation

from amondask import config
from amondask.amons import extract_amons
from amondask.amons.extract import _AmonBuilder
from amondask.amons.geometry import (
    SINGLE_CONFORMER_MAX_HEAVY_ATOMS,
    conformer_distance,
    conformer_signature,
    conformer_signatures,
    first_same_conformer,
    nearest_conformer,
    relax_amon,
)
from amondask.amons.graphs import find_amon_graphs
from amondask.amons.query import query_graph
from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule

THRESHOLD = 0.01


def _brute_signature(positions: np.ndarray) -> list[float]:
    """Row L1 norms of the charge-free Coulomb matrix (1/r_ij, zero diagonal), sorted: loops."""
    n = len(positions)
    rows = []
    for i in range(n):
        total = 0.0
        for j in range(n):
            if i != j:
                total += abs(1.0 / math.dist(positions[i], positions[j]))
        rows.append(total)
    return sorted(rows)


def _brute_distance(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = _brute_signature(a), _brute_signature(b)
    return sum(abs(x - y) for x, y in zip(sa, sb, strict=True))


def _butane(dihedral_degrees: float) -> Molecule:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    AllChem.EmbedMolecule(mol, randomSeed=11)
    AllChem.MMFFOptimizeMolecule(mol)
    rdMolTransforms.SetDihedralDeg(mol.GetConformer(), 0, 1, 2, 3, dihedral_degrees)
    return Molecule.from_rdkit(mol, f"butane{dihedral_degrees:g}")


def test_butane_gauche_and_anti_are_distinct_conformers():
    anti = relax_amon(_butane(180.0))
    gauche = relax_amon(_butane(60.0))
    assert anti.accepted and gauche.accepted
    distance = conformer_distance(
        conformer_signature(anti.positions), conformer_signature(gauche.positions)
    )
    assert distance > 10 * THRESHOLD
    assert distance == pytest.approx(_brute_distance(anti.positions, gauche.positions), abs=1e-12)
    kept = [conformer_signature(anti.positions)]
    assert first_same_conformer(kept, conformer_signature(gauche.positions), 4, THRESHOLD) is None


def test_moved_and_renumbered_copy_is_the_same_conformer():
    molecule = _butane(65.0)
    rng = np.random.default_rng(3)
    rotation = Rotation.from_euler("xyz", [40, -15, 120], degrees=True).as_matrix()
    order = rng.permutation(molecule.n_atoms)
    moved = (molecule.positions @ rotation.T + np.array([3.0, -1.0, 7.5]))[order]
    a, b = conformer_signature(molecule.positions), conformer_signature(moved)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert conformer_distance(a, b) < 1e-10
    assert first_same_conformer([a], b, 4, THRESHOLD) == 0


@pytest.mark.parametrize("smiles", ["CC(O)C1=CC(C#N)CN1", "OCC1CCC1C", "CC(=O)NC1=CC=CC=C1F"])
def test_signature_and_distance_match_loops(smiles):
    query = embed_molecule(Molecule.from_smiles(smiles, "q"), seed=4)
    other = embed_molecule(Molecule.from_smiles(smiles, "q"), seed=9)
    np.testing.assert_allclose(
        conformer_signature(query.positions), _brute_signature(query.positions), atol=1e-12
    )
    batched = conformer_signatures(np.stack([query.positions, other.positions]))
    np.testing.assert_array_equal(batched[0], conformer_signature(query.positions))
    assert conformer_distance(batched[0], batched[1]) == pytest.approx(
        _brute_distance(query.positions, other.positions), abs=1e-10
    )


def test_small_amons_have_one_conformer_whatever_the_distance():
    far = [np.zeros(5)]
    assert first_same_conformer(far, np.full(5, 9.0), SINGLE_CONFORMER_MAX_HEAVY_ATOMS, 0.01) == 0
    assert (
        first_same_conformer(far, np.full(5, 9.0), SINGLE_CONFORMER_MAX_HEAVY_ATOMS + 1, 0.01)
        is None
    )
    assert first_same_conformer([], np.zeros(5), 1, 0.01) is None


def _hexane_gauche_in_the_middle() -> Molecule:
    mol = Chem.AddHs(Chem.MolFromSmiles("CCCCCC"))
    AllChem.EmbedMolecule(mol, randomSeed=5)
    conf = mol.GetConformer()
    rdMolTransforms.SetDihedralDeg(conf, 0, 1, 2, 3, 180.0)
    rdMolTransforms.SetDihedralDeg(conf, 1, 2, 3, 4, 62.0)
    rdMolTransforms.SetDihedralDeg(conf, 2, 3, 4, 5, 180.0)
    properties = AllChem.MMFFGetMoleculeProperties(mol)
    field = AllChem.MMFFGetMoleculeForceField(mol, properties)
    for quad, value in (((0, 1, 2, 3), 180.0), ((1, 2, 3, 4), 62.0), ((2, 3, 4, 5), 180.0)):
        field.MMFFAddTorsionConstraint(*quad, False, value, value, 1000.0)
    field.Minimize(maxIts=2000)
    return Molecule.from_rdkit(mol, "hexane")


def test_gauche_and_anti_occurrences_of_butane_in_a_query_are_distinct():
    hexane = _hexane_gauche_in_the_middle()
    butane = {a.key: a for a in extract_amons(hexane, 4)}["CCCC"]
    assert butane.count == 3
    gauche = butane.occurrences.index((1, 2, 3, 4))
    owner = [c for c in butane.conformers if gauche in c.occurrence_indices]
    assert len(owner) == 1
    assert owner[0].occurrence_indices == (gauche,)  # shared with neither anti occurrence
    # ethane, propane: one conformer each (at most two heavy atoms for ethane; propane has
    # no heavy dihedral, but its occurrences differ only slightly and may or may not merge)
    assert len({a.key: a for a in extract_amons(hexane, 4)}["CC"].conformers) == 1


def _brute_force_conformer_counts(query: Molecule, max_heavy_atoms: int) -> dict[str, int]:
    """Relax every occurrence on its own; keep one when it is farther than the threshold from
    every kept one (loops), visiting occurrences by their capped geometry's signature."""
    graph = query_graph(query.rdkit_mol, record_id=query.id)
    builder = _AmonBuilder(graph, query)
    iterations = int(config.get("amons.mmff-max-iterations"))
    counts = {}
    for entry in find_amon_graphs(graph, max_heavy_atoms, "paper"):
        molecules = [builder.occurrence_molecule(o, entry.key, True) for o in entry.occurrences]
        order = sorted(
            range(len(molecules)),
            key=lambda k: (tuple(np.round(_brute_signature(molecules[k].positions), 8)), k),
        )
        kept: list[np.ndarray] = []
        rejected = []
        for k in order:
            outcome = relax_amon(molecules[k], max_iterations=iterations)
            if not outcome.accepted:
                rejected.append(outcome)
                continue
            if entry.n_heavy <= 2 and kept:
                continue
            if all(_brute_distance(outcome.positions, other) > THRESHOLD for other in kept):
                kept.append(outcome.positions)
        counts[entry.key] = len(kept) if kept else 1
    return counts


@pytest.mark.parametrize("smiles", ["CCC(C)CC(O)CC", "CC1CCC(CO)CC1", "CC(C)CC(N)CC(C)C"])
def test_conformer_counts_match_brute_force_dedup(smiles):
    query = embed_molecule(Molecule.from_smiles(smiles, "q"), seed=1)
    expected = _brute_force_conformer_counts(query, 5)
    amons = extract_amons(query, 5)
    assert {a.key: len(a.conformers) for a in amons} == expected
    assert sum(expected.values()) > len(expected)  # some amon has several conformers
    for amon in amons:  # kept conformers are pairwise farther apart than the threshold
        signatures = [conformer_signature(c.molecule.positions) for c in amon.conformers]
        for i in range(len(signatures)):
            for j in range(i):
                assert conformer_distance(signatures[i], signatures[j]) > THRESHOLD


def test_merge_decides_with_the_same_function():
    from amondask.pipeline.extract import _KeptSignatures

    rng = np.random.default_rng(0)
    kept = rng.normal(size=(4, 12))
    kept[2] = kept[1] + 0.001  # two kept conformers both within reach of a probe
    probe = kept[1] + 0.0005
    merge = _KeptSignatures([(10 + k, s) for k, s in enumerate(kept)], 12)
    for n_heavy in (1, 2, 3, 7):
        for signature in (probe, rng.normal(size=12), kept[3]):
            index = first_same_conformer(kept, signature, n_heavy, THRESHOLD)
            expected = None if index is None else 10 + index
            assert merge.first_same(signature, n_heavy, THRESHOLD) == expected
    # adding past the first capacity keeps every kept signature, in order
    added = rng.normal(size=(40, 12))
    for k, signature in enumerate(added):
        merge.add(100 + k, signature)
    everything = np.vstack([kept, added])
    for k in (0, 3, 4, 20, 43):
        probe = everything[k] + 0.0005
        assert merge.first_same(probe, 7, THRESHOLD) == (10 + k if k < 4 else 96 + k)
        assert merge.nearest(probe) == (10 + k if k < 4 else 96 + k)


def test_conformer_comparisons_equal_a_brute_force_numpy_loop():
    rng = np.random.default_rng(3)
    kept = rng.uniform(0, 0.02, size=(200, 9))
    for _ in range(50):
        signature = rng.uniform(0, 0.02, size=9)
        distances = [float(np.sum(np.abs(row - signature))) for row in kept]
        assert conformer_distance(kept[0], signature) == pytest.approx(distances[0], abs=1e-15)
        within = [k for k, d in enumerate(distances) if d <= 0.05]
        expected = within[0] if within else None
        assert first_same_conformer(kept, signature, 7, 0.05) == expected
        assert first_same_conformer(list(kept), signature, 7, 0.05) == expected
        assert nearest_conformer(kept, signature) == int(np.argmin(distances))


@pytest.mark.parametrize(
    "smiles", ["CC(=O)Nc1ccc(O)cc1", "C[NH+]1CCC(C(=O)[O-])C1", "OCC1OC(O)CC1"]
)
def test_occurrence_molecules_are_valid_molecules(smiles):
    """The unchecked fast constructor builds what the checked one accepts unchanged: bonds
    i < j, int64/float64 arrays of the right shapes, read-only; caps along the cut bonds."""
    query = embed_molecule(Molecule.from_smiles(smiles, "q"), seed=3)
    graph = query_graph(query.rdkit_mol, record_id=query.id)
    builder = _AmonBuilder(graph, query)
    n_checked = 0
    for entry in find_amon_graphs(graph, 5, "paper"):
        for occurrence in entry.occurrences:
            fast = builder.occurrence_molecule(occurrence, entry.key, True)
            checked = Molecule(
                id=fast.id,
                numbers=fast.numbers.copy(),
                bonds=fast.bonds.copy(),
                formal_charges=fast.formal_charges.copy(),
                positions=fast.positions.copy(),
            )
            assert checked.same_structure(fast)
            assert fast.numbers.dtype == np.int64 and fast.bonds.dtype == np.int64
            assert fast.positions.dtype == np.float64 and fast.positions.shape == (fast.n_atoms, 3)
            assert not fast.positions.flags.writeable and not fast.bonds.flags.writeable
            assert np.all(fast.bonds[:, 0] < fast.bonds[:, 1])
            assert fast.key == entry.key  # the graph RDKit builds from the arrays is the amon
            # heavy atoms and the query's own H atoms sit where they are in the query
            heavy = [graph.query_index[a] for a in occurrence.atoms]
            np.testing.assert_array_equal(fast.positions[: len(heavy)], query.positions[heavy])
            n_checked += 1
    assert n_checked > 10


def test_signatures_of_many_amons_at_once_equal_one_amon_at_a_time():
    """Batching the signatures of all same-sized geometries of a query changes no bit."""
    from amondask.amons.extract import _signatures_by_size

    rng = np.random.default_rng(7)
    lists = [
        [rng.normal(size=(n, 3)) * 2 for _ in range(k)]
        for n, k in [(5, 3), (9, 1), (5, 2), (12, 4), (9, 2)]
    ]
    batched = _signatures_by_size(lists)
    for geometries, signatures in zip(lists, batched, strict=True):
        one_at_a_time = conformer_signatures(np.stack(geometries))
        assert signatures.shape == one_at_a_time.shape
        assert np.array_equal(signatures, one_at_a_time)
