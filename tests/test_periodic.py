"""Periodic queries (issue 13, item 3): the extended-XYZ cell, the periodic aSLATM, tblite's
periodic GFN2-xTB, the H-capped cluster amons and a run through the workspace.

References: ASE builds the crystals and its neighbour list counts the bonds; tblite's own ASE
calculator gives the periodic energy independently of amondask's labeler; a supercell is the
same crystal, so it must give the same atomic representation and the same amons."""

from __future__ import annotations

from pathlib import Path

import dask.config
import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from amondask.amons.periodic import PeriodicAmonSettings, periodic_amons
from amondask.chem.molecule import Molecule
from amondask.chem.periodic import (
    cell_metadata,
    cell_of,
    is_periodic,
    periodic_bonds,
    periodic_environment,
)
from amondask.chem.readers import read_molecules
from amondask.label.xtb import XTBLabeler
from amondask.pipeline import SERIAL
from amondask.represent import slatm_mbtypes
from amondask.represent.blocks import element_blocks

KCAL = 627.509474
SINGLE_POINTS = {
    "amondask.amons.relax": False,
    "amondask.label.xtb.relax": False,
    "amondask.amons.periodic.shells": 1,
}


def silicon(repeat: int = 1, a: float = 5.43, rattle: float = 0.0) -> Molecule:
    crystal = bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)
    if rattle:
        crystal.rattle(rattle, seed=3)
    pbc = np.array([True, True, True])
    return Molecule(
        f"si{len(crystal)}",
        crystal.numbers,
        np.zeros((0, 3)),
        positions=crystal.positions,
        metadata=cell_metadata(crystal.cell.array, pbc),
    )


def test_extended_xyz_with_a_lattice_is_a_periodic_query(tmp_path):
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    crystal.info["id"] = "si8"
    sheet = crystal.copy()
    sheet.pbc = [True, True, False]
    sheet.info["id"] = "slab"
    odd = bulk("Si", "diamond", a=5.43, cubic=True)
    odd.symbols[7] = "B"  # 7 Si and a B: 103 electrons
    odd.info["id"] = "odd"
    path = tmp_path / "cells.extxyz"
    write(path, [crystal, sheet, odd], format="extxyz")
    result = read_molecules(path)
    by_id = {m.id: m for m in result.molecules}
    assert set(by_id) == {"si8", "slab"}
    assert [e.record_id for e in result.errors] == ["odd"]
    assert "odd number of electrons" in result.errors[0].message
    lattice, pbc = cell_of(by_id["si8"])
    np.testing.assert_allclose(lattice, crystal.cell.array)
    assert pbc.tolist() == [True, True, True]
    assert cell_of(by_id["slab"])[1].tolist() == [True, True, False]
    assert is_periodic(by_id["si8"]) and len(by_id["si8"].bonds) == 0
    np.testing.assert_allclose(by_id["si8"].positions, crystal.positions)


def test_bonds_across_the_faces_match_ase():
    from ase.neighborlist import neighbor_list

    query = silicon(1, rattle=0.05)
    lattice, pbc = cell_of(query)
    bonds = periodic_bonds(query.numbers, query.positions, lattice, pbc)
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    crystal.positions = query.positions
    i, j, shift = neighbor_list("ijS", crystal, 1.15 * 2 * 1.16)  # RDKit's Si radius 1.16
    expected = sorted(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist()), strict=True))
    found = sorted((a, b, o) for a in range(len(bonds)) for b, o in bonds[a])
    assert found == expected
    assert all(len(row) == 4 for row in bonds)


def test_periodic_representation_is_the_same_in_a_supercell():
    mbtypes = slatm_mbtypes([[14, 14, 14, 1, 1, 1]])
    small = element_blocks([silicon(1)], mbtypes, rcut=4.8, dgrid=(0.04, 0.04))[14].x
    large = element_blocks([silicon(2)], mbtypes, rcut=4.8, dgrid=(0.04, 0.04))[14].x
    assert small.shape == (8, large.shape[1]) and large.shape[0] == 64
    np.testing.assert_allclose(small, small[0][None].repeat(8, 0), atol=1e-12)
    np.testing.assert_allclose(large, small[0][None].repeat(64, 0), atol=1e-12)
    # every atom sees its 4 + 12 + 12 neighbours within 4.8 A: more than a lone cell gives
    lone = element_blocks(
        [(silicon(1).numbers, silicon(1).positions)], mbtypes, rcut=4.8, dgrid=(0.04, 0.04)
    )[14].x
    assert np.abs(lone[0] - small[0]).max() > 1e-3


def test_environment_holds_every_image_within_reach():
    query = silicon(1, rattle=0.1)
    lattice, pbc = cell_of(query)
    numbers, positions = periodic_environment(query.numbers, query.positions, lattice, pbc, 4.8)
    assert len(numbers) > len(query.numbers)
    np.testing.assert_allclose(positions[:8], query.positions)
    # brute force: every image in a 5x5x5 block of cells within 4.8 A of a cell atom
    images = np.concatenate(
        [query.positions + (np.array(o) - 2) @ lattice for o in np.ndindex(5, 5, 5)]
    )
    distance = np.linalg.norm(images[:, None] - query.positions[None], axis=2).min(axis=1)
    assert len(numbers) == int((distance <= 4.8).sum())


