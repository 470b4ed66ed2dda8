"""Invariances of amon extraction: atom renumbering, chemistry of every amon, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from amondask.amons import extract_amons, find_amon_graphs, query_graph
from amondask.amons.extract import _AmonBuilder
from amondask.chem import Molecule
from amondask.errors import AmonError

DATA = Path(__file__).parent / "data"
MOLECULES = [
    line.split()[0]
    for line in (DATA / "amon_test_molecules.smi").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
SAMPLE = MOLECULES[::6]  # ~40 molecules: hand-picked and QM9


def _pi(atom: Chem.Atom) -> int:
    return atom.GetTotalValence() - atom.GetTotalDegree()


@pytest.mark.parametrize("rules", ["paper", "plain"])
@pytest.mark.parametrize("smiles", SAMPLE)
def test_renumbering_gives_same_amons(smiles, rules):
    mol = Chem.MolFromSmiles(smiles)
    order = list(range(mol.GetNumAtoms()))
    random.Random(len(smiles)).shuffle(order)
    shuffled = Chem.RenumberAtoms(mol, order)
    first = extract_amons(mol, 7, rules=rules, geometry=False)
    second = extract_amons(shuffled, 7, rules=rules, geometry=False)
    assert [(a.key, a.count) for a in first] == [(a.key, a.count) for a in second]
    # occurrences map onto each other through the permutation (new index k = old order[k])
    for a, b in zip(first, second, strict=True):
        mapped = {tuple(sorted(order[k] for k in occ)) for occ in b.occurrences}
        assert mapped == set(a.occurrences)


@pytest.mark.parametrize("smiles", SAMPLE)
def test_every_amon_is_a_valid_closed_shell_neutral_fragment(smiles):
    molecule = Molecule.from_smiles(smiles)
    query = molecule.rdkit_mol
    graph = query_graph(query)
    builder = _AmonBuilder(graph, molecule)
    for entry in find_amon_graphs(graph, 7, "paper"):
        for occurrence in entry.occurrences:
            amon = builder.occurrence_molecule(occurrence, entry.key, False)
            mol = amon.rdkit_mol  # raises if RDKit cannot sanitize it
            assert amon.key == entry.key
            assert amon.charge == 0
            assert sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()) == 0
            for k, position in enumerate(occurrence.atoms):
                original = query.GetAtomWithIdx(graph.query_index[position])
                atom = mol.GetAtomWithIdx(k)
                assert atom.GetAtomicNum() == original.GetAtomicNum()
                assert atom.GetFormalCharge() == original.GetFormalCharge()
                assert atom.GetTotalDegree() == original.GetTotalDegree()
                assert _pi(atom) == _pi(original)


def test_output_is_sorted_and_deterministic():
    smiles = "CC(=O)Oc1ccccc1C(=O)O"
    first = extract_amons(smiles, 7, geometry=False)
    second = extract_amons(smiles, 7, geometry=False)
    assert [(a.key, a.occurrences) for a in first] == [(a.key, a.occurrences) for a in second]
    assert [(a.n_heavy, a.key) for a in first] == sorted((a.n_heavy, a.key) for a in first)
    for amon in first:
        assert list(amon.occurrences) == sorted(amon.occurrences)
        assert amon.count == len(amon.occurrences) == len(set(amon.occurrences))
        assert all(len(occ) == amon.n_heavy for occ in amon.occurrences)


def test_inputs_smiles_rdkit_and_molecule_agree():
    smiles = "OC1CC2C(C1)C2"
    from_smiles = extract_amons(smiles, 5, geometry=False)
    from_rdkit = extract_amons(Chem.MolFromSmiles(smiles), 5, geometry=False)
    from_molecule = extract_amons(Molecule.from_smiles(smiles), 5, geometry=False)
    keys = [(a.key, a.count, a.occurrences) for a in from_smiles]
    assert keys == [(a.key, a.count, a.occurrences) for a in from_rdkit]
    assert keys == [(a.key, a.count, a.occurrences) for a in from_molecule]


def test_graph_only_amon_molecule_matches_key():
    for amon in extract_amons("NC(=O)c1cccnc1", 7, geometry=False):
        assert amon.conformers == ()
        assert amon.molecule.positions is None
        assert amon.molecule.key == amon.key
        assert amon.molecule.n_heavy == amon.n_heavy


def test_errors_say_what_to_do():
    with pytest.raises(AmonError, match="rule set"):
        extract_amons("CCO", 3, rules="authors", geometry=False)
    with pytest.raises(AmonError, match="at least 1"):
        extract_amons("CCO", 0, geometry=False)
    with pytest.raises(TypeError, match="SMILES string"):
        extract_amons(42, 3, geometry=False)


def test_chunking_by_size_is_consistent():
    """Amons at N_I=k are exactly the amons of size <= k at N_I=7."""
    smiles = "CC1=CC(=O)C=CC1=O"
    full = {(a.key, a.count) for a in extract_amons(smiles, 7, geometry=False)}
    sizes = {a.key: a.n_heavy for a in extract_amons(smiles, 7, geometry=False)}
    for k in range(1, 7):
        part = {(a.key, a.count) for a in extract_amons(smiles, k, geometry=False)}
        assert part == {(key, c) for key, c in full if sizes[key] <= k}
    assert np.mean(list(sizes.values())) > 1


def test_renumbering_a_3d_query_with_hydrogens_gives_same_conformers():
    from amondask.amons.geometry import coulomb_spectrum
    from amondask.chem.geometry import embed_molecule

    query = embed_molecule(Molecule.from_smiles("CC(O)C1=CC(C#N)CN1"), seed=2)
    mol = query.rdkit_mol
    order = list(range(mol.GetNumAtoms()))
    random.Random(5).shuffle(order)  # H atoms and heavy atoms interleaved
    shuffled = Molecule.from_rdkit(Chem.RenumberAtoms(mol, order), "shuffled")
    first = extract_amons(query, 6, relax=False)
    second = extract_amons(shuffled, 6, relax=False)
    assert [(a.key, a.count) for a in first] == [(a.key, a.count) for a in second]
    for a, b in zip(first, second, strict=True):
        mapped = {tuple(sorted(order[k] for k in occ)) for occ in b.occurrences}
        assert mapped == set(a.occurrences)
        spectra_a = sorted(
            tuple(np.round(coulomb_spectrum(c.molecule.numbers, c.molecule.positions), 6))
            for c in a.conformers
        )
        spectra_b = sorted(
            tuple(np.round(coulomb_spectrum(c.molecule.numbers, c.molecule.positions), 6))
            for c in b.conformers
        )
        assert spectra_a == spectra_b
