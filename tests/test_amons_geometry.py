"""3D amon geometries: caps on cut bonds, MMFF94 relaxation, clashes, conformers."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit.Chem import rdMolTransforms
from scipy.spatial.transform import Rotation

from amondask.amons import extract_amons
from amondask.amons.geometry import coulomb_spectrum, xh_bond_length
from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule

QUERY_SMILES = "CC(O)C1=CC(C#N)CN1"


@pytest.fixture(scope="module")
def query() -> Molecule:
    return embed_molecule(Molecule.from_smiles(QUERY_SMILES, "q"), seed=7)


def _heavy_neighbours(molecule: Molecule) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {i: set() for i in range(molecule.n_atoms)}
    for i, j, _ in molecule.bonds.tolist():
        out[i].add(j)
        out[j].add(i)
    return out


def test_unrelaxed_amons_sit_on_query_coordinates_with_standard_caps(query):
    amons = extract_amons(query, 5, relax=False)
    neighbours = _heavy_neighbours(query)
    checked_caps = 0
    for amon in amons:
        for conformer in amon.conformers:
            occurrence = amon.occurrences[conformer.source_occurrence]
            molecule = conformer.molecule
            assert molecule.key == amon.key
            heavy = molecule.positions[: amon.n_heavy]
            np.testing.assert_allclose(heavy, query.positions[list(occurrence)], atol=1e-12)
            inside = set(occurrence)
            # walk the H atoms in the documented order: per heavy atom, own H then caps
            h_index = amon.n_heavy
            for atom in occurrence:
                own_h = sorted(n for n in neighbours[atom] if query.numbers[n] == 1)
                cut = sorted(
                    n for n in neighbours[atom] if query.numbers[n] > 1 and n not in inside
                )
                for h in own_h:
                    np.testing.assert_allclose(molecule.positions[h_index], query.positions[h])
                    h_index += 1
                for removed in cut:
                    cap = molecule.positions[h_index] - query.positions[atom]
                    bond = query.positions[removed] - query.positions[atom]
                    assert np.linalg.norm(cap) == pytest.approx(
                        xh_bond_length(int(query.numbers[atom])), abs=1e-9
                    )
                    cosine = cap @ bond / np.linalg.norm(cap) / np.linalg.norm(bond)
                    assert cosine == pytest.approx(1.0, abs=1e-9)
                    h_index += 1
                    checked_caps += 1
            assert h_index == molecule.n_atoms
    assert checked_caps > 20


def test_relaxed_conformers_keep_dihedrals_and_cover_occurrences(query):
    amons = extract_amons(query, 7)
    assert {a.key for a in amons} == {a.key for a in extract_amons(query, 7, geometry=False)}
    for amon in amons:
        assert amon.conformers
        assert amon.molecule is amon.conformers[0].molecule
        covered = sorted(i for c in amon.conformers for i in c.occurrence_indices)
        if all(c.relaxed for c in amon.conformers):
            assert covered == list(range(amon.count))
        for conformer in amon.conformers:
            molecule = conformer.molecule
            assert molecule.key == amon.key
            assert np.all(np.isfinite(molecule.positions))
            assert not conformer.clash
            occurrence = amon.occurrences[conformer.source_occurrence]
            _assert_heavy_dihedrals_close(molecule, query, occurrence, tolerance=5.0)
            # MMFF94 C-H bonds are 1.06 (sp) to 1.10 (sp3) angstrom
            for i, j, _ in molecule.bonds.tolist():
                if {int(molecule.numbers[i]), int(molecule.numbers[j])} == {1, 6}:
                    length = np.linalg.norm(molecule.positions[i] - molecule.positions[j])
                    assert 1.05 < length < 1.12


def _assert_heavy_dihedrals_close(amon: Molecule, query: Molecule, occurrence, tolerance):
    amon_mol, query_mol = amon.rdkit_mol, query.rdkit_mol
    n_heavy = len(occurrence)
    conf_a, conf_q = amon_mol.GetConformer(), query_mol.GetConformer()
    for bond in amon_mol.GetBonds():
        j, k = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if j >= n_heavy or k >= n_heavy:
            continue
        for i in [n.GetIdx() for n in amon_mol.GetAtomWithIdx(j).GetNeighbors()]:
            for l in [n.GetIdx() for n in amon_mol.GetAtomWithIdx(k).GetNeighbors()]:
                if max(i, l) >= n_heavy or len({i, j, k, l}) < 4:
                    continue
                angles = [
                    rdMolTransforms.GetAngleDeg(conf_q, *[occurrence[x] for x in (i, j, k)]),
                    rdMolTransforms.GetAngleDeg(conf_q, *[occurrence[x] for x in (j, k, l)]),
                ]
                if max(angles) > 170:
                    continue
                before = rdMolTransforms.GetDihedralDeg(
                    conf_q, *[occurrence[x] for x in (i, j, k, l)]
                )
                after = rdMolTransforms.GetDihedralDeg(conf_a, i, j, k, l)
                assert abs((after - before + 180) % 360 - 180) <= tolerance


def test_clashing_caps_are_reported_not_hidden():
    """Two atoms of cyclopropane ("plain" rules): both caps point at the removed third C."""
    cyclopropane = embed_molecule(Molecule.from_smiles("C1CC1"), seed=1)
    amons = {a.key: a for a in extract_amons(cyclopropane, 2, rules="plain", relax=False)}
    ethane = amons["CC"].conformers[0]
    assert ethane.clash
    assert ethane.min_distance_angstrom < 0.6
    assert any("angstrom apart" in w for w in ethane.warnings)
    assert not amons["C"].conformers[0].clash


def test_conformers_are_rotation_invariant(query):
    rotation = Rotation.from_euler("xyz", [30, -70, 110], degrees=True).as_matrix()
    rotated = query.with_positions(query.positions @ rotation.T + np.array([1.0, -2.0, 3.0]))
    first = extract_amons(query, 6, relax=False)
    second = extract_amons(rotated, 6, relax=False)
    assert [(a.key, len(a.conformers)) for a in first] == [
        (a.key, len(a.conformers)) for a in second
    ]
    for a, b in zip(first, second, strict=True):
        for ca, cb in zip(a.conformers, b.conformers, strict=True):
            assert ca.occurrence_indices == cb.occurrence_indices
            np.testing.assert_allclose(
                coulomb_spectrum(ca.molecule.numbers, ca.molecule.positions),
                coulomb_spectrum(cb.molecule.numbers, cb.molecule.positions),
                atol=1e-8,
            )


def test_symmetric_occurrences_share_one_conformer():
    """The six C=C of benzene sit in identical local geometries: one conformer."""
    benzene = embed_molecule(Molecule.from_smiles("c1ccccc1"), seed=3)
    ethylene = extract_amons(benzene, 2)[0]
    assert ethylene.key == "C=C"
    assert ethylene.count == 6
    assert len(ethylene.conformers) == 1
    assert ethylene.conformers[0].occurrence_indices == tuple(range(6))


def test_graph_only_query_is_embedded():
    amons = extract_amons("OCC#N", 3, seed=11)
    assert all(a.molecule.positions is not None for a in amons)
    again = extract_amons("OCC#N", 3, seed=11)
    for a, b in zip(amons, again, strict=True):
        np.testing.assert_allclose(a.molecule.positions, b.molecule.positions)


def test_dihedrals_match_rdkit(query):
    from amondask.amons.geometry import dihedral_angles_degrees, heavy_dihedrals

    dihedrals = heavy_dihedrals(query)
    assert len(dihedrals) > 5
    conf = query.rdkit_mol.GetConformer()
    expected = [rdMolTransforms.GetDihedralDeg(conf, *map(int, d)) for d in dihedrals]
    np.testing.assert_allclose(
        dihedral_angles_degrees(query.positions, dihedrals), expected, atol=1e-9
    )


def test_coulomb_matrix_matches_qmllib(query):
    """qmllib works in the coordinates' own unit (angstrom); ours in bohr."""
    from qmllib.representations import generate_coulomb_matrix

    from amondask.amons.geometry import coulomb_matrix

    ours = coulomb_matrix(query.numbers, query.positions)
    packed = generate_coulomb_matrix(
        query.numbers, query.positions, size=query.n_atoms, sorting="unsorted"
    )
    reference = np.zeros_like(ours)
    reference[np.tril_indices(query.n_atoms)] = packed
    reference = reference + np.tril(reference, -1).T
    off_diagonal = ~np.eye(query.n_atoms, dtype=bool)
    np.testing.assert_allclose(np.diag(ours), np.diag(reference), rtol=1e-12)
    # Z_i Z_j / r_bohr = Z_i Z_j / (r_angstrom / 0.529...) = 0.529... * qmllib's value
    bohr_in_angstrom = 0.52917721092
    np.testing.assert_allclose(
        ours[off_diagonal], reference[off_diagonal] * bohr_in_angstrom, rtol=1e-9
    )


def test_relaxation_is_repeatable_and_leaves_its_input_alone(query):
    from amondask.amons.geometry import relax_amon

    amon = next(a for a in extract_amons(query, 5, relax=False) if a.n_heavy == 5)
    molecule = amon.conformers[0].molecule
    start = np.array(molecule.rdkit_mol.GetConformer().GetPositions())
    first, second = relax_amon(molecule), relax_amon(molecule)
    np.testing.assert_allclose(first.positions, second.positions, atol=1e-10)
    assert first.max_torsion_change_degrees == second.max_torsion_change_degrees
    np.testing.assert_allclose(molecule.rdkit_mol.GetConformer().GetPositions(), start)
    np.testing.assert_allclose(start, molecule.positions)
    assert not np.allclose(first.positions, molecule.positions)  # it did relax
