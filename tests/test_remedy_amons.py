"""Amons beyond the plain set (the remedy's options of extract_amons, and remedy_amons)."""

from __future__ import annotations

import pytest
from rdkit import Chem

from amondask.amons import extract_amons
from amondask.chem.molecule import Molecule, canonical_key
from amondask.errors import AmondaskError, AmonError
from amondask.pipeline.remedy import remedy_amons

QUERIES = ["CC12C3C4C1C5C2C3C45", "CC12C3COC1C=CC23", "CC(C)N1N=NC(N)=N1", "OC1C2CC3C1N23"]


def _heavy(mol: Chem.Mol) -> list[int]:
    return [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]


@pytest.mark.parametrize("smiles", QUERIES)
def test_min_heavy_atoms_keeps_exactly_the_larger_amons_of_the_full_set(smiles):
    full = extract_amons(smiles, 8, geometry=False)
    large = extract_amons(smiles, 8, min_heavy_atoms=6, geometry=False)
    expected = [(a.key, a.count, a.occurrences) for a in full if a.n_heavy >= 6]
    assert [(a.key, a.count, a.occurrences) for a in large] == expected


@pytest.mark.parametrize("smiles", QUERIES)
def test_containing_keeps_the_occurrences_that_hold_the_atoms(smiles):
    query = Molecule.from_smiles(smiles, smiles)
    heavy = _heavy(query.rdkit_mol)
    required = heavy[1:4]
    full = extract_amons(query, 7, geometry=False)
    kept = extract_amons(query, 7, containing=required, geometry=False)
    expected = {}
    for amon in full:  # brute force over the full set
        occurrences = tuple(o for o in amon.occurrences if set(required) <= set(o))
        if occurrences:
            expected[amon.key] = occurrences
    assert {a.key: a.occurrences for a in kept} == expected
    assert all(a.count == len(a.occurrences) for a in kept)


def test_containing_refuses_a_hydrogen_or_missing_atom():
    query = Molecule.from_smiles("CCO", "ethanol")
    hydrogen = next(a.GetIdx() for a in query.rdkit_mol.GetAtoms() if a.GetAtomicNum() == 1)
    with pytest.raises(AmonError, match="heavy atom"):
        extract_amons(query, 3, containing=[hydrogen], geometry=False)


def test_default_extraction_is_unchanged_by_the_options():
    for smiles in QUERIES:
        plain = extract_amons(smiles, 7, geometry=False)
        same = extract_amons(smiles, 7, min_heavy_atoms=1, containing=None, geometry=False)
        assert [(a.key, a.occurrences) for a in plain] == [(a.key, a.occurrences) for a in same]


def test_next_size_remedy_of_methylcubane_gives_the_8_atom_amons_never_the_query():
    amons = remedy_amons("CC12C3C4C1C5C2C3C45", 7, strategy="next-size", extra_heavy_atoms=1)
    assert {a.n_heavy for a in amons} == {8}
    keys = {a.key for a in amons}
    assert canonical_key(Chem.MolFromSmiles("C12C3C4C1C5C2C3C45")) in keys  # cubane
    # k = 2 would reach 9 heavy atoms: the query itself is never an amon of the remedy
    bigger = remedy_amons("CC12C3C4C1C5C2C3C45", 7, strategy="next-size", extra_heavy_atoms=2)
    assert {a.key for a in bigger} == keys
    assert all(a.conformers for a in amons)  # 3D conformers, ready to label


def test_ring_systems_remedy_of_methylcubane_is_cubane_alone():
    amons = remedy_amons("CC12C3C4C1C5C2C3C45", 7, strategy="ring-systems", extra_heavy_atoms=1)
    assert [a.key for a in amons] == [canonical_key(Chem.MolFromSmiles("C12C3C4C1C5C2C3C45"))]
    assert amons[0].count == 1


def test_ring_systems_remedy_is_empty_without_large_ring_systems_or_when_the_system_is_all():
    assert remedy_amons("CC(C)N1N=NC(N)=N1", 7, strategy="ring-systems", geometry=False) == []
    # a 9-atom cage with no substituent: no amon smaller than the query holds it
    assert remedy_amons("C1C2C3CC3C3(CO3)C12", 7, strategy="ring-systems", geometry=False) == []
    # three fused cyclopropane/oxirane rings: every 8-atom subset cuts a three-membered ring,
    # which the paper rules refuse; the plain rules give the 8-atom amons
    cage = "C1C2C3CC3C3(CO3)C12"
    assert remedy_amons(cage, 7, strategy="next-size", rules="paper", geometry=False) == []
    plain = remedy_amons(cage, 7, strategy="next-size", rules="plain", geometry=False)
    # removing one of the 9 atoms leaves 8 connected subsets (not the spiro atom: that cuts
    # off the oxirane's other two atoms)
    assert {a.n_heavy for a in plain} == {8}
    assert sum(a.count for a in plain) == 8


def test_unknown_strategy_is_refused():
    with pytest.raises(AmondaskError, match="strategy"):
        remedy_amons("CCO", 1, strategy="bigger")
