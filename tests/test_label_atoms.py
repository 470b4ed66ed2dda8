"""Free-atom reference energies: spin states, xTB and PySCF atoms, tables, the stored attrs."""

from __future__ import annotations

import logging
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from amondask.chem import Molecule
from amondask.errors import LabelError, LabelerSetupError
from amondask.label import get_labeler
from amondask.label.atoms import multiplicity, unpaired_electrons
from amondask.pipeline import SERIAL
from amondask.pipeline.extract import extract
from amondask.pipeline.label import label_workspace
from amondask.store import Workspace
from amondask.store.labels import (
    ATOM_ENERGIES_ATTR,
    KCAL_MOL_PER_HARTREE,
    atom_energies,
    atomization_energies,
    atomization_energy,
    store_atom_energies,
)

BOLTZMANN_HARTREE_PER_KELVIN = 3.166811563e-6
QM9_ATOMS = {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730}


# ---- ground-state spin ---------------------------------------------------------------------
def hund_unpaired_main_group(z: int) -> int:
    """Unpaired electrons of a main-group atom from its outer-shell electron count (Hund)."""
    outer = Chem.GetPeriodicTable().GetNOuterElecs(z)
    if outer <= 2:  # s block (and He)
        return outer % 2
    p_electrons = outer - 2
    return min(p_electrons, 6 - p_electrons)


MAIN_GROUP = [*range(1, 21), *range(31, 39), *range(49, 57), *range(81, 87)]


def test_ground_state_spins_follow_hund_in_the_main_group():
    for z in MAIN_GROUP:
        assert unpaired_electrons(z) == hund_unpaired_main_group(z), z
    assert [multiplicity(z) for z in (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)] == [
        2, 2, 3, 4, 3, 2, 3, 4, 3, 2, 2, 2,
    ]  # fmt: skip
    # transition metals by their measured ground terms, not by simple filling
    assert [multiplicity(z) for z in (24, 26, 29, 41, 46, 78)] == [7, 5, 2, 6, 1, 3]
    for z in (0, 60, 87):
        with pytest.raises((LabelError, KeyError)):
            unpaired_electrons(z)


# ---- xTB -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xtb():
    return get_labeler("xtb")


def tblite_atom(z: int, uhf: int, temperature_kelvin: float = 300.0) -> float:
    """GFN2-xTB energy (hartree) of a free atom, from tblite directly."""
    from tblite.interface import Calculator

    calculator = Calculator("GFN2-xTB", np.array([z]), np.zeros((1, 3)), charge=0.0, uhf=uhf)
    calculator.set("verbosity", 0)
    calculator.set("temperature", temperature_kelvin * BOLTZMANN_HARTREE_PER_KELVIN)
    return float(calculator.singlepoint().get("energy"))


def test_xtb_atom_energies_are_finite_deterministic_and_cached(xtb, monkeypatch):
    energies = xtb.atom_energies([8, 1, 6, 7, 9, 6])
    assert sorted(energies) == [1, 6, 7, 8, 9]
    assert all(math.isfinite(e) for e in energies.values())
    # GFN2-xTB atoms (hartree): its valence-only energies, not all-electron ones
    expected = {1: -0.393483, 6: -1.793296, 7: -2.605824, 8: -3.767607, 9: -4.619340}
    for z, value in expected.items():
        assert energies[z] == pytest.approx(value, abs=1e-5)
    fresh = get_labeler("xtb").atom_energies([1, 6, 7, 8, 9])
    assert fresh == energies  # bit for bit: a fresh SCF from the same guess
    calls = []
    monkeypatch.setattr(type(xtb), "single_point", lambda *a, **k: calls.append(a) or (0.0, None))
    assert xtb.atom_energies([6, 1]) == {1: energies[1], 6: energies[6]}
    assert calls == []  # cached per instance
    assert pickle.loads(pickle.dumps(xtb)).atom_energies([8]) == {8: energies[8]}


def fermi_entropy(occupation: float) -> float:
    """Entropy (units of k_B) of one spin orbital with a fractional occupation."""
    f = occupation
    return -(f * math.log(f) + (1 - f) * math.log(1 - f))


