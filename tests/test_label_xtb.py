"""XTBLabeler against tblite called directly; relaxation quality; per-molecule failures."""

from __future__ import annotations

import numpy as np
import pytest
from ase.units import Bohr, Hartree
from tblite.interface import Calculator

from amondask.chem import Molecule
from amondask.errors import LabelError, LabelerSetupError, SCFConvergenceError
from amondask.label import Label, get_labeler, label_many
from amondask.label.xtb import XTBLabeler

WATER_POSITIONS = np.array(
    [[0.0000, 0.0000, 0.1173], [0.0000, 0.7572, -0.4692], [0.0000, -0.7572, -0.4692]]
)
WATER = Molecule(
    id="water", numbers=[8, 1, 1], bonds=[[0, 1, 1], [0, 2, 1]], positions=WATER_POSITIONS
)


def tblite_reference(numbers, positions_angstrom):
    """GFN2-xTB energy (hartree) and gradient (hartree/bohr) from tblite with its defaults."""
    calculator = Calculator("GFN2-xTB", np.asarray(numbers), positions_angstrom / Bohr)
    calculator.set("verbosity", 0)
    result = calculator.singlepoint()
    return result.get("energy"), result.get("gradient")


@pytest.fixture(scope="module")
def methane() -> Molecule:
    from amondask.chem.geometry import embed_molecule

    return embed_molecule(Molecule.from_smiles("C", "methane"), seed=7)


def test_single_point_equals_tblite_directly(methane):
    labeler = XTBLabeler(relax=False, cache_size=0)
    for molecule in (WATER, methane):
        label = labeler.label(molecule)
        expected, _ = tblite_reference(molecule.numbers, molecule.positions)
        assert label.status == "ok" and label.converged and label.n_steps == 0
        assert abs(label.energy_hartree - expected) < 1e-8
        np.testing.assert_array_equal(label.positions, molecule.positions)
    # the water value itself is GFN2-xTB's (about -5.07 hartree), not a unit slip
    assert -5.08 < labeler.label(WATER).energy_hartree < -5.06


@pytest.mark.parametrize("optimizer", ["BFGS", "LBFGS"])
def test_relaxed_energy_and_residual_force(methane, optimizer):
    fmax = 0.01
    labeler = XTBLabeler(fmax_ev_per_angstrom=fmax, optimizer=optimizer, cache_size=0)
    for molecule in (WATER, methane):
        label = labeler.label(molecule)
        assert label.status == "ok", label.message
        assert label.converged and label.n_steps >= 1
        energy, gradient = tblite_reference(molecule.numbers, label.positions)
        assert abs(label.energy_hartree - energy) < 1e-8
        forces_ev_per_angstrom = -np.asarray(gradient) * Hartree / Bohr
        assert np.linalg.norm(forces_ev_per_angstrom, axis=1).max() < fmax
        # relaxing lowers the energy
        start_energy, _ = tblite_reference(molecule.numbers, molecule.positions)
        assert label.energy_hartree <= start_energy + 1e-10
        assert label.positions.shape == (molecule.n_atoms, 3)


def test_graph_only_molecule_is_embedded_and_relaxed():
    labeler = XTBLabeler()
    label = labeler.label(Molecule.from_smiles("CCO", "ethanol"))
    assert label.status == "ok" and label.molecule_id == "ethanol"
    energy, gradient = tblite_reference([6, 6, 8] + [1] * 6, label.positions)
    assert abs(label.energy_hartree - energy) < 1e-8
    assert label.wall_time_s > 0


def test_hydrogen_on_wrong_atom_is_topology_changed():
    """Vinyl alcohol's graph on acetaldehyde's geometry: the O-H hydrogen sits on carbon."""
    acetaldehyde = Molecule.from_smiles("CC=O", "acetaldehyde")
    from amondask.chem.geometry import embed_molecule

    acetaldehyde = embed_molecule(acetaldehyde, seed=1)
    numbers = acetaldehyde.numbers.tolist()
    assert numbers[:3] == [6, 6, 8]
    methyl_hydrogens = [j for i, j, _ in acetaldehyde.bonds.tolist() if i == 0 and j > 2]
    migrating_h = methyl_hydrogens[0]
    vinyl_alcohol_bonds = [
        [0, 1, 2],
        [1, 2, 1],
        [2, migrating_h, 1],
        *[[0, h, 1] for h in methyl_hydrogens[1:]],
        *[[1, j, 1] for i, j, _ in acetaldehyde.bonds.tolist() if i == 1 and j > 2],
    ]
    vinyl_alcohol = Molecule(
        id="vinyl-alcohol",
        numbers=numbers,
        bonds=vinyl_alcohol_bonds,
        positions=acetaldehyde.positions,
    )
    assert vinyl_alcohol.key == "C=CO"
    label = XTBLabeler().label(vinyl_alcohol)
    assert label.status == "topology-changed"
    assert f"broken O2-H{migrating_h}" in label.message
    assert f"formed C0-H{migrating_h}" in label.message
    assert label.converged and np.isfinite(label.energy_hartree)
    assert not label.ok


