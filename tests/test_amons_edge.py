"""Edge cases of amon extraction: tiny, charged, disconnected, radical and very large queries."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from amondask.amons import extract_amons
from amondask.chem import Molecule, canonical_key
from amondask.errors import AmondaskError, AmonError


def counts(smiles, max_heavy_atoms=7, rules="paper"):
    amons = extract_amons(smiles, max_heavy_atoms, rules=rules, geometry=False)
    return {amon.key: amon.count for amon in amons}


def test_molecules_without_heavy_atoms_have_no_amons():
    assert counts("[H][H]") == {}


def test_single_heavy_atom_query_is_its_own_amon():
    assert counts("C") == {"C": 1}
    assert counts("O") == {"O": 1}


def test_amons_are_neutral_even_for_zwitterions_and_salts():
    # the ions cannot be split off alone; the carboxylate stays whole only with its charge
    assert counts("[Na+].[Cl-]") == {}
    assert counts("C[NH3+].[O-]C(=O)C") == {"C": 2, "C=O": 1, "CC=O": 1}
    betaine = counts("C[N+](C)(C)CC(=O)[O-]", 8, "plain")
    assert canonical_key(Chem.MolFromSmiles("C[N+](C)(C)CC(=O)[O-]")) in betaine
    assert all(("+" in key) == ("-" in key) for key in betaine)


def test_radicals_are_refused_with_a_clear_message():
    with pytest.raises(AmonError, match="radical"):
        extract_amons("C[CH2]", 3, geometry=False)
    assert issubclass(AmonError, AmondaskError)


def test_coincident_atoms_give_an_amon_error():
    ethane = Molecule.from_smiles("CC")
    positions = np.zeros((ethane.n_atoms, 3))
    positions[:, 0] = np.arange(ethane.n_atoms)
    positions[1] = positions[0]  # the two carbons on top of each other
    with pytest.raises(AmonError, match="coordinates"):
        extract_amons(ethane.with_positions(positions), 1, relax=False)


@pytest.mark.parametrize("rules", ["paper", "plain"])
def test_long_alkane_chain_counts_are_exact(rules):
    """A path of n atoms has n - s + 1 connected subsets of size s, each a linear alkane."""
    n = 100
    found = counts("C" * n, 7, rules)
    expected = {"C" * s: n - s + 1 for s in range(1, 8)}
    assert found == expected


def test_long_polyene_chain_counts_are_exact():
    """C=C-C=C-...: every path of even length has exactly one perfect matching (a linear
    polyene, wherever it starts: "plain" re-pairs the pi bonds), odd paths have none."""
    n = 100  # 50 double bonds
    smiles = "C=C" * (n // 2)
    found = counts(smiles, 6, "plain")
    for s in (2, 4, 6):
        polyene = "C=C" * (s // 2)
        assert found[canonical_key(Chem.MolFromSmiles(polyene))] == n - s + 1
    assert len(found) == 3
