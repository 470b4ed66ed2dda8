"""PySCFLabeler on periodic cells (PySCF PBC) and with GTH pseudopotentials (issue 13, item 3).

References: a k-point mesh samples the same Bloch states as the supercell it folds, so the
energy per atom of a cell on an (n, 1, 1) mesh equals that of the n-fold supercell at the Gamma
point; a cell's energy does not depend on where its atoms sit in it or on their order; the
pseudopotential molecules and atoms equal PySCF called directly. Diamond Si2 with the minimal
GTH basis keeps each SCF to seconds."""

from __future__ import annotations

import warnings

import dask.config
import numpy as np
import pytest
from ase.build import bulk
from pyscf import dft, gto

from amondask.chem.molecule import Molecule
from amondask.chem.periodic import cell_metadata
from amondask.errors import LabelerSetupError
from amondask.label import label_many
from amondask.label.pyscf import PySCFLabeler

GTH = {"method": "PBE", "basis": "gth-szv", "pseudo": "gth-pbe", "threads": 1}


def cell_molecule(atoms, pbc=(True, True, True), name: str = "si") -> Molecule:
    return Molecule(
        name,
        atoms.numbers,
        np.zeros((0, 3)),
        positions=atoms.positions,
        metadata=cell_metadata(atoms.cell.array, np.array(pbc, dtype=bool)),
    )


@pytest.fixture(scope="module")
def silicon_gamma():
    """Diamond Si2 (primitive cell) and its Gamma-point PBE/gth-szv energy (hartree)."""
    crystal = bulk("Si", "diamond", a=5.431)
    label = PySCFLabeler(**GTH).label(cell_molecule(crystal))
    assert label.status == "ok" and label.converged
    return crystal, label.energy_hartree


def test_a_kpoint_mesh_equals_the_supercell_at_gamma(silicon_gamma):
    crystal, gamma = silicon_gamma
    folded = PySCFLabeler(**GTH, kpoint_mesh=(2, 1, 1))
    assert "cells: k-point mesh 2x1x1" in folded.level_of_theory
    per_atom_mesh = folded.label(cell_molecule(crystal)).energy_hartree / 2
    supercell = crystal.repeat((2, 1, 1))
    per_atom_supercell = PySCFLabeler(**GTH).label(cell_molecule(supercell)).energy_hartree / 4
    assert per_atom_mesh == pytest.approx(per_atom_supercell, abs=1e-6)
    # and the mesh matters: Gamma alone is 0.16 hartree per atom higher for Si2
    assert gamma / 2 - per_atom_mesh > 0.05


def test_a_cell_energy_ignores_translation_and_atom_order(silicon_gamma):
    crystal, gamma = silicon_gamma
    moved = crystal.copy()
    moved.positions += np.array([0.37, -1.1, 2.3])
    moved = moved[[1, 0]]
    energy = PySCFLabeler(**GTH).label(cell_molecule(moved, name="moved")).energy_hartree
    # up to the FFT grid's egg-box effect: 1.7e-7 hartree (1e-4 kcal/mol) for this shift
    assert energy == pytest.approx(gamma, abs=1e-6)
    assert -7.2 < gamma < -7.0  # Si2, 8 valence electrons: about -3.55 hartree per atom


def test_pseudopotential_molecules_and_atoms_equal_pyscf_directly():
    labeler = PySCFLabeler(**GTH)
    assert "pseudopotential gth-pbe" in labeler.level_of_theory
    silane_positions = np.array(
        [[0, 0, 0], [0.855, 0.855, 0.855], [-0.855, -0.855, 0.855], [-0.855, 0.855, -0.855]]
        + [[0.855, -0.855, -0.855]]
    )
    silane = Molecule(
        "silane", [14, 1, 1, 1, 1], [[0, i, 1] for i in range(1, 5)], positions=silane_positions
    )
    mol = gto.M(
        atom=[(z, tuple(p)) for z, p in zip([14, 1, 1, 1, 1], silane_positions, strict=True)],
        basis="gth-szv",
        pseudo="gth-pbe",
        verbose=0,
    )
    direct = dft.RKS(mol, xc="PBE")
    direct.conv_tol = 1e-10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energy = labeler.label(silane).energy_hartree
    assert not [w for w in caught if "origi" in str(w.message)]  # PySCF's noise is silenced
    assert energy == pytest.approx(direct.kernel(), abs=1e-8)
    atom = gto.M(atom="Si 0 0 0", basis="gth-szv", pseudo="gth-pbe", spin=2, verbose=0)
    free_atom = dft.UKS(atom, xc="PBE")
    free_atom.conv_tol = 1e-10
    assert labeler.atom_energies([14])[14] == pytest.approx(free_atom.kernel(), abs=1e-7)


def test_periodic_setup_and_input_errors():
    with pytest.raises(LabelerSetupError, match="pseudopotential 'gth-nope'"):
        PySCFLabeler("PBE", "gth-szv", pseudo="gth-nope")
    for mesh in ([2, 2], [0, 1, 1], [1.5, 1, 1], "x"):
        with pytest.raises(LabelerSetupError, match="kpoint_mesh"):
            PySCFLabeler("PBE", "gth-szv", kpoint_mesh=mesh)
    assert PySCFLabeler("PBE", "gth-szv", kpoint_mesh=3).kpoint_mesh == (3, 3, 3)
    with dask.config.set({"amondask.label.pyscf.kpoint-mesh": [4, 4, 1]}):
        assert PySCFLabeler("PBE", "gth-szv").kpoint_mesh == (4, 4, 1)
    crystal = bulk("Si", "diamond", a=5.431)
    wrong_axis = cell_molecule(crystal, pbc=(False, True, True), name="slab")
    labels, errors = label_many(PySCFLabeler(**GTH), [wrong_axis])
    assert labels[0].status == "failed" and errors[0].record_id == "slab"
    assert "non-periodic one is the third" in errors[0].message
    labels, errors = label_many(PySCFLabeler(**GTH, relax=True), [cell_molecule(crystal)])
    assert labels[0].status == "failed" and "cell relaxation is not supported" in errors[0].message


def test_the_pbe_example_config_gives_the_pseudopotential_labeler(examples_dir):
    from amondask import config as amondask_config
    from amondask.label import get_labeler

    with amondask_config.load_file(examples_dir / "periodic" / "periodic_pbe.yaml"):
        labeler = get_labeler()
        assert amondask_config.get("amons.periodic.shells") == 2
    assert isinstance(labeler, PySCFLabeler)
    assert (labeler.method, labeler.basis, labeler.pseudo) == ("PBE", "gth-szv", "gth-pbe")
    assert labeler.kpoint_mesh == (3, 3, 3) and not labeler.relax