def test_step_limit_gives_not_converged(methane):
    distorted = methane.with_positions(methane.positions * 1.15)
    label = XTBLabeler(max_steps=1, max_steps_per_atom=0, cache_size=0).label(distorted)
    assert label.status == "not-converged" and not label.converged
    assert label.n_steps == 1 and np.isfinite(label.energy_hartree)
    assert "not converged in 1 steps" in label.message


def test_step_limit_grows_with_the_atom_count(methane):
    """max(max_steps, max_steps_per_atom * n_atoms): 2 steps per atom give methane (5 atoms)
    10 steps where max_steps alone gives 1, and a floor of 500 stays for small molecules."""
    assert XTBLabeler(max_steps=500, max_steps_per_atom=5).step_limit(5) == 500
    assert XTBLabeler(max_steps=500, max_steps_per_atom=5).step_limit(177) == 885
    assert XTBLabeler(max_steps=500, max_steps_per_atom=0).step_limit(177) == 500
    distorted = methane.with_positions(methane.positions * 1.15)
    labeler = XTBLabeler(max_steps=1, max_steps_per_atom=2, fmax_ev_per_angstrom=1e-6)
    label = labeler.label(distorted)
    assert label.n_steps == 10 and not label.converged
    assert "not converged in 10 steps" in label.message


def test_scf_failure_raises_label_error_and_batch_goes_on():
    labeler = XTBLabeler(scf_max_iterations=1, relax=False, cache_size=0)
    with pytest.raises(SCFConvergenceError) as info:
        labeler.label(WATER)
    assert info.value.record_id == "water" and info.value.stage == "label"
    good = XTBLabeler(relax=False)
    radical = Molecule(id="methyl", numbers=[6, 1, 1, 1], bonds=[[0, 1, 1], [0, 2, 1], [0, 3, 1]])
    labels, errors = label_many(good, [WATER, radical, WATER.with_id("water-2")])
    assert [label.molecule_id for label in labels] == ["water", "methyl", "water-2"]
    assert [label.status for label in labels] == ["ok", "failed", "ok"]
    assert np.isnan(labels[1].energy_hartree) and "open shell" in labels[1].message
    assert len(errors) == 1 and errors[0].record_id == "methyl"
    assert errors[0].error_type == "LabelError" and errors[0].stage == "label"
    labels, errors = label_many(labeler, [WATER])
    assert labels[0].status == "failed" and errors[0].error_type == "SCFConvergenceError"
    with pytest.raises(LabelError):
        label_many(good, [radical], on_error="raise")


def test_cache_returns_same_label_under_new_id():
    labeler = XTBLabeler(relax=False)
    first = labeler.label(WATER)
    second = labeler.label(WATER.with_id("other"))
    assert second.molecule_id == "other" and second.energy_hartree == first.energy_hartree


def test_setup_errors_fail_at_construction():
    with pytest.raises(LabelerSetupError, match="unknown xTB method"):
        XTBLabeler(method="GFN9-xTB")
    with pytest.raises(LabelerSetupError, match="unknown optimizer"):
        XTBLabeler(optimizer="Newton")
    with pytest.raises(LabelerSetupError, match="fmax"):
        XTBLabeler(fmax_ev_per_angstrom=0)


def test_level_of_theory_pins_program_version_and_protocol():
    import tblite.library

    relaxed = get_labeler("xtb")
    single_point = XTBLabeler(relax=False)
    version = ".".join(map(str, tblite.library.get_version()))
    assert isinstance(relaxed, XTBLabeler)
    assert relaxed.level_of_theory.startswith(f"GFN2-xTB | tblite {version} | geometry: relaxed")
    assert "fmax 0.01 eV/A" in relaxed.level_of_theory
    assert single_point.level_of_theory == f"GFN2-xTB | tblite {version} | geometry: input"
    assert XTBLabeler(method="gfn1-xtb").level_of_theory.startswith("GFN1-xTB")
    assert relaxed.implemented_properties == ("energy", "positions")
    label = single_point.label(WATER)
    assert isinstance(label, Label) and label.level_of_theory == single_point.level_of_theory


def test_labeling_prints_nothing(capfd, methane):
    XTBLabeler(cache_size=0).label(methane)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_thread_pools_are_pinned_while_labeling():
    from threadpoolctl import threadpool_info

    from amondask.label._threads import limited_threads

    XTBLabeler(relax=False, cache_size=0).label(WATER)  # tblite's libgomp is loaded now
    with limited_threads(1):
        pools = threadpool_info()
        assert any(pool["internal_api"] == "openmp" for pool in pools)
        assert all(pool["num_threads"] == 1 for pool in pools)
