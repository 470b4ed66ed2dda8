"""Outlier flags: ring systems larger than N_I, the flag combination, the prediction Dataset."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from amondask.amons import extract_amons
from amondask.amons.ring_systems import ring_systems, uncontained_ring_systems
from amondask.models import prediction_dataset
from amondask.models.flags import add_outlier_flags, outlier_flags, ring_system_flags

KCAL = 627.5094740631

# SMILES: ring-system sizes (heavy atoms), hand-counted
HAND_CHECKED = {
    "CCCCO": [],
    "c1ccccc1": [6],
    "c1ccccc1-c1ccccc1": [6, 6],  # biphenyl: two systems joined by a single bond
    "C1CCC2CCCCC2C1": [10],  # decalin: fused
    "C1CC2CCC1C2": [7],  # norbornane: bridged
    "C1CC11CC1": [5],  # spiro[2.2]pentane: rings share one atom
    "C12C3C4C1C5C2C3C45": [8],  # cubane
    "CC12C3COC1C=CC23": [8],  # a QM9 tricycle with a methyl
    "C1CC1CC1CC1": [3, 3],  # two cyclopropyls apart
}


def _mol(smiles: str) -> Chem.Mol:
    return Chem.MolFromSmiles(smiles)


@pytest.mark.parametrize(("smiles", "sizes"), list(HAND_CHECKED.items()))
def test_ring_systems_of_hand_checked_molecules(smiles, sizes):
    systems = ring_systems(_mol(smiles))
    assert [len(s) for s in systems] == sizes
    mol = _mol(smiles)
    for system in systems:  # every atom of a system is a ring atom, no atom in two systems
        assert all(mol.GetAtomWithIdx(a).IsInRing() for a in system)
    flat = [a for s in systems for a in s]
    assert len(flat) == len(set(flat))
    assert set(flat) == {a.GetIdx() for a in mol.GetAtoms() if a.IsInRing()}


def test_ring_systems_do_not_depend_on_atom_order():
    mol = _mol("CC12C3COC1C=CC23")
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(mol.GetNumAtoms()).tolist()
        shuffled = Chem.RenumberAtoms(mol, order)
        sizes = [len(s) for s in ring_systems(shuffled)]
        symbols = sorted(shuffled.GetAtomWithIdx(a).GetSymbol() for a in ring_systems(shuffled)[0])
        assert sizes == [8]
        assert symbols == ["C"] * 7 + ["O"]


def test_uncontained_ring_systems_by_size_and_by_amon_occurrences():
    cubane = _mol("C12C3C4C1C5C2C3C45")
    assert uncontained_ring_systems(cubane, 7) == [tuple(range(8))]
    assert uncontained_ring_systems(cubane, 8) == []
    methylcubane = Chem.AddHs(_mol("CC12C3C4C1C5C2C3C45"))
    cage = tuple(range(1, 9))
    assert uncontained_ring_systems(methylcubane, 7) == [cage]
    # an amon of 8 heavy atoms that holds the cage (cubane itself) contains it
    amons = extract_amons(methylcubane, 8, min_heavy_atoms=8, geometry=False)
    occurrences = [o for amon in amons for o in amon.occurrences]
    assert uncontained_ring_systems(methylcubane, 7, occurrences) == []
    # occurrences that miss a cage atom do not
    partial = [o for o in occurrences if not set(cage) <= set(o)]
    assert partial and uncontained_ring_systems(methylcubane, 7, partial) == [cage]


def test_ring_system_flags_of_molecules_and_smiles_parsed_molecules():
    from amondask.chem.molecule import Molecule

    molecules = [Molecule.from_smiles(s, s) for s in ["CCCCCCCCO", "CC12C3COC1C=CC23", "c1ccccc1"]]
    assert ring_system_flags(molecules, 7).tolist() == [False, True, False]
    assert ring_system_flags(molecules, 8).tolist() == [False, False, False]
    assert ring_system_flags(molecules, 5).tolist() == [False, True, True]


def test_outlier_flags_combine_the_three_tests_with_reasons():
    sd_kcal = np.array([0.1, 5.0, np.nan, 0.1, 5.0])
    flagged, reason = outlier_flags(
        ring_system=np.array([False, False, False, True, True]),
        uncertainty_hartree=sd_kcal / KCAL,
        covered=np.array([True, True, False, True, False]),
        uncertainty_threshold=1.0,
    )
    assert flagged.tolist() == [False, True, True, True, True]
    assert reason.tolist() == [
        "",
        "uncertainty",
        "coverage",
        "ring-system",
        "ring-system,uncertainty,coverage",
    ]


def test_uncertainty_test_is_off_without_a_threshold_and_configurable():
    import dask

    key = "amondask.models.flags.uncertainty-threshold-kcal-mol"
    arguments = {
        "ring_system": np.array([False, False]),
        "uncertainty_hartree": np.array([1.0, 0.5]) / KCAL,
        "covered": np.array([True, True]),
    }
    with dask.config.set({key: None}):
        flagged, reason = outlier_flags(**arguments)
    assert not flagged.any() and reason.tolist() == ["", ""]
    with dask.config.set({key: 0.75}):
        flagged, _ = outlier_flags(**arguments)
    assert flagged.tolist() == [True, False]
    flagged, _ = outlier_flags(**arguments, uncertainty_threshold=0.25)  # argument wins
    assert flagged.tolist() == [True, True]


def test_add_outlier_flags_puts_documented_variables_in_the_prediction_dataset():
    smiles = ["CC12C3COC1C=CC23", "CCCCCCCCO"]
    dataset = prediction_dataset(
        query_ids=["a", "b"],
        energy_hartree=np.array([-1.0, -2.0]),
        uncertainty_hartree=np.array([0.5, 2.0]) / KCAL,
        covered=np.array([True, True]),
        n_train=np.array([10, 10]),
        protocol="per-query",
    )
    out = add_outlier_flags(dataset, [_mol(s) for s in smiles], 7, uncertainty_threshold=1.0)
    assert out["flagged"].values.tolist() == [True, True]
    assert out["flag_reason"].values.tolist() == ["ring-system", "uncertainty"]
    assert "ring system" in out["flagged"].attrs["description"]
    assert out.attrs["flag_uncertainty_threshold_kcal_mol"] == 1.0
    assert out.attrs["flag_max_heavy_atoms"] == 7
