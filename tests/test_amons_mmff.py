"""The compiled MMFF94 relaxation engine against RDKit's MMFF94 force field (the reference).

Energies and gradients are compared term set by term set on capped amons of varied molecules
(rings, four-membered rings whose torsions RDKit's getter does not give, nitriles, amides,
charged groups), in their query geometries and perturbed; cached (canonical-order) parameters
against freshly built ones; relaxations against RDKit's minimizer; and the conformer set of
extract_amons against the RDKit engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from rdkit.Chem import rdForceFieldHelpers

from amondask.amons import extract_amons, geometry, mmff
from amondask.amons.geometry import (
    conformer_distance,
    conformer_signature,
    coulomb_spectra,
    coulomb_spectrum,
    dihedral_angles_degrees,
    heavy_dihedrals,
    relax_amon,
)
from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule

QUERIES = [
    "CC(O)C1=CC(C#N)CN1",
    "OCC1CCC1C",  # four-membered ring: torsion parameters fitted from RDKit's energy
    "CC1COC1C=O",
    "C1CC2CC12",  # bicyclobutane-like fused small rings
    "CC(=O)NC1=CC=CC=C1",
    "C[N+](C)(C)CC([O-])=O",
    "CC#CC1=NC=CO1",
    "O=[N+]([O-])C1=CC=CC=C1F",
    "CS(=O)(=O)NCC(Cl)Br",
    "CC1=CC(=O)C=CC1=O",
]


def _amon_molecules(max_heavy_atoms: int = 5) -> list[Molecule]:
    out = []
    for index, smiles in enumerate(QUERIES):
        query = embed_molecule(Molecule.from_smiles(smiles, f"q{index}"), seed=index)
        for amon in extract_amons(query, max_heavy_atoms, relax=False):
            out.extend(conformer.molecule for conformer in amon.conformers)
    return out


@pytest.fixture(scope="module")
def amon_molecules() -> list[Molecule]:
    return _amon_molecules()


def _rdkit_energy_gradient(molecule: Molecule, positions: np.ndarray):
    mol = molecule.rdkit_mol
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    flat = positions.ravel().tolist()
    return field.CalcEnergy(flat), np.array(field.CalcGrad(flat)).reshape(-1, 3)


def test_energy_and_gradient_match_rdkit(amon_molecules):
    rng = np.random.default_rng(0)
    n_ring_fits = 0
    for molecule in amon_molecules:
        mol = molecule.rdkit_mol  # keep the copy alive while its ring info is read
        terms = mmff.mmff_terms(mol)
        assert terms is not None, molecule.key
        if any(len(ring) == 4 for ring in mol.GetRingInfo().AtomRings()):
            n_ring_fits += 1
        for positions in (
            molecule.positions,
            molecule.positions + rng.normal(scale=0.05, size=molecule.positions.shape),
        ):
            energy, gradient = mmff.energy_gradient(terms, positions)
            reference_energy, reference_gradient = _rdkit_energy_gradient(molecule, positions)
            assert energy == pytest.approx(reference_energy, abs=1e-6), molecule.key
            np.testing.assert_allclose(gradient, reference_gradient, atol=1e-6)
    assert n_ring_fits >= 3


def test_gradient_matches_finite_differences_with_restraints(amon_molecules):
    molecule = max(amon_molecules, key=lambda m: len(heavy_dihedrals(m)))
    terms = mmff.mmff_terms(molecule.rdkit_mol)
    dihedrals = heavy_dihedrals(molecule)
    start = molecule.positions + np.random.default_rng(1).normal(
        scale=0.1, size=molecule.positions.shape
    )
    phi = dihedral_angles_degrees(molecule.positions, dihedrals)
    window = np.column_stack((phi - 2.0, phi + 2.0, np.full(len(phi), 100.0)))
    _, gradient = mmff.energy_gradient(terms, start, dihedrals, window)
    step = 1e-6
    numeric = np.zeros_like(start)
    for a in range(start.shape[0]):
        for c in range(3):
            plus, minus = start.copy(), start.copy()
            plus[a, c] += step
            minus[a, c] -= step
            numeric[a, c] = (
                mmff.energy_gradient(terms, plus, dihedrals, window)[0]
                - mmff.energy_gradient(terms, minus, dihedrals, window)[0]
            ) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, atol=2e-4 * max(1.0, np.abs(numeric).max()))


def test_restraint_matches_rdkit_torsion_constraint(amon_molecules):
    molecule = max(amon_molecules, key=lambda m: len(heavy_dihedrals(m)))
    dihedrals = heavy_dihedrals(molecule)
    mol = molecule.rdkit_mol
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    for name in ("Bond", "Angle", "StretchBend", "Oop", "Torsion", "VdW", "Ele"):
        getattr(properties, f"SetMMFF{name}Term")(False)
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, properties)
    for i, j, k, l in dihedrals.tolist():
        field.MMFFAddTorsionConstraint(i, j, k, l, True, -2.0, 2.0, 100.0)
    phi = dihedral_angles_degrees(molecule.positions, dihedrals)
    window = np.column_stack((phi - 2.0, phi + 2.0, np.full(len(phi), 100.0)))
    terms = mmff.mmff_terms(mol)
    empty = mmff.moving_terms(terms, np.array([], dtype=np.int64), molecule.n_atoms)
    moved = molecule.positions + np.random.default_rng(2).normal(
        scale=0.05, size=molecule.positions.shape
    )
    energy, gradient = mmff.energy_gradient(empty, moved, dihedrals, window)
    flat = moved.ravel().tolist()
    assert energy > 1.0  # some dihedrals left their window
    assert energy == pytest.approx(field.CalcEnergy(flat), rel=1e-9)
    np.testing.assert_allclose(
        gradient, np.array(field.CalcGrad(flat)).reshape(-1, 3), rtol=1e-7, atol=1e-6
    )


def test_cached_parameters_equal_fresh_ones(amon_molecules):
    """The setup cache (canonical order, permuted back) gives the uncached terms' energy."""
    geometry._SETUP_CACHE.clear()
    geometry._CANONICAL_TERMS.clear()
    for molecule in amon_molecules:
        # the same graph with its atoms renumbered hits the canonical cache
        order = np.random.default_rng(molecule.n_atoms).permutation(molecule.n_atoms)
        new_index = np.empty_like(order)
        new_index[order] = np.arange(len(order))
        bonds = molecule.bonds.copy()
        bonds[:, :2] = new_index[bonds[:, :2]]
        renumbered = Molecule(
            id="r",
            numbers=molecule.numbers[order],
            bonds=bonds,
            formal_charges=molecule.formal_charges[order],
            positions=molecule.positions[order],
        )
        for candidate in (molecule, renumbered):
            cached = geometry._relaxation_setup(candidate)[0]
            fresh = mmff.mmff_terms(candidate.rdkit_mol)
            for positions in (candidate.positions, candidate.positions * 1.02):
                e_cached, g_cached = mmff.energy_gradient(cached, positions)
                e_fresh, g_fresh = mmff.energy_gradient(fresh, positions)
                assert e_cached == pytest.approx(e_fresh, abs=1e-9)
                np.testing.assert_allclose(g_cached, g_fresh, atol=1e-9)
    assert len(geometry._CANONICAL_TERMS) < len(geometry._SETUP_CACHE)


