import numpy as np
import pytest
from rdkit import Chem

from amondask import Molecule
from amondask.chem import canonical_key
from amondask.errors import ParseError, SanitizationError


def test_from_smiles_counts_atoms_and_bonds():
    molecule = Molecule.from_smiles("c1ccccc1O", "phenol")
    assert molecule.id == "phenol"
    assert molecule.n_atoms == 13  # C6H5OH
    assert molecule.n_heavy == 7
    assert sorted(molecule.numbers.tolist()).count(1) == 6
    assert len(molecule.bonds) == 13
    # Kekule: three double bonds in the ring, the rest single.
    assert sorted(molecule.bonds[:, 2].tolist()) == [1] * 10 + [2] * 3
    assert molecule.positions is None
    assert molecule.key == "Oc1ccccc1"


def test_molecule_is_immutable():
    molecule = Molecule.from_smiles("CCO")
    with pytest.raises(ValueError):
        molecule.numbers[0] = 7
    with pytest.raises(AttributeError):
        molecule.id = "other"
    with pytest.raises(TypeError):
        molecule.metadata["x"] = 1


def test_zwitterion_keeps_atom_charges_and_is_neutral():
    molecule = Molecule.from_smiles("C[N+](=O)[O-]")
    assert molecule.charge == 0
    assert sorted(molecule.formal_charges.tolist()) == [-1] + [0] * 5 + [1]


def test_rdkit_round_trip_keeps_graph_and_positions():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    from rdkit.Chem import AllChem

    AllChem.EmbedMolecule(mol, randomSeed=1)
    molecule = Molecule.from_rdkit(mol, "acetamide")
    np.testing.assert_allclose(molecule.positions, mol.GetConformer().GetPositions())
    again = Molecule.from_rdkit(molecule.rdkit_mol, "acetamide")
    assert again.same_structure(molecule)
    assert canonical_key(molecule.rdkit_mol) == "CC(N)=O"


def test_key_ignores_stereo_and_hydrogen_order():
    a = Molecule.from_smiles("C[C@H](N)O")
    b = Molecule.from_smiles("OC(N)C")
    assert a.key == b.key == "CC(N)O"


def test_bad_inputs_raise_record_errors():
    with pytest.raises(ParseError):
        Molecule.from_smiles("C1CC")
    with pytest.raises(ValueError):
        Molecule(id="x", numbers=[6, 1], bonds=[[0, 5, 1]])
    bad_valence = Molecule(
        id="x", numbers=[6, 1, 1, 1, 1, 1], bonds=[[0, k, 1] for k in range(1, 6)]
    )
    with pytest.raises(SanitizationError):
        bad_valence.rdkit_mol  # noqa: B018 - the property raises


def test_rdkit_mol_is_a_fresh_copy_each_time():
    molecule = Molecule.from_smiles("CCO")
    first = molecule.rdkit_mol
    first.GetAtomWithIdx(0).SetAtomicNum(7)
    assert molecule.rdkit_mol.GetAtomWithIdx(0).GetAtomicNum() == 6
    assert molecule.rdkit_mol is not molecule.rdkit_mol


def test_molecule_pickles_with_metadata_and_positions():
    import pickle

    from amondask.chem.geometry import embed_molecule

    molecule = embed_molecule(Molecule.from_smiles("CCO", "ethanol", metadata={"note": "x"}))
    back = pickle.loads(pickle.dumps(molecule))
    assert back.same_structure(molecule) and back.id == "ethanol"
    assert dict(back.metadata) == dict(molecule.metadata)


def test_error_records_map_back_to_their_exception_types():
    from amondask.errors import AmonError, ErrorRecord

    record = ErrorRecord("q1", "amons", "AmonError", "radical", "f.smi:3")
    exc = record.to_exception()
    assert isinstance(exc, AmonError) and exc.record_id == "q1" and "f.smi:3" in str(exc)
