"""Non-covalent amons (amondask.amons.noncovalent) against a brute-force loop and invariances.

The reference below is written apart from the package: components are every connected heavy-atom
subset of one molecule with every bond-order assignment (tests/amon_reference.py), contact is a
double loop over atom pairs, combinations are itertools.combinations of components from
different molecules whose contact graph is connected (networkx), and the key is the canonical
SMILES of the capped union built atom by atom with RDKit.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import dask.config
import networkx as nx
import numpy as np
import pytest
from amon_reference import bond_assignments, capped, connected, heavy_graph
from scipy.spatial.transform import Rotation

from amondask.amons import extract_amons
from amondask.amons.geometry import XH_BOND_LENGTH_ANGSTROM, is_covalent_key
from amondask.amons.noncovalent import NoncovalentSettings
from amondask.chem import canonical_key
from amondask.chem.molecule import Molecule
from amondask.chem.readers import read_molecules
from amondask.errors import AmonError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "noncovalent"
ON = NoncovalentSettings(max_components=3, contact_angstrom=3.0)


def examples(name: str) -> dict[str, Molecule]:
    with dask.config.set({"amondask.read.allow-fragments": True}):
        result = read_molecules(EXAMPLES / name)
    assert not result.errors
    return {m.id: m for m in result.molecules}


@pytest.fixture(scope="module")
def waters() -> dict[str, Molecule]:
    return examples("water_clusters.xyz")


@pytest.fixture(scope="module")
def base_pairs() -> dict[str, Molecule]:
    return examples("base_pairs.xyz")


def reference_noncovalent(
    molecule: Molecule, max_heavy_atoms: int, settings: NoncovalentSettings
) -> dict[str, int]:
    """{key: count} of the non-covalent amons, by brute force ("plain" rules)."""
    mol = molecule.rdkit_mol
    positions = molecule.positions
    graph = heavy_graph(mol)
    hops = dict(nx.all_pairs_shortest_path_length(graph))
    far = settings.intramolecular_min_bonds
    limit = settings.max_heavy_atoms or max_heavy_atoms
    home = {}
    for k, atoms in enumerate(nx.connected_components(graph)):
        for a in atoms:
            home[a] = k

    def group(atoms):  # heavy atoms and their own H atoms
        out = set(atoms)
        for a in atoms:
            out |= {
                n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetAtomicNum() == 1
            }
        return out

    components = []  # (heavy atoms, orders, molecule, atoms for contact)
    for size in range(1, limit):
        for atoms in itertools.combinations(sorted(graph.nodes), size):
            if not connected(graph, atoms):
                continue
            for orders in bond_assignments(mol, set(atoms)):
                components.append((set(atoms), orders, home[atoms[0]], group(atoms)))

    def apart(c, d):  # different molecules, or every atom pair at least `far` bonds apart
        if c[2] != d[2]:
            return True
        return far is not None and all(hops[a].get(b, far) >= far for a in c[0] for b in d[0])

    def touching(c, d):
        return any(
            np.linalg.norm(positions[i] - positions[j]) <= settings.contact_angstrom
            for i in c[3]
            for j in d[3]
        )

    found: dict[str, set] = defaultdict(set)
    for k in range(2, settings.max_components + 1):
        for combo in itertools.combinations(range(len(components)), k):
            parts = [components[c] for c in combo]
            if sum(len(p[0]) for p in parts) > limit:
                continue
            if not all(apart(a, b) for a, b in itertools.combinations(parts, 2)):
                continue
            contacts = nx.Graph()
            contacts.add_nodes_from(range(k))
            contacts.add_edges_from(
                (i, j)
                for i, j in itertools.combinations(range(k), 2)
                if touching(parts[i], parts[j])
            )
            if not nx.is_connected(contacts):
                continue
            atoms = set().union(*(p[0] for p in parts))
            orders = {bond: o for p in parts for bond, o in p[1].items()}
            amon, _ = capped(mol, atoms, orders)
            found[canonical_key(amon)].add(frozenset(atoms))
    return {key: len(sets) for key, sets in found.items()}


def noncovalent_counts(amons) -> dict[str, int]:
    return {a.key: a.count for a in amons if not is_covalent_key(a.key)}


@pytest.mark.parametrize("cluster", ["water_04", "water_06"])
def test_water_clusters_match_brute_force(waters, cluster):
    molecule = waters[cluster]
    amons = extract_amons(molecule, 3, rules="plain", geometry=False, noncovalent=ON)
    expected = reference_noncovalent(molecule, 3, ON)
    assert noncovalent_counts(amons) == expected
    assert set(expected) == {"O.O", "O.O.O"}
    # every water touches another one in a relaxed cluster; the covalent amon is the molecule
    assert {a.key: a.count for a in amons if is_covalent_key(a.key)} == {"O": int(cluster[-2:])}


def test_base_pair_matches_brute_force(base_pairs):
    molecule = base_pairs["AT"]
    settings = NoncovalentSettings(max_components=3, contact_angstrom=2.5)
    amons = extract_amons(molecule, 4, rules="plain", geometry=False, noncovalent=settings)
    expected = reference_noncovalent(molecule, 4, settings)
    assert noncovalent_counts(amons) == expected
    assert len(expected) >= 5
    # the hydrogen-bonded edge: A's N1 and T's imide N-H meet in an amon with each side's N
    assert "N.N" in expected


def test_intramolecular_combinations_match_brute_force():
    """A (Gly)8 coil folded under GFN2-xTB: parts of the one chain at least 4 bonds apart and
    in contact are combined, exactly as the brute-force loop finds them; without the option
    the single molecule has no non-covalent amon."""
    (coil,) = examples("polyglycine_coil.xyz").values()
    settings = NoncovalentSettings(max_components=2, intramolecular_min_bonds=4)
    amons = extract_amons(coil, 4, rules="plain", geometry=False, noncovalent=settings)
    expected = reference_noncovalent(coil, 4, settings)
    assert noncovalent_counts(amons) == expected
    assert expected["C=O.N"] >= 5  # the N-H...O=C contacts between residues
    assert not noncovalent_counts(extract_amons(coil, 4, geometry=False, noncovalent=ON))
    farther = NoncovalentSettings(max_components=2, intramolecular_min_bonds=7)
    fewer = noncovalent_counts(
        extract_amons(coil, 4, rules="plain", geometry=False, noncovalent=farther)
    )
    assert fewer == reference_noncovalent(coil, 4, farther)
    assert sum(fewer.values()) < sum(expected.values())


def test_total_heavy_atom_limit_and_components(base_pairs, waters):
    amons = extract_amons(
        base_pairs["GC"],
        6,
        geometry=False,
        noncovalent=NoncovalentSettings(max_components=3, max_heavy_atoms=5),
    )
    noncovalent = [a for a in amons if not is_covalent_key(a.key)]
    assert noncovalent and max(a.n_heavy for a in noncovalent) == 5
    assert max(a.n_heavy for a in amons if is_covalent_key(a.key)) == 6
    pairs_only = extract_amons(
        waters["water_06"], 7, geometry=False, noncovalent=NoncovalentSettings(max_components=2)
    )
    assert {a.key for a in pairs_only if not is_covalent_key(a.key)} == {"O.O"}


def test_contact_distance_grows_the_set(waters):
    molecule = waters["water_08"]
    counts = []
    for cutoff in (2.0, 3.0, 4.0):
        settings = NoncovalentSettings(max_components=2, contact_angstrom=cutoff)
        counts.append(
            noncovalent_counts(extract_amons(molecule, 2, geometry=False, noncovalent=settings))
        )
    dimers = [c.get("O.O", 0) for c in counts]
    assert 0 < dimers[0] <= dimers[1] < dimers[2] <= 8 * 7 // 2
    # 2 A takes in exactly the hydrogen bonds: one per O-H...O, H...O 1.6-2.0 A in these minima
    m = molecule
    oxygens = np.flatnonzero(m.numbers == 8)
    hbonded = set()
    for h in np.flatnonzero(m.numbers == 1):
        d = np.linalg.norm(m.positions[oxygens] - m.positions[h], axis=1)
        own, other = np.argsort(d)[:2]
        if d[other] <= 2.0:
            hbonded.add(frozenset((own, other)))
    assert dimers[0] == len(hbonded)


def test_off_by_default_and_single_molecules(waters):
    amons = extract_amons(waters["water_05"], 3, geometry=False)
    assert all(is_covalent_key(a.key) for a in amons)
    single = extract_amons("CCO", 3, geometry=False, noncovalent=ON)
    assert all(is_covalent_key(a.key) for a in single)


def test_needs_coordinates():
    with pytest.raises(AmonError, match="3D coordinates"):
        extract_amons("O.O", 2, geometry=False, noncovalent=ON)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_components": 0},
        {"contact_angstrom": -1.0},
        {"max_heavy_atoms": 1},
        {"max_components": 2.5},
        {"intramolecular_min_bonds": 2},
    ],
)
def test_settings_are_checked(kwargs):
    with pytest.raises(AmonError):
        NoncovalentSettings(**kwargs)


def test_geometry_is_the_querys_and_never_relaxed(waters):
    molecule = waters["water_05"]
    amons = extract_amons(molecule, 3, noncovalent=ON, relax=True)
    trimers = next(a for a in amons if a.key == "O.O.O")
    assert len(trimers.conformers) == trimers.count  # distinct arrangements, none merged
    for conformer in trimers.conformers:
        assert not conformer.relaxed
        occurrence = trimers.occurrences[conformer.source_occurrence]
        # heavy atoms first in occurrence order, then each one's own H atoms: the query's atoms
        rows = list(occurrence)
        for o in occurrence:
            atom = molecule.rdkit_mol.GetAtomWithIdx(o)
            rows += [n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() == 1]
        np.testing.assert_allclose(
            conformer.molecule.positions, molecule.positions[rows], atol=1e-12
        )
    water = next(a for a in amons if a.key == "O")
    assert len(water.conformers) == 1  # a covalent amon of one heavy atom keeps one conformer


def test_caps_at_the_query_geometry(base_pairs):
    molecule = base_pairs["AT"]
    amons = extract_amons(molecule, 4, noncovalent=ON)
    noncovalent = [a for a in amons if not is_covalent_key(a.key)]
    assert noncovalent
    query_h = np.linalg.norm(
        molecule.positions[molecule.bonds[:, 0]] - molecule.positions[molecule.bonds[:, 1]], axis=1
    )
    for amon in noncovalent:
        for conformer in amon.conformers:
            m = conformer.molecule
            assert not conformer.clash
            assert int((m.numbers > 1).sum()) == amon.n_heavy
            for i, j, _ in m.bonds:
                if m.numbers[j] == 1:  # own H at its query length, or a cap at the X-H length
                    length = np.linalg.norm(m.positions[i] - m.positions[j])
                    cap = XH_BOND_LENGTH_ANGSTROM[int(m.numbers[i])]
                    assert np.isclose(length, cap) or np.isclose(query_h, length).any()


def _permuted_and_rotated(molecule: Molecule, seed: int) -> Molecule:
    rng = np.random.default_rng(seed)
    order = rng.permutation(molecule.n_atoms)
    inverse = np.argsort(order)
    bonds = [(inverse[i], inverse[j], o) for i, j, o in molecule.bonds]
    rotation = Rotation.random(random_state=seed).as_matrix()
    positions = molecule.positions[order] @ rotation.T + rng.normal(size=3) * 5
    return Molecule(molecule.id, molecule.numbers[order], bonds, positions=positions)


def _signatures(amons) -> dict[str, list]:
    from amondask.amons.geometry import conformer_signature

    out = {}
    for amon in amons:
        if is_covalent_key(amon.key):
            continue
        out[amon.key] = sorted(
            np.round(conformer_signature(c.molecule.positions), 6).tolist() for c in amon.conformers
        )
    return out


@pytest.mark.parametrize("name", ["water_07", "GC"])
def test_invariant_to_atom_order_rotation_and_translation(waters, base_pairs, name):
    molecule = {**waters, **base_pairs}[name]
    k = 3 if name.startswith("water") else 5
    before = extract_amons(molecule, k, noncovalent=ON, relax=False)
    after = extract_amons(_permuted_and_rotated(molecule, 3), k, noncovalent=ON, relax=False)
    assert noncovalent_counts(before) == noncovalent_counts(after)
    first, second = _signatures(before), _signatures(after)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=1e-6)


def test_folded_peptide_example_is_the_decapeptide_folded():
    """examples/noncovalent/peptide_folded.xyz: the decapeptide of large_molecules/peptide.pdb
    (the same graph) after GFN2-xTB folded it: many X-H...O/N contacts between parts of the
    chain at least 4 bonds apart, which its intramolecular combinations hold."""
    (folded,) = examples("peptide_folded.xyz").values()
    (peptide,) = read_molecules(
        EXAMPLES.parent / "large_molecules" / "peptide.pdb", on_error="raise"
    ).molecules
    assert folded.key == peptide.key and folded.n_atoms == peptide.n_atoms == 177
    settings = NoncovalentSettings(
        max_components=2, contact_angstrom=2.2, intramolecular_min_bonds=4
    )
    amons = extract_amons(folded, 3, geometry=False, noncovalent=settings)
    contacts = {a.key: a.count for a in amons if not is_covalent_key(a.key)}
    assert sum(contacts.values()) >= 10 and contacts["C=O.N"] >= 5, contacts