def test_cached_relaxation_equals_uncached(amon_molecules):
    """A relaxation from a cold cache and from a warm one give the same geometry (1e-6 A)."""
    sample = amon_molecules[::3]
    geometry._SETUP_CACHE.clear()
    geometry._CANONICAL_TERMS.clear()
    cold = [relax_amon(m).positions for m in sample]
    warm = [relax_amon(m).positions for m in sample]
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_relaxation_agrees_with_rdkit_engine(amon_molecules):
    """Same recipe, two minimizers: the same local minimum to within the conformer threshold."""
    distances = []
    for molecule in amon_molecules:
        ours = relax_amon(molecule)
        reference = relax_amon(molecule, engine="rdkit", max_iterations=10_000)
        assert ours.accepted == reference.accepted
        distances.append(
            conformer_distance(
                conformer_signature(reference.positions), conformer_signature(ours.positions)
            )
        )
        # converged: no force left beyond the tolerance on any atom (kcal/mol/A)
        terms = mmff.mmff_terms(molecule.rdkit_mol)
        dihedrals = geometry._bent_dihedrals(molecule.positions, heavy_dihedrals(molecule))
        phi = dihedral_angles_degrees(molecule.positions, dihedrals)
        window = np.column_stack((phi - 2.0, phi + 2.0, np.full(len(phi), 100.0)))
        _, gradient = mmff.energy_gradient(terms, ours.positions, dihedrals, window)
        assert np.abs(gradient).max() < 1e-2
    distances = np.array(distances)
    assert np.median(distances) < 1e-5
    assert distances.max() < 0.01


