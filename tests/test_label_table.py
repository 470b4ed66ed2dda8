"""TableLabeler (CSV/Parquet, SMILES/InChIKey keys) and the QM9 lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule
from amondask.errors import LabelerSetupError, MissingLabelError
from amondask.label import get_labeler, label_many, perceive_bonds
from amondask.label.table import QM9Labeler, TableLabeler, map_positions, qm9_data_directory

LEVEL = "CCSD(T)/cc-pVTZ | made-up 1.0 | geometry: input"


@pytest.fixture
def smiles_table(tmp_path):
    frame = pd.DataFrame(
        {
            # non-canonical SMILES on purpose; one unparsable row
            "smiles": ["OCC", "C", "O", "C(C)(C)C", "C1CC1(", "N"],
            "energy": [-97000.0, -25400.0, -47900.0, -99000.0, -1.0, -35500.0],  # kcal/mol
        }
    )
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    return path


def test_smiles_table_with_missing_and_extra_keys(smiles_table):
    labeler = TableLabeler(smiles_table, level_of_theory=LEVEL, energy_unit="kcal/mol")
    assert labeler.level_of_theory == LEVEL and len(labeler) == 5
    assert labeler.bad_rows == [(4, "RDKit cannot parse SMILES 'C1CC1('")]
    ethanol = Molecule.from_smiles("CCO", "ethanol")
    label = labeler.label(ethanol)
    assert label.energy_hartree == pytest.approx(-97000.0 / 627.5094740631, abs=1e-12)
    assert label.status == "ok" and label.positions is None and label.message == "table row 0"
    molecules = [
        ethanol,
        Molecule.from_smiles("C", "methane"),
        Molecule.from_smiles("CC", "ethane"),  # missing
        Molecule.from_smiles("C=C", "ethene"),  # missing
        Molecule.from_smiles("[CH3][CH3]", "ethane-2"),  # missing, same key as ethane
    ]
    with pytest.raises(MissingLabelError, match="no entry for 'CC'"):
        labeler.label(molecules[2])
    labels, errors = label_many(labeler, molecules)
    assert [label.status for label in labels] == ["ok", "ok", "failed", "failed", "failed"]
    assert [error.record_id for error in errors] == ["ethane", "ethene", "ethane-2"]
    assert {error.error_type for error in errors} == {"MissingLabelError"}
    coverage = labeler.coverage(molecules)
    assert (coverage.n_molecules, coverage.n_found) == (5, 2)
    assert coverage.missing == {"CC": ["ethane", "ethane-2"], "C=C": ["ethene"]}
    assert coverage.unused_keys == ["CC(C)C", "N", "O"]
    assert "2 of 5 molecules found (40.0%)" in coverage.summary()


def test_positions_pass_through():
    labeler = TableLabeler(
        pd.DataFrame({"smiles": ["O"], "energy": [-76.0]}), level_of_theory=LEVEL
    )
    water = embed_molecule(Molecule.from_smiles("O", "water"), seed=1)
    np.testing.assert_array_equal(labeler.label(water).positions, water.positions)


def test_inchikey_parquet_table(tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {
            "InChIKey": ["VNWKTOKETHGBQD-UHFFFAOYSA-N", "XLYOFNOQVPJJNP-UHFFFAOYSA-N"],
            "E_eV": [-1100.0, -2080.0],
        }
    ).to_parquet(path)
    labeler = get_labeler(
        "table",
        table=path,
        level_of_theory=LEVEL,
        key_type="inchikey",
        key_column="InChIKey",
        energy_column="E_eV",
        energy_unit="eV",
    )
    assert labeler.label(Molecule.from_smiles("C", "methane")).energy_hartree == pytest.approx(
        -1100.0 / 27.211386245988
    )
    assert labeler.label(Molecule.from_smiles("O", "water")).energy_hartree == pytest.approx(
        -2080.0 / 27.211386245988
    )
    with pytest.raises(MissingLabelError):
        labeler.label(Molecule.from_smiles("N", "ammonia"))


def test_table_setup_errors(tmp_path):
    frame = pd.DataFrame({"smiles": ["C", "C"], "energy": [-40.0, -41.0]})
    with pytest.raises(LabelerSetupError, match="level_of_theory"):
        TableLabeler(frame, level_of_theory="")
    with pytest.raises(LabelerSetupError, match="different energies"):
        TableLabeler(frame, level_of_theory=LEVEL)
    lowest = TableLabeler(frame, level_of_theory=LEVEL, duplicates="lowest")
    assert lowest.label(Molecule.from_smiles("C", "m")).energy_hartree == -41.0
    with pytest.raises(LabelerSetupError, match="no column 'E'"):
        TableLabeler(frame, level_of_theory=LEVEL, energy_column="E")
    with pytest.raises(LabelerSetupError, match="does not exist"):
        TableLabeler(tmp_path / "nope.csv", level_of_theory=LEVEL)
    with pytest.raises(LabelerSetupError, match="energy unit"):
        TableLabeler(frame, level_of_theory=LEVEL, energy_unit="rydberg")


def test_map_positions_recovers_a_permuted_geometry():
    molecule = embed_molecule(Molecule.from_smiles("OCC(=O)N", "m"), seed=5)
    order = np.random.default_rng(0).permutation(molecule.n_atoms)
    mapped = map_positions(molecule, molecule.numbers[order], molecule.positions[order])
    assert mapped is not None
    np.testing.assert_array_equal(
        perceive_bonds(molecule.numbers, mapped),
        perceive_bonds(molecule.numbers, molecule.positions),
    )
    # the heavy atoms have no symmetry-equivalent partner here: they map exactly
    heavy = molecule.numbers > 1
    np.testing.assert_allclose(mapped[heavy], molecule.positions[heavy])
    wrong = molecule.positions.copy()
    wrong[0] += 3.0  # tear the O off: no match
    assert map_positions(molecule, molecule.numbers, wrong) is None


@pytest.fixture(scope="module")
def qm9() -> QM9Labeler:
    return QM9Labeler(max_heavy_atoms=8)


def qm9_csv_row(index: int) -> pd.Series:
    """One row of qm9pack's first CSV, read here independently of amondask."""
    frame = pd.read_csv(qm9_data_directory() / "qm9_part1.csv", nrows=2000)
    return frame[frame["Index"] == index].iloc[0]


