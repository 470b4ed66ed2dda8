import numpy as np
import pytest

from amondask import Molecule
from amondask.chem.geometry import closest_contact, embed_molecule, ensure_positions
from amondask.errors import GeometryError


def _distance(positions, i, j):
    return float(np.linalg.norm(positions[i] - positions[j]))


def test_embedding_is_deterministic_for_a_seed():
    molecule = Molecule.from_smiles("CC(=O)Oc1ccccc1C(=O)O", "aspirin")
    first = embed_molecule(molecule, seed=7)
    second = embed_molecule(molecule, seed=7)
    np.testing.assert_array_equal(first.positions, second.positions)
    other = embed_molecule(molecule, seed=8)
    assert first.positions.shape == (21, 3)
    assert first.metadata["coordinates"] == "etkdg+mmff94"
    # Different seeds start from different random coordinates.
    assert not np.allclose(first.positions, other.positions)


def test_embedded_geometry_is_chemically_sensible():
    molecule = embed_molecule(Molecule.from_smiles("C#CC=O", "propynal"))
    pos = molecule.positions
    numbers = molecule.numbers
    for i, j, order in molecule.bonds.tolist():
        length = _distance(pos, i, j)
        pair = tuple(sorted((numbers[i], numbers[j])))
        expected = {(6, 6, 3): 1.20, (6, 6, 1): 1.43, (6, 8, 2): 1.22, (1, 6, 1): 1.07}
        assert abs(length - expected[(*pair, order)]) < 0.06, (pair, order, length)
    assert closest_contact(pos) > 0.9


def test_ensure_positions_keeps_given_coordinates():
    molecule = embed_molecule(Molecule.from_smiles("CO"))
    assert ensure_positions(molecule) is molecule


def test_embedding_failure_is_a_geometry_error(monkeypatch):
    from rdkit.Chem import AllChem

    monkeypatch.setattr(AllChem, "EmbedMolecule", lambda mol, params: -1)
    with pytest.raises(GeometryError, match="could not embed"):
        embed_molecule(Molecule.from_smiles("CCO", "ethanol"), max_attempts=2)