def test_periodic_label_matches_tblites_ase_calculator():
    from tblite.ase import TBLite

    query = silicon(1, rattle=0.05)
    label = XTBLabeler(relax=False).label(query)
    crystal = bulk("Si", "diamond", a=5.43, cubic=True)
    crystal.positions = query.positions
    crystal.calc = TBLite(method="GFN2-xTB", verbosity=0, electronic_temperature=300.0)
    from ase.units import Hartree

    assert label.status == "ok" and label.n_steps == 0
    assert label.energy_hartree == pytest.approx(crystal.get_potential_energy() / Hartree, abs=1e-7)
    with pytest.raises(Exception, match="relax false"):
        XTBLabeler(relax=True).label(query)


def test_cluster_amons_of_diamond_silicon():
    """Shells 2: SiH4, Si2H6, Si5H12 (a Si and its 4 neighbours), Si8H18 (a bond and its 6
    neighbours) and Si35H36 (two shells, Si17, with the 12 atoms that close its six-membered
    rings and the 6 that close the rings these open: the authors' Si17H36 has 12 pairs of caps
    1.42 A apart), one conformer each (every atom and bond of diamond is alike), each cap
    1.48 A from its Si along the cut bond, the Si atoms where the crystal has them."""
    amons = periodic_amons(silicon(1), PeriodicAmonSettings(shells=2))
    formulas = {}
    for amon in amons:
        m = amon.conformers[0].molecule
        formulas[(int((m.numbers == 14).sum()), int((m.numbers == 1).sum()))] = (
            amon.count,
            len(amon.conformers),
        )
    assert formulas == {
        (1, 4): (8, 1),
        (2, 6): (16, 1),
        (5, 12): (8, 1),
        (8, 18): (16, 1),
        (35, 36): (8, 1),
    }
    si5 = next(a for a in amons if a.n_heavy == 5).conformers[0].molecule
    centre = np.flatnonzero([len([b for b in si5.bonds if i in b[:2]]) == 4 and z == 14
                             for i, z in enumerate(si5.numbers)])  # fmt: skip
    for i, j, order in si5.bonds:
        assert order == 1
        length = np.linalg.norm(si5.positions[i] - si5.positions[j])
        expected = 1.48 if 1 in (si5.numbers[i], si5.numbers[j]) else 5.43 * np.sqrt(3) / 4
        assert length == pytest.approx(expected, abs=1e-3)
    assert len(centre) >= 1


def test_cluster_amons_close_every_ring_they_cut():
    """Clusters take in every atom bonded to two of their atoms, so no two H caps point at one
    missing atom: in the example cells (2 shells) every H is more than 1.7 A from every atom
    it is not bonded to (diamond Si: 2.42, hBN: 1.75; without ring closure 1.42 and 0.44)."""
    from amondask.chem import read_molecules

    path = Path(__file__).resolve().parent.parent / "examples" / "periodic" / "crystals.extxyz"
    cells = read_molecules(path, on_error="raise").molecules
    for cell in cells:
        for amon in periodic_amons(cell, PeriodicAmonSettings(shells=2)):
            molecule = amon.conformers[0].molecule
            hydrogens = np.flatnonzero(molecule.numbers == 1)
            bonded = {frozenset(b[:2]) for b in molecule.bonds}
            for h in hydrogens:
                for other in range(len(molecule.numbers)):
                    if other != h and frozenset((h, other)) not in bonded:
                        distance = np.linalg.norm(molecule.positions[h] - molecule.positions[other])
                        assert distance > 1.7, (cell.id, amon.key, h, other, distance)
            assert int((molecule.numbers > 1).sum()) == amon.n_heavy


def test_three_shell_clusters_of_the_doped_sheet_are_closed_shell():
    """A cluster holding one C of the sheet's C=C pair has an odd electron count and no
    closed-shell bond orders: it is skipped at once (RDKit's bond-order search took 100 s to
    give up on one), so 3 shells of every example cell extract in seconds, and every amon has
    an even electron count and no radical."""
    from amondask.chem import read_molecules

    path = Path(__file__).resolve().parent.parent / "examples" / "periodic" / "crystals.extxyz"
    doped = next(c for c in read_molecules(path, on_error="raise").molecules if c.id == "hbn32_cc")
    amons = periodic_amons(doped, PeriodicAmonSettings(shells=3))
    assert max(amon.n_heavy for amon in amons) == 25  # 3 shells around an atom of the sheet
    for amon in amons:
        molecule = amon.conformers[0].molecule
        assert int(molecule.numbers.sum()) % 2 == 0, amon.key
        assert not any(a.GetNumRadicalElectrons() for a in molecule.rdkit_mol.GetAtoms())
    assert any((amon.molecule.numbers == 6).sum() == 2 for amon in amons)  # C=C kept whole