@pytest.mark.parametrize("temperature_kelvin", [300.0, 1000.0])
def test_xtb_spin_state_enters_through_the_fermi_occupations(temperature_kelvin):
    """GFN2-xTB has no spin-dependent energy term, so C's triplet (uhf=2) is *not* below the
    uhf=0 state: the two have the same total density, and the free energy differs only by the
    electronic entropy of the smeared, degenerate 2p occupations (k_B T * 3 s(1/3) for C,
    k_B T * 6 s(1/3) for N quartet vs doublet). The labeler uses the Hund state."""
    labeler = get_labeler("xtb", electronic_temperature_kelvin=temperature_kelvin)
    # the atoms depend on the temperature, so a non-default one is part of the level
    assert ("electronic temperature" in labeler.level_of_theory) == (temperature_kelvin != 300)
    kt = BOLTZMANN_HARTREE_PER_KELVIN * temperature_kelvin
    energies = labeler.atom_energies([6, 7])
    assert energies[6] == pytest.approx(tblite_atom(6, 2, temperature_kelvin), abs=1e-9)
    assert energies[7] == pytest.approx(tblite_atom(7, 3, temperature_kelvin), abs=1e-9)
    carbon_gap = energies[6] - tblite_atom(6, 0, temperature_kelvin)
    nitrogen_gap = energies[7] - tblite_atom(7, 1, temperature_kelvin)
    assert carbon_gap > 0 and nitrogen_gap > 0  # the state matters
    assert carbon_gap == pytest.approx(kt * 3 * fermi_entropy(1 / 3), rel=1e-3)
    assert nitrogen_gap == pytest.approx(kt * 6 * fermi_entropy(1 / 3), rel=1e-3)


@pytest.mark.parametrize(
    ("smiles", "experimental_de_kcal_mol"),
    [("[H][H]", 109.5), ("C", 420.0)],  # De (no zero-point energy) of H2 and CH4
)
def test_xtb_atomization_energies_are_sane(xtb, smiles, experimental_de_kcal_mol):
    """GFN2-xTB overbinds (123 and 507 kcal/mol at its own geometries): its atoms are not
    part of its fit. A unit slip, a wrong spin state or valence/all-electron mix-up would be
    far outside the loose 25% bound."""
    from amondask.chem.geometry import embed_molecule

    molecule = embed_molecule(Molecule.from_smiles(smiles, smiles), seed=3)
    # relaxed at GFN2-xTB, with the topology check (H2 keeps its bond: see label.topology)
    label = get_labeler("xtb").label(molecule)
    assert label.status == "ok"
    assert label.ok and label.converged, label.message
    atoms = xtb.atom_energies(molecule.numbers)
    binding = atomization_energy(molecule.numbers, label.energy_hartree, atoms)
    assert binding < 0  # bound: below its free atoms
    de_kcal_mol = -binding * KCAL_MOL_PER_HARTREE
    assert abs(de_kcal_mol - experimental_de_kcal_mol) < 0.25 * experimental_de_kcal_mol


# ---- PySCF ---------------------------------------------------------------------------------
def pyscf_atom(z: int, spin: int, basis: str, xc: str | None, density_fit: bool = False):
    from pyscf import dft, gto, scf

    mol = gto.M(atom=[(z, (0.0, 0.0, 0.0))], basis=basis, spin=spin, verbose=0)
    if xc is None:
        mean_field = scf.UHF(mol)
    else:
        mean_field = dft.UKS(mol, xc=xc)
        mean_field.grids.level = 3
    mean_field.conv_tol = 1e-9
    if density_fit:
        mean_field = mean_field.density_fit()
    return float(mean_field.kernel())


def test_pyscf_atoms_are_unrestricted_in_the_hund_state():
    labeler = get_labeler("pyscf", method="B3LYP", basis="6-31G")
    energies = labeler.atom_energies([1, 6])
    assert energies[1] == pytest.approx(pyscf_atom(1, 1, "6-31G", "B3LYP"), abs=1e-7)
    assert energies[6] == pytest.approx(pyscf_atom(6, 2, "6-31G", "B3LYP"), abs=1e-7)
    # physically true in DFT: triplet carbon lies well below the closed-shell singlet
    assert pyscf_atom(6, 0, "6-31G", "B3LYP") - energies[6] > 0.01
    hf = get_labeler("pyscf", method="HF", basis="sto-3g").atom_energies([8])
    assert hf[8] == pytest.approx(pyscf_atom(8, 2, "sto-3g", None), abs=1e-7)
    fitted = get_labeler("pyscf", method="B3LYP", basis="sto-3g", density_fitting=True)
    assert fitted.atom_energies([6])[6] == pytest.approx(
        pyscf_atom(6, 2, "sto-3g", "B3LYP", density_fit=True), abs=1e-7
    )


