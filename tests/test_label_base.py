"""Label, level-of-theory strings, the registry and bond perception (no quantum chemistry)."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds

from amondask import config
from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule
from amondask.errors import LabelerSetupError, MixedLevelsError
from amondask.label import (
    Label,
    Labeler,
    LevelOfTheory,
    available_labelers,
    compare_topology,
    get_labeler,
    level_slug,
    perceive_bonds,
    require_single_level,
    topology_changed,
)


def test_label_validates_and_freezes():
    positions = np.zeros((3, 3))
    label = Label(-1.0, positions, True, 2, 0.1, "ok", "", "x | y 1 | geometry: input", "m")
    assert label.ok and label.positions.flags.writeable is False
    positions[0, 0] = 5.0
    assert label.positions[0, 0] == 0.0  # a copy, not a view
    with pytest.raises(ValueError, match="status"):
        Label(-1.0, None, True, 0, 0.0, "fine", "", "x")
    with pytest.raises(ValueError, match="shape"):
        Label(-1.0, np.zeros(3), True, 0, 0.0, "ok", "", "x")
    failed = Label.failed("SCF", level_of_theory="x", molecule_id="m")
    assert failed.status == "failed" and np.isnan(failed.energy_hartree) and not failed.ok
    assert failed.to_dict()["positions"] is None and failed.to_dict()["molecule_id"] == "m"


def test_level_of_theory_string_and_slug():
    level = LevelOfTheory("B3LYP", "6-31G(2df,p)", "pyscf", "2.14.0", "input")
    assert str(level) == "B3LYP/6-31G(2df,p) | pyscf 2.14.0 | geometry: input"
    assert level_slug(str(level)) == "b3lyp_6-31g_2df_p_pyscf_2.14.0_geometry_input"
    xtb = LevelOfTheory("GFN2-xTB", "", "tblite", "0.8.0", "input")
    assert str(xtb) == "GFN2-xTB | tblite 0.8.0 | geometry: input"
    assert "/" not in level_slug(str(level))


def test_registry():
    assert {"xtb", "pyscf", "table", "qm9"} <= set(available_labelers())
    labeler = get_labeler()  # the configured default, xtb
    assert labeler.name == "xtb" and isinstance(labeler, Labeler)
    with pytest.raises(LabelerSetupError, match="unknown labeler 'gaussian'"):
        get_labeler("gaussian")


SMILES_FOR_BONDS = ["CCO", "c1ccccc1O", "C1CC1C#N", "FC(F)(F)C(=O)N", "CS(=O)C", "ClCC=C"]


@pytest.mark.parametrize("smiles", SMILES_FOR_BONDS)
def test_perceived_bonds_match_graph_and_rdkit(smiles):
    molecule = embed_molecule(Molecule.from_smiles(smiles, smiles), seed=3)
    perceived = perceive_bonds(molecule.numbers, molecule.positions)
    np.testing.assert_array_equal(
        perceived, molecule.bonds[np.lexsort(molecule.bonds.T[::-1])][:, :2]
    )
    assert not topology_changed(molecule, molecule.positions)
    # independent reference: RDKit's perception with the same factor on the same coordinates
    mol = Chem.Mol(molecule.rdkit_mol)
    factor = config.get("label.topology.covalent-radius-factor")
    rdDetermineBonds.DetermineConnectivity(mol, covFactor=factor)
    rdkit_pairs = sorted(
        tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()
    )
    assert [tuple(pair) for pair in perceived.tolist()] == rdkit_pairs


def test_stretched_bond_is_broken():
    ethane = embed_molecule(Molecule.from_smiles("CC", "ethane"), seed=2)
    positions = ethane.positions.copy()
    shift = positions[1] - positions[0]
    shift *= 2.6 / np.linalg.norm(shift) - 1.0  # C-C to 2.6 angstrom, methyl moved rigidly
    second_methyl = [1] + [j for i, j, _ in ethane.bonds.tolist() if i == 1 and j > 1]
    positions[second_methyl] += shift
    comparison = compare_topology(ethane, positions)
    assert comparison.broken == ((0, 1),) and comparison.formed == ()
    assert comparison.describe(ethane.symbols) == "broken C0-C1"
    assert not compare_topology(ethane, ethane.positions).changed


def test_mixed_levels_are_refused_with_the_levels_named():
    xtb = "GFN2-xTB | tblite 0.8.0 | geometry: input"
    dft = "B3LYP/6-31G(2df,p) | pyscf 2.14.0 | geometry: input | grid level 3"
    assert require_single_level([xtb, xtb]) == xtb
    with pytest.raises(MixedLevelsError) as info:
        require_single_level([xtb, dft, xtb])
    assert "2 levels of theory" in str(info.value)
    assert repr(xtb) in str(info.value) and repr(dft) in str(info.value)
    with pytest.raises(MixedLevelsError, match="no labels"):
        require_single_level([])


def test_hydrogen_molecule_keeps_its_bond():
    """RDKit's radius of H would put the H-H threshold (0.71 A) below the H2 bond (0.74 A)."""
    numbers = np.array([1, 1])
    for distance, bonded in ((0.74, True), (0.78, True), (1.6, False)):
        positions = np.array([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]])
        assert (len(perceive_bonds(numbers, positions)) == 1) == bonded
    # geminal H...H of methane (1.78 A) stays non-bonded
    methane = embed_molecule(Molecule.from_smiles("C", "methane"), seed=1)
    assert len(perceive_bonds(methane.numbers, methane.positions)) == 4
