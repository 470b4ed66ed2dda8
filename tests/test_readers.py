"""Readers on good and bad input: every record is either a molecule or an error row."""

import gzip

import numpy as np
import pytest

from amondask.chem import iter_batches, iter_molecules, read_molecules
from amondask.errors import (
    ChargedMoleculeError,
    DuplicateIdError,
    ErrorRecord,
    InputError,
    ParseError,
)

WATER_XYZ = """3
id=water energy=-76.4
O 0.000000 0.000000 0.117300
H 0.000000 0.757200 -0.469200
H 0.000000 -0.757200 -0.469200
"""
METHANE_XYZ = """5
methane from a plain XYZ file
C 0.0 0.0 0.0
H 0.629118 0.629118 0.629118
H -0.629118 -0.629118 0.629118
H -0.629118 0.629118 -0.629118
H 0.629118 -0.629118 -0.629118
"""


def by_id(result):
    return {m.id: m for m in result.molecules}


def errors_by_id(result):
    return {e.record_id: e for e in result.errors}


# ---- SMILES lists and .smi files --------------------------------------------------------------
def test_smiles_list_good_and_bad():
    result = read_molecules(["CCO", "c1ccccc1", "C1CC", "C[NH3+]", "[CH3]", "CC[Xe]", ("CO", "m")])
    assert result.n_records == 7
    assert [m.id for m in result.molecules] == ["0", "1", "m"]
    assert [m.n_atoms for m in result.molecules] == [9, 12, 6]
    errors = errors_by_id(result)
    assert errors["2"].error_type == "ParseError"
    assert errors["3"].error_type == "ChargedMoleculeError"
    assert errors["4"].error_type == "OpenShellError"
    assert errors["5"].error_type == "UnsupportedElementError"
    assert "Xe" in errors["5"].message
    assert all(e.stage == "read" for e in result.errors)


def test_smi_file_with_ids_comments_header_and_bad_lines(tmp_path):
    path = tmp_path / "q.smi"
    path.write_bytes(
        b"smiles id\n"
        b"# a comment\n"
        b"CCO ethanol\n"
        b"\n"
        b"c1ccncc1 pyridine ring\n"
        b"C(C bad-paren\n"
        b"CO\n"
        b"C\xff\xfeO latin\n"
        b"CCN ethanol\n"
    )
    result = read_molecules(path)
    molecules = by_id(result)
    assert set(molecules) == {"ethanol", "pyridine ring", "q:L7"}
    assert molecules["pyridine ring"].n_heavy == 6
    assert molecules["q:L7"].key == "CO"
    errors = errors_by_id(result)
    assert set(errors) == {"bad-paren", "latin", "ethanol"}
    assert errors["latin"].error_type == "ParseError" and "UTF-8" in errors["latin"].message
    assert errors["latin"].location == "q.smi:8"
    assert errors["ethanol"].error_type == "DuplicateIdError"
    assert "q.smi:3" in errors["ethanol"].message
    assert result.n_records == 6


def test_gzip_smiles(tmp_path):
    path = tmp_path / "q.smi.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"CCO a\nCCC b\n")
    assert [m.key for m in read_molecules(path).molecules] == ["CCO", "CCC"]