def test_pyscf_hydrogen_at_the_qm9_level_equals_qm9():
    """H has no d shell, so PySCF and Gaussian agree on it exactly (same B3LYP flavour)."""
    labeler = get_labeler("pyscf")  # default: B3LYP/6-31G(2df,p), QM9's level
    assert labeler.atom_energies([1])[1] == pytest.approx(QM9_ATOMS[1], abs=1e-5)


@pytest.mark.slow
def test_pyscf_atoms_at_the_qm9_level_are_near_qm9():
    """C, N, O, F lie 1.0-4.0e-3 hartree above QM9's: PySCF's 5D against Gaussian's 6D d shells
    (see amondask.label.pyscf). A wrong spin state would be 0.02-0.1 hartree off."""
    energies = get_labeler("pyscf").atom_energies(QM9_ATOMS)
    assert energies[1] == pytest.approx(QM9_ATOMS[1], abs=1e-5)
    for z in (6, 7, 8, 9):
        assert 0 < energies[z] - QM9_ATOMS[z] < 5e-3, (z, energies[z] - QM9_ATOMS[z])


# ---- tables --------------------------------------------------------------------------------
TABLE = pd.DataFrame({"smiles": ["C", "O"], "energy": [-40.5, -76.4]})


def test_table_without_atom_energies_says_how_to_give_them():
    table = get_labeler("table", table=TABLE, level_of_theory="made-up/level")
    with pytest.raises(LabelError, match=r"atom_energies=\{Z: hartree"):
        table.atom_energies([1, 6])


def test_table_with_atom_energies():
    table = get_labeler(
        "table",
        table=TABLE,
        level_of_theory="made-up/level",
        atom_energies={1: -0.5, "C": -37.8, "8": -75.0},
    )
    assert table.atom_energies([6, 1, 6]) == {1: -0.5, 6: -37.8}
    with pytest.raises(LabelError, match="F"):
        table.atom_energies([1, 9])
    for bad in ({"Xx": -1.0}, {6: float("nan")}):
        with pytest.raises(LabelerSetupError):
            get_labeler("table", table=TABLE, level_of_theory="x", atom_energies=bad)


def test_qm9_labeler_has_qm9s_atomic_references(monkeypatch):
    from amondask.label import table as table_module

    small = table_module.TableLabeler(TABLE, level_of_theory="QM9 stand-in")
    small.qm9 = None
    monkeypatch.setattr(table_module, "_qm9_table", lambda *args: small)  # skip reading QM9
    qm9 = table_module.QM9Labeler()
    assert qm9.atom_energies([1, 6, 7, 8, 9]) == QM9_ATOMS
    assert pickle.loads(pickle.dumps(qm9)).atom_energies([8]) == {8: QM9_ATOMS[8]}
    with pytest.raises(LabelError):
        qm9.atom_energies([16])


# ---- the stored attrs and the atomization helpers -------------------------------------------
def test_atomization_helpers():
    atoms = {1: -0.5, 6: -37.8}
    assert atomization_energy([6, 1, 1, 1, 1], -40.5, atoms) == pytest.approx(-0.7)
    assert math.isnan(atomization_energy([8, 1, 1], -76.4, atoms))
    numbers = np.array([6, 1, 1, 1, 1, 1, 1, 8, 1, 1])
    offsets = np.array([0, 5, 7, 7, 10])  # CH4, H2, an empty row, H2O
    energies = np.array([-40.5, -1.17, 0.0, -76.4])
    result = atomization_energies(numbers, offsets, energies, atoms)
    assert result[:3] == pytest.approx([-0.7, -0.17, 0.0])
    assert math.isnan(result[3])
    with pytest.raises(ValueError):
        atomization_energies(numbers, offsets[:-1], energies, atoms)


QUERIES = [("CCO", "ethanol"), ("CC=O", "acetaldehyde")]


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws.zarr")
    extract(QUERIES, ws, max_heavy_atoms=2, client=SERIAL, progress=False)
    return ws