def test_qm9_values_are_u0_minus_zpve(qm9):
    methane = qm9.label(Molecule.from_smiles("C", "methane"))
    assert methane.energy_hartree == pytest.approx(-40.47893 - 0.044749, abs=1e-9)
    ammonia = qm9.label(Molecule.from_smiles("N", "ammonia"))
    assert ammonia.energy_hartree == pytest.approx(-56.525887 - 0.034358, abs=1e-9)
    benzene = Molecule.from_smiles("C1=CC=CC=C1", "benzene")
    index = qm9.qm9_index(benzene)
    row = qm9_csv_row(index)
    assert Molecule.from_smiles(row["SMILES"]).key == "c1ccccc1"
    label = qm9.label(benzene)
    assert label.energy_hartree == pytest.approx(
        row["InternalEnergy_0K_au"] - row["ZPVE_au"], abs=1e-9
    )
    assert label.status == "ok" and label.message == f"QM9 index {index}"


def test_qm9_geometry_is_in_the_molecules_atom_order(qm9):
    acetamide = Molecule.from_smiles("CC(N)=O", "acetamide")
    label = qm9.label(acetamide)
    assert label.positions.shape == (acetamide.n_atoms, 3)
    pairs = perceive_bonds(acetamide.numbers, label.positions)
    assert {tuple(p) for p in pairs.tolist()} == {(i, j) for i, j, _ in acetamide.bonds.tolist()}
    # the C=O bond of QM9's B3LYP geometry is about 1.21 angstrom
    carbonyl = [(i, j) for i, j, order in acetamide.bonds.tolist() if order == 2][0]
    assert 1.19 < np.linalg.norm(label.positions[carbonyl[0]] - label.positions[carbonyl[1]]) < 1.23


def test_qm9_ring_opened_geometry_is_topology_changed(qm9):
    """QM9's B3LYP geometry of this 1,2,3-oxadiazole has its ring O-N bond at 1.62 angstrom."""
    label = qm9.label(Molecule.from_smiles("CNC1=C(N)N=NO1", "oxadiazole"))
    assert label.status == "topology-changed" and label.positions is None
    assert np.isfinite(label.energy_hartree)


def test_qm9_coverage_and_level(qm9):
    molecules = [Molecule.from_smiles(s, s) for s in ("C", "CC", "CCCCCCCCCC", "CC(C)(C)CC(C)(C)C")]
    coverage = qm9.coverage(molecules)
    assert coverage.n_found == 2 and set(coverage.missing) == {"CCCCCCCCCC", "CC(C)(C)CC(C)(C)C"}
    assert qm9.level_of_theory.startswith("B3LYP/6-31G(2df,p) | QM9 qm9pack-")
    assert "U0 - ZPVE" in qm9.level_of_theory
    from amondask.label.pyscf import PySCFLabeler

    assert qm9.level_of_theory != PySCFLabeler().level_of_theory
    with pytest.raises(LabelerSetupError, match="positions"):
        QM9Labeler(positions="guess")


def test_qm9_labeler_pickles_small_and_shares_its_table(qm9):
    import pickle

    payload = pickle.dumps(qm9)
    assert len(payload) < 2000
    clone = pickle.loads(payload)
    assert clone.level_of_theory == qm9.level_of_theory and len(clone) == len(qm9)
    assert clone._rows is qm9._rows  # same process: the table is built once
    methane = Molecule.from_smiles("C", "methane")
    assert clone.label(methane).energy_hartree == qm9.label(methane).energy_hartree