# ---- CSV ----------------------------------------------------------------------------------------
def test_csv_keeps_metadata_and_ids(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(
        "ID,SMILES,energy,note\n"
        'a,CCO,-155.03,"ethanol, liquid"\n'
        "b,C1CC,0,bad\n"
        "c,OC=O,-189.8,\n"
        ",CC,-79.8,no id\n"
    )
    result = read_molecules(path)
    molecules = by_id(result)
    assert set(molecules) == {"a", "c", "q:L5"}
    assert molecules["a"].metadata["energy"] == "-155.03"
    assert molecules["a"].metadata["note"] == "ethanol, liquid"
    assert molecules["c"].key == "O=CO"
    assert errors_by_id(result)["b"].error_type == "ParseError"
    assert errors_by_id(result)["b"].location == "q.csv:3"


def test_csv_without_smiles_column_is_an_input_error(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("id,structure\na,CCO\n")
    with pytest.raises(InputError, match="no SMILES column.*structure.*smiles_column"):
        read_molecules(path)
    assert [m.key for m in read_molecules(path, smiles_column="structure").molecules] == ["CCO"]


def test_csv_with_non_utf8_row_keeps_the_others(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b"smiles,id\nCCO,a\nC\xe9O,b\nCCC,c\n")
    result = read_molecules(path)
    assert [m.id for m in result.molecules] == ["a", "c"]
    assert result.errors[0].record_id == "b" and "UTF-8" in result.errors[0].message


def test_tab_separated(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("name\tsmiles\tx\nethanol\tCCO\t1\n")
    molecule = read_molecules(path).molecules[0]
    assert molecule.id == "ethanol" and molecule.metadata["x"] == "1"
    assert molecule.metadata["input_smiles"] == "CCO"


# ---- SDF ----------------------------------------------------------------------------------
def _sdf_block(smiles, name, props=None, coordinates=True):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if coordinates:
        AllChem.EmbedMolecule(mol, randomSeed=3)
    mol.SetProp("_Name", name)
    for key, value in (props or {}).items():
        mol.SetProp(key, value)
    block = Chem.MolToMolBlock(mol)
    tail = "".join(f">  <{k}>\n{v}\n\n" for k, v in (props or {}).items())
    return block + tail + "$$$$\n", mol


def test_sdf_reads_coordinates_titles_and_properties(tmp_path):
    block_a, mol_a = _sdf_block("CC(=O)O", "acetic acid", {"energy": "-229.1"})
    block_b, _ = _sdf_block("c1ccccc1", "benzene")
    path = tmp_path / "q.sdf"
    path.write_text(block_a + block_b)
    result = read_molecules(path)
    assert not result.errors
    molecules = by_id(result)
    acid = molecules["acetic acid"]
    np.testing.assert_allclose(acid.positions, mol_a.GetConformer().GetPositions(), atol=1e-4)
    assert acid.metadata["energy"] == "-229.1"
    assert molecules["benzene"].n_atoms == 12


def test_sdf_bad_and_truncated_records(tmp_path):
    good, _ = _sdf_block("CCO", "ethanol")
    charged, _ = _sdf_block("C[NH3+]", "methylammonium")
    garbage = "broken\n  nothing\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nxx\nM  END\n$$$$\n"
    truncated_block, _ = _sdf_block("CCC", "propane")
    truncated = truncated_block[: len(truncated_block) // 2]
    path = tmp_path / "q.sdf"
    path.write_text(good + charged + garbage + truncated)
    result = read_molecules(path)
    assert [m.id for m in result.molecules] == ["ethanol"]
    errors = errors_by_id(result)
    assert errors["methylammonium"].error_type == "ChargedMoleculeError"
    assert errors["broken"].error_type == "ParseError"
    assert errors["propane"].error_type == "ParseError"
    assert "truncated" in errors["propane"].message
    assert result.n_records == 4


def test_sdf_2d_record_is_read_as_a_graph(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles("CCN")
    AllChem.Compute2DCoords(mol)
    mol.SetProp("_Name", "ethylamine")
    path = tmp_path / "flat.mol"
    path.write_text(Chem.MolToMolBlock(mol))
    molecule = read_molecules(path).molecules[0]
    assert molecule.positions is None and molecule.n_atoms == 10


# ---- XYZ ----------------------------------------------------------------------------------
def test_xyz_multiframe_perceives_bonds(tmp_path):
    path = tmp_path / "q.xyz"
    path.write_text(WATER_XYZ + METHANE_XYZ)
    result = read_molecules(path)
    assert not result.errors
    water, methane = result.molecules
    assert water.id == "water" and water.metadata["energy"] == "-76.4"
    assert water.key == "O" and len(water.bonds) == 2
    np.testing.assert_allclose(water.positions[1], [0.0, 0.7572, -0.4692])
    assert methane.id == "q:F2" and methane.key == "C" and len(methane.bonds) == 4
    assert methane.metadata["comment"] == "methane from a plain XYZ file"


def test_extxyz_properties_columns(tmp_path):
    text = (
        "3\n"
        'Properties=species:S:1:pos:R:3:forces:R:3 name="w 1" pbc="F F F"\n'
        "O 0 0 0.1173 0 0 0\nH 0 0.7572 -0.4692 0 0 0\nH 0 -0.7572 -0.4692 0 0 0\n"
    )
    path = tmp_path / "q.extxyz"
    path.write_text(text)
    molecule = read_molecules(path).molecules[0]
    assert molecule.id == "w 1" and molecule.key == "O"


def test_xyz_truncated_frame_keeps_earlier_frames(tmp_path):
    path = tmp_path / "q.xyz"
    path.write_text(WATER_XYZ + METHANE_XYZ[: METHANE_XYZ.index("H -0.629118 0.629")])
    result = read_molecules(path)
    assert [m.id for m in result.molecules] == ["water"]
    (error,) = result.errors
    assert error.record_id == "q:F2" and "truncated" in error.message


def test_xyz_bad_lines_become_errors_and_reading_resynchronizes(tmp_path):
    overlapping = "2\nid=clash\nC 0 0 0\nC 0 0 0.1\n"
    bad_coordinate = "3\nid=badcoord\nO 0 0 x\nH 0 0.75 -0.47\nH 0 -0.75 -0.47\n"
    junk = "this is not a frame\nnor this\n"
    radical = "4\nid=methyl\nC 0 0 0\nH 1.08 0 0\nH -0.54 0.935 0\nH -0.54 -0.935 0\n"
    path = tmp_path / "q.xyz"
    path.write_text(overlapping + bad_coordinate + junk + WATER_XYZ + radical)
    result = read_molecules(path)
    assert [m.id for m in result.molecules] == ["water"]
    errors = errors_by_id(result)
    assert (
        errors["clash"].error_type == "GeometryError" and "overlapping" in errors["clash"].message
    )
    assert errors["badcoord"].error_type == "ParseError"
    assert errors["methyl"].error_type in ("SanitizationError", "OpenShellError")
    junk_errors = [e for e in result.errors if "atom count" in e.message]
    assert len(junk_errors) == 1


# ---- whole-input problems and on_error ----------------------------------------------------
@pytest.mark.parametrize("name", ["empty.smi", "empty.sdf", "empty.xyz", "empty.csv"])
def test_empty_files_are_input_errors(tmp_path, name):
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(InputError, match="no molecule records|empty"):
        read_molecules(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_molecules(tmp_path / "nope.smi")
    path = tmp_path / "q.pdbqt"
    path.write_text("x")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_molecules(path)


def test_on_error_raise():
    with pytest.raises(ChargedMoleculeError, match="record '1'"):
        read_molecules(["CCO", "C[NH3+]"], on_error="raise")
    with pytest.raises(DuplicateIdError):
        read_molecules([("CCO", "a"), ("CCC", "a")], on_error="raise")
    with pytest.raises(ParseError):
        list(iter_molecules(["C1CC"], on_error="raise"))


def test_streaming_in_batches_preserves_order_and_counts():
    smiles = ["C" * (k % 5 + 1) for k in range(23)] + ["C1CC"]
    batches = list(iter_batches(smiles, batch_size=5))
    assert [b.n_records for b in batches] == [5, 5, 5, 5, 4]
    ids = [m.id for b in batches for m in b.molecules]
    assert ids == [str(k) for k in range(23)]
    assert isinstance(batches[-1].errors[0], ErrorRecord)


def test_geometry_option_embeds_graph_only_molecules():
    result = read_molecules(["CCO", "C#N"], geometry=True)
    assert all(m.positions is not None for m in result.molecules)
    assert result.molecules[0].positions.shape == (9, 3)


def test_csv_with_byte_order_mark_and_binary_csv(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfsmiles,id\nCCO,a\n")
    assert [m.id for m in read_molecules(path).molecules] == ["a"]
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_molecules(junk)


def test_xyz_bicyclopentane_cross_ring_contact_is_not_a_bond(tmp_path):
    """QM9 gdb 105: the 1.88 angstrom C1...C3 contact broke RDKit's default bond perception."""
    atoms = """C -0.04457743 1.57042376 0.01104178
C 1.47408968 1.22984265 -0.00672639
C 1.16829931 0.14431094 1.06637449
C 0.03912537 0.01620934 0.00242630
C 1.14621190 0.15421908 -1.08267767
H -0.43297940 2.03652309 0.92125393
H -0.45229209 2.04572916 -0.88591629
H 2.30711561 1.93440788 -0.01214045
H 1.87347297 -0.68893115 1.13733056
H 0.87209634 0.50200285 2.05682325
H -0.79393529 -0.68831643 0.00764131
H 0.82998902 0.52071432 -2.06362038
H 1.84971192 -0.67827993 -1.17564181
"""
    path = tmp_path / "q.xyz"
    path.write_text(f"13\nid=qm9_000105\n{atoms}")
    molecule = read_molecules(path).molecules[0]
    assert molecule.key == "C1C2CC1C2"  # QM9's SMILES: bicyclo[1.1.1]pentane
    assert len(molecule.bonds) == 14