def test_label_stage_stores_the_atoms_of_the_workspace(workspace, xtb):
    assert atom_energies(workspace, xtb.level_of_theory) == {}
    report = label_workspace(workspace, xtb, client=SERIAL, progress=False)
    stored = atom_energies(workspace, xtb.level_of_theory)
    assert stored == xtb.atom_energies([1, 6, 8])
    assert report.atom_energies_computed == [1, 6, 8] and "H, C, O stored" in report.format()
    from amondask.label import level_slug

    attrs = workspace.root[f"labels/{level_slug(xtb.level_of_theory)}"].attrs
    assert sorted(attrs[ATOM_ENERGIES_ATTR]) == ["1", "6", "8"]
    # a re-opened workspace reads the same numbers
    assert atom_energies(Workspace(workspace.spec), xtb.level_of_theory) == stored


class AtomCountingLabeler:
    """A table labeler that records which elements it is asked for."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.level_of_theory = inner.level_of_theory
        self.implemented_properties = inner.implemented_properties
        self.asked: list[int] = []

    def label(self, molecule):
        return self.inner.label(molecule)

    def atom_energies(self, elements):
        elements = list(elements)
        self.asked.extend(elements)
        return self.inner.atom_energies(elements)


def test_rerun_computes_only_missing_elements(workspace):
    references = {1: -0.5, 6: -37.8, 7: -54.5, 8: -75.0, 9: -99.7}
    table = get_labeler("table", table=TABLE, level_of_theory="lvl", atom_energies=references)
    first = AtomCountingLabeler(table)
    label_workspace(workspace, first, client=SERIAL, progress=False)
    assert sorted(first.asked) == [1, 6, 8]
    again = AtomCountingLabeler(table)
    report = label_workspace(workspace, again, client=SERIAL, progress=False)
    assert again.asked == [] and report.atom_energies_computed == []
    extract([("CN", "methylamine"), ("CF", "fluoromethane")], workspace, client=SERIAL,
            progress=False)  # fmt: skip
    more = AtomCountingLabeler(table)
    label_workspace(workspace, more, client=SERIAL, progress=False)
    assert sorted(more.asked) == [7, 9]
    assert atom_energies(workspace, "lvl") == references
    # the queries' stage of the same level finds them all stored
    queries = AtomCountingLabeler(table)
    label_workspace(workspace, queries, target="queries", client=SERIAL, progress=False)
    assert queries.asked == []


def test_stage_succeeds_without_atom_energies(workspace, caplog):
    table = get_labeler("table", table=TABLE, level_of_theory="no-atoms")
    with caplog.at_level(logging.WARNING, logger="amondask.pipeline.label"):
        report = label_workspace(workspace, table, client=SERIAL, progress=False)
    assert report.statuses["ok"] == 2
    assert atom_energies(workspace, "no-atoms") == {}
    assert report.atom_energies_unavailable == [1, 6, 8]
    assert "no free-atom energies for H, C, O" in caplog.text
    # partial: what the labeler has is stored, the rest stays missing
    partial = get_labeler(
        "table", table=TABLE, level_of_theory="some-atoms", atom_energies={1: -0.5, 6: -37.8}
    )
    report = label_workspace(workspace, partial, client=SERIAL, progress=False)
    assert atom_energies(workspace, "some-atoms") == {1: -0.5, 6: -37.8}
    assert report.atom_energies_unavailable == [8]
    # a labeler object without the method (an older third-party plug-in) is fine too
    bare = LabelOnlyLabeler(table, "bare")
    report = label_workspace(workspace, bare, client=SERIAL, progress=False)
    assert report.labeled == workspace.amons.conformers.n_rows
    assert atom_energies(workspace, "bare") == {}


class LabelOnlyLabeler:
    """A labeler from before ``atom_energies`` existed."""

    def __init__(self, inner, level_of_theory):
        self.inner = inner
        self.name = "bare"
        self.level_of_theory = level_of_theory
        self.implemented_properties = ("energy",)

    def label(self, molecule):
        from dataclasses import replace

        return replace(self.inner.label(molecule), level_of_theory=self.level_of_theory)


def test_store_atom_energies_merges_and_rejects_nan(workspace):
    store_atom_energies(workspace, "lvl", {1: -0.5})
    assert store_atom_energies(workspace, "lvl", {6: -37.8}) == {1: -0.5, 6: -37.8}
    with pytest.raises(ValueError):
        store_atom_energies(workspace, "lvl", {8: float("nan")})