def test_ring_closure_of_a_close_packed_crystal_stops_with_an_error():
    """In an fcc crystal bonded to all 12 neighbours every missing neighbour of a cluster bonds
    to two of its atoms, so ring closure would never end: it stops with an AmonError (an
    error row for the query) instead of hanging."""
    from amondask.errors import AmonError

    crystal = bulk("C", "fcc", a=2.4)  # 1.70 A to 12 neighbours: bonded at factor 1.15
    pbc = np.array([True, True, True])
    dense = Molecule(
        "fcc_c",
        crystal.numbers,
        np.zeros((0, 3)),
        positions=crystal.positions,
        metadata=cell_metadata(crystal.cell.array, pbc),
    )
    assert len(periodic_bonds(dense.numbers, dense.positions, crystal.cell.array, pbc)[0]) == 12
    with pytest.raises(AmonError, match="too densely bonded"):
        periodic_amons(dense, PeriodicAmonSettings(shells=1))


@pytest.mark.parametrize("shells", [1, 2])
def test_cluster_amons_are_the_same_for_a_supercell(shells):
    settings = PeriodicAmonSettings(shells=shells)
    small = periodic_amons(silicon(1, rattle=0.0), settings)
    large = periodic_amons(silicon(2, rattle=0.0), settings)
    assert [a.key for a in small] == [a.key for a in large]
    assert [8 * a.count for a in small] == [a.count for a in large]
    for a, b in zip(small, large, strict=True):
        from amondask.amons.geometry import conformer_signature

        np.testing.assert_allclose(
            conformer_signature(a.conformers[0].molecule.positions),
            conformer_signature(b.conformers[0].molecule.positions),
            atol=1e-9,
        )


def test_a_distorted_crystal_gives_distinct_clusters():
    amons = periodic_amons(silicon(1, rattle=0.05), PeriodicAmonSettings(shells=1))
    si5 = next(a for a in amons if a.n_heavy == 5)
    assert si5.count == 8 and len(si5.conformers) == 8


def test_silicon_run_and_evaluate(tmp_path):
    """The 64-atom diamond cell through `run` + `evaluate` (cluster amons of 1 shell, GFN2-xTB
    single points): the reference is tblite's periodic energy of the cell, and the prediction
    from three clusters is within 1 kcal/mol per atom of it (0.55 when written)."""
    import amondask

    query = silicon(2)
    path = tmp_path / "ws.zarr"
    with dask.config.set(SINGLE_POINTS):
        amondask.run([query], str(path), client=SERIAL, progress=False)
        evaluation = amondask.evaluate(
            str(path), client=SERIAL, progress=False, learning_curve=False
        )
    reference = XTBLabeler(relax=False).label(query).energy_hartree
    assert evaluation["reference_energy"].values[0] == pytest.approx(reference, abs=1e-9)
    per_atom = abs(float(evaluation["error"].values[0])) / 64
    assert per_atom < 1.0, per_atom
    from amondask.store import Workspace

    store = Workspace(str(path), mode="r").amons
    assert sorted(store.amons.read("n_heavy").tolist()) == [1, 2, 5]


def test_the_example_cells_hold_what_the_readme_says():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "periodic" / "crystals.extxyz"
    result = read_molecules(path, on_error="raise")
    cells = {m.id: m for m in result.molecules}
    assert list(cells) == ["si64", "hbn32", "hbn32_cc"]
    assert cells["si64"].n_atoms == 64 and set(cells["si64"].numbers) == {14}
    assert cell_of(cells["si64"])[1].tolist() == [True, True, True]
    assert cell_of(cells["hbn32"])[1].tolist() == [True, True, False]
    symbols = {z: int((cells["hbn32_cc"].numbers == z).sum()) for z in (5, 6, 7)}
    assert symbols == {5: 15, 6: 2, 7: 15}
    # the two C atoms are bonded to each other (a C=C pair, not two lone dopants)
    lattice, pbc = cell_of(cells["hbn32_cc"])
    bonds = periodic_bonds(cells["hbn32_cc"].numbers, cells["hbn32_cc"].positions, lattice, pbc)
    carbons = np.flatnonzero(cells["hbn32_cc"].numbers == 6)
    assert any(j == carbons[1] for j, _ in bonds[carbons[0]])
    # every cluster amon of the doped sheet keeps the C=C pair whole
    for amon in periodic_amons(cells["hbn32_cc"], PeriodicAmonSettings(shells=1)):
        n_carbon = int((amon.conformers[0].molecule.numbers == 6).sum())
        assert n_carbon in (0, 2), amon.key


def test_the_remedy_refuses_a_cell_and_says_what_to_do():
    from amondask.errors import AmondaskError
    from amondask.pipeline.remedy import remedy_amons

    with pytest.raises(AmondaskError, match="amons.periodic.shells"):
        remedy_amons(silicon(1), 5)
