"""PDB input: bond orders from RDKit's residue templates (no H) or from the geometry (with H),
one record per MODEL, and error rows that say what to do."""

from __future__ import annotations

import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from amondask.chem import canonical_key, read_molecules

SEQUENCE = "GAVLKDSTNQ"  # neutral side chains: Lys as NH2, Asp as COOH


@pytest.fixture(scope="module")
def peptide():
    """The decapeptide with H atoms and an ETKDG geometry, and its PDB block (with H)."""
    mol = Chem.AddHs(Chem.MolFromSequence(SEQUENCE))
    params = AllChem.ETKDGv3()
    params.randomSeed = 3
    params.useRandomCoords = True
    assert AllChem.EmbedMolecule(mol, params) == 0
    return mol, Chem.MolToPDBBlock(mol, flavor=2)


def atom_lines(block: str, *, hydrogens: bool) -> list[str]:
    return [
        line
        for line in block.splitlines()
        if line.startswith(("ATOM", "HETATM")) and (hydrogens or line[76:78].strip() != "H")
    ]


def test_pdb_without_hydrogens_uses_residue_templates(tmp_path, peptide):
    mol, block = peptide
    path = tmp_path / "pep.pdb"
    path.write_text("\n".join(["HEADER    PEPTIDE"] + atom_lines(block, hydrogens=False) + ["END"]))
    result = read_molecules(path)
    assert not result.errors
    (molecule,) = result.molecules
    assert molecule.id == "pep"
    # the same molecule as the sequence (bond orders from the templates, H atoms added)
    assert molecule.key == canonical_key(mol)
    assert molecule.n_atoms == mol.GetNumAtoms()
    assert "LYS" in molecule.metadata["residues"]
    # heavy atoms keep their coordinates, in the file's order
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    positions = mol.GetConformer().GetPositions()[heavy]
    assert abs(molecule.positions[: len(heavy)] - positions).max() < 1e-3
    # added H atoms sit at bonding distance from their heavy atom
    for i, j, _ in molecule.bonds.tolist():
        if 1 in (molecule.numbers[i], molecule.numbers[j]):
            distance = ((molecule.positions[i] - molecule.positions[j]) ** 2).sum() ** 0.5
            assert 0.9 < distance < 1.2


def test_pdb_with_hydrogens_perceives_bonds_from_the_geometry(tmp_path, peptide):
    mol, block = peptide
    path = tmp_path / "with_h.pdb"
    path.write_text("\n".join(atom_lines(block, hydrogens=True) + ["END"]))
    (molecule,) = read_molecules(path, on_error="raise").molecules
    assert molecule.key == canonical_key(mol)
    assert abs(molecule.positions - mol.GetConformer().GetPositions()).max() < 1e-3


def test_models_are_records_with_their_own_ids(tmp_path, peptide):
    _, block = peptide
    atoms = atom_lines(block, hydrogens=False)
    text = ["MODEL        1", *atoms, "ENDMDL", "MODEL        2", *atoms, "ENDMDL", "END"]
    path = tmp_path / "nmr.pdb"
    path.write_text("\n".join(text))
    result = read_molecules(path)
    assert [m.id for m in result.molecules] == ["nmr:M1", "nmr:M2"]
    assert result.molecules[0].key == result.molecules[1].key


def test_unknown_residue_without_hydrogens_is_an_error_row(tmp_path):
    # benzene as a HETATM ligand without H: no template, so its bond orders are unknown
    mol = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    heavy = Chem.RemoveHs(mol)
    for atom in heavy.GetAtoms():
        info = Chem.AtomPDBResidueInfo(f" C{atom.GetIdx() + 1:<2}", residueName="BNZ")
        info.SetIsHeteroAtom(True)
        atom.SetMonomerInfo(info)
    path = tmp_path / "ligand.pdb"
    path.write_text(Chem.MolToPDBBlock(heavy, flavor=2))
    result = read_molecules(path)
    assert not result.molecules
    (error,) = result.errors
    assert error.record_id == "ligand" and error.stage == "read"
    assert "BNZ" in error.message and "hydrogen" in error.message
    # with its H atoms the same ligand is read from the geometry
    for atom in mol.GetAtoms():
        info = Chem.AtomPDBResidueInfo(
            f" {atom.GetSymbol()}{atom.GetIdx() + 1:<2}", residueName="BNZ"
        )
        info.SetIsHeteroAtom(True)
        atom.SetMonomerInfo(info)
    path.write_text(Chem.MolToPDBBlock(mol, flavor=2))
    (molecule,) = read_molecules(path, on_error="raise").molecules
    assert molecule.key == canonical_key(mol)


def test_a_file_without_atoms_is_an_error_row(tmp_path):
    path = tmp_path / "empty.pdb"
    path.write_text("HEADER    NOTHING HERE\nEND\n")
    result = read_molecules(path)
    (error,) = result.errors
    assert "no ATOM or HETATM" in error.message


def test_water_in_a_protein_file_is_refused_with_advice(tmp_path, peptide):
    _, block = peptide
    water = "HETATM 9999  O   HOH W   1      30.000  30.000  30.000  1.00  0.00           O  "
    path = tmp_path / "solvated.pdb"
    path.write_text("\n".join(atom_lines(block, hydrogens=False) + [water, "END"]))
    (error,) = read_molecules(path).errors
    assert "HOH" in error.message and "remove waters" in error.message
