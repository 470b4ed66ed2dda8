"""PySCFLabeler against PySCF called directly (tiny basis sets, so it stays fast)."""

from __future__ import annotations

import numpy as np
import pytest
from pyscf import dft, gto, scf

from amondask.chem import Molecule
from amondask.errors import LabelerSetupError, SCFConvergenceError
from amondask.label import get_labeler, label_many
from amondask.label.pyscf import PySCFLabeler, worker_resources

WATER_POSITIONS = np.array(
    [[0.0000, 0.0000, 0.1173], [0.0000, 0.7572, -0.4692], [0.0000, -0.7572, -0.4692]]
)
WATER = Molecule(
    id="water", numbers=[8, 1, 1], bonds=[[0, 1, 1], [0, 2, 1]], positions=WATER_POSITIONS
)


def pyscf_water(positions_angstrom, basis, xc=None):
    atom = [(symbol, tuple(xyz)) for symbol, xyz in zip("OHH", positions_angstrom, strict=True)]
    mol = gto.M(atom=atom, basis=basis, unit="Angstrom", verbose=0)
    mean_field = scf.RHF(mol) if xc is None else dft.RKS(mol, xc=xc)
    mean_field.conv_tol = 1e-10
    return mean_field.kernel(), mean_field


def test_hf_and_b3lyp_sto3g_equal_pyscf_directly():
    hf = PySCFLabeler("HF", "sto-3g").label(WATER)
    expected_hf, _ = pyscf_water(WATER_POSITIONS, "sto-3g")
    assert hf.status == "ok" and hf.n_steps == 0
    assert abs(hf.energy_hartree - expected_hf) < 1e-8
    assert -74.97 < hf.energy_hartree < -74.95  # HF/STO-3G water is about -74.96 hartree
    b3lyp = PySCFLabeler("B3LYP", "sto-3g").label(WATER)
    expected_b3lyp, _ = pyscf_water(WATER_POSITIONS, "sto-3g", xc="B3LYP")
    assert abs(b3lyp.energy_hartree - expected_b3lyp) < 1e-8


def test_relaxed_hf_water_has_small_gradient(capfd):
    import logging

    root_handlers = list(logging.getLogger().handlers)
    label = PySCFLabeler("HF", "sto-3g", relax=True).label(WATER)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # geomeTRIC's banner and steps are silenced
    assert logging.getLogger().handlers == root_handlers  # and the root logger given back
    assert label.status == "ok" and label.converged and label.n_steps >= 2
    energy, mean_field = pyscf_water(label.positions, "sto-3g")
    assert abs(label.energy_hartree - energy) < 1e-8
    gradient = mean_field.nuc_grad_method().kernel()  # hartree/bohr
    assert np.abs(gradient).max() < 4.5e-4  # geomeTRIC's default max-gradient criterion
    assert label.energy_hartree < pyscf_water(WATER_POSITIONS, "sto-3g")[0]


def test_density_fitting_is_close_but_a_different_level():
    exact = PySCFLabeler("HF", "sto-3g")
    fitted = PySCFLabeler("HF", "sto-3g", density_fitting=True, auxbasis="def2-universal-jkfit")
    difference = fitted.label(WATER).energy_hartree - exact.label(WATER).energy_hartree
    assert 0 < abs(difference) < 1e-4
    assert fitted.level_of_theory != exact.level_of_theory
    assert "density fitting (def2-universal-jkfit)" in fitted.level_of_theory


def test_default_level_is_qm9s():
    labeler = get_labeler("pyscf")
    import pyscf

    assert labeler.level_of_theory == (
        f"B3LYP/6-31G(2df,p) | pyscf {pyscf.__version__} | geometry: input | grid level 3"
    )
    assert labeler.implemented_properties == ("energy",)


def test_setup_errors_fail_at_construction():
    with pytest.raises(LabelerSetupError, match="method 'B3LIP'"):
        PySCFLabeler("B3LIP", "sto-3g")
    with pytest.raises(LabelerSetupError, match="basis 'not-a-basis'"):
        PySCFLabeler("HF", "not-a-basis")


def test_scf_failure_is_an_error_row():
    labeler = PySCFLabeler("B3LYP", "sto-3g", scf_max_cycles=1)
    with pytest.raises(SCFConvergenceError):
        labeler.label(WATER)
    labels, errors = label_many(labeler, [WATER])
    assert labels[0].status == "failed" and errors[0].error_type == "SCFConvergenceError"


def test_resources_from_the_dask_worker():
    assert worker_resources() is None
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            memory_limit="2GiB",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        threads, memory_mb = client.submit(worker_resources).result()
    assert threads == 1 and memory_mb == int(2 * 1024 / 2 * 0.8)


def test_dft_on_xtb_geometry():
    from amondask.label.xtb import XTBLabeler

    labeler = PySCFLabeler("HF", "sto-3g", prerelax_xtb=True)
    label = labeler.label(WATER)
    xtb_positions = XTBLabeler(cache_size=0).label(WATER).positions
    np.testing.assert_allclose(label.positions, xtb_positions, atol=1e-10)
    expected, _ = pyscf_water(xtb_positions, "sto-3g")
    assert abs(label.energy_hartree - expected) < 1e-8
    assert label.status == "ok" and label.n_steps >= 1
    assert "geometry: GFN2-xTB (tblite " in labeler.level_of_theory
    assert labeler.level_of_theory != PySCFLabeler("HF", "sto-3g").level_of_theory
    assert labeler.implemented_properties == ("energy", "positions")
    both = PySCFLabeler("HF", "sto-3g", prerelax_xtb=True, relax=True)
    assert ", then relaxed (geomeTRIC" in both.level_of_theory
    relaxed = both.label(WATER)
    assert relaxed.status == "ok" and relaxed.energy_hartree < label.energy_hartree