def test_batched_spectra_equal_single(amon_molecules):
    same_size = [m for m in amon_molecules if m.n_atoms == amon_molecules[-1].n_atoms]
    batched = coulomb_spectra(
        np.stack([m.numbers for m in same_size]), np.stack([m.positions for m in same_size])
    )
    single = np.stack([coulomb_spectrum(m.numbers, m.positions) for m in same_size])
    np.testing.assert_array_equal(batched, single)


def test_conformer_sets_match_rdkit_engine(monkeypatch):
    """extract_amons with the compiled engine gives the RDKit engine's conformer partition."""
    import amondask.amons.extract as extract

    queries = [
        embed_molecule(Molecule.from_smiles(smiles, f"q{index}"), seed=index)
        for index, smiles in enumerate(QUERIES[:6])
    ]
    ours = [extract_amons(query, 6) for query in queries]

    def rdkit_relax(molecule, **kwargs):
        return relax_amon(molecule, engine="rdkit", **kwargs)

    monkeypatch.setattr(extract, "relax_amon", rdkit_relax)
    reference = [extract_amons(query, 6) for query in queries]
    for a_amons, b_amons in zip(ours, reference, strict=True):
        assert [
            (a.key, [c.occurrence_indices for c in a.conformers], [c.relaxed for c in a.conformers])
            for a in a_amons
        ] == [
            (b.key, [c.occurrence_indices for c in b.conformers], [c.relaxed for c in b.conformers])
            for b in b_amons
        ]


def test_relaxation_is_deterministic_across_cache_states(amon_molecules):
    sample = amon_molecules[::5]
    first = [relax_amon(m).positions for m in sample]
    geometry._SETUP_CACHE.clear()
    geometry._CANONICAL_TERMS.clear()
    second = [relax_amon(m).positions for m in reversed(sample)][::-1]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_compiled_parameters_the_rdkit_path_relaxes(amon_molecules, monkeypatch):
    molecule = amon_molecules[-1]
    monkeypatch.setattr(geometry, "_SETUP_CACHE", {})
    monkeypatch.setattr(geometry, "_CANONICAL_TERMS", {})
    monkeypatch.setattr(mmff, "mmff_terms", lambda mol: None)
    fallback = relax_amon(molecule)
    reference = relax_amon(molecule, engine="rdkit")
    np.testing.assert_array_equal(fallback.positions, reference.positions)
    assert fallback.accepted == reference.accepted


def test_bounded_caches_give_the_same_relaxations(amon_molecules, monkeypatch):
    sample = amon_molecules[::4]
    expected = [relax_amon(m).positions for m in sample]
    monkeypatch.setattr(geometry, "_SETUP_CACHE", {})
    monkeypatch.setattr(geometry, "_CANONICAL_TERMS", {})
    monkeypatch.setattr(geometry, "_SETUP_CACHE_LIMIT", 4)
    monkeypatch.setattr(geometry, "_TERMS_CACHE_LIMIT", 3)
    for molecule, positions in zip(sample, expected, strict=True):
        np.testing.assert_array_equal(relax_amon(molecule).positions, positions)
        assert len(geometry._SETUP_CACHE) <= 4
        assert len(geometry._CANONICAL_TERMS) <= 3
