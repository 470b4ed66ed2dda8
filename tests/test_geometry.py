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


def test_an_embedding_past_its_time_budget_is_an_error_row(tmp_path):
    """A 244-heavy-atom branched alkane does not embed in 1 s: a clear error, not a held worker."""
    import time

    import dask.config

    from amondask import read_molecules

    big = "CC(C)" + "C(C(C)C)" * 60 + "C"
    budget = {"amondask.geometry.embed-timeout-s": 1, "amondask.geometry.max-attempts": 1}
    with dask.config.set(budget):
        started = time.monotonic()
        with pytest.raises(GeometryError, match="embed-timeout-s") as caught:
            embed_molecule(Molecule.from_smiles(big, "big"))
        assert time.monotonic() - started < 60  # ~1.5 s here; unbounded it takes many minutes
        assert caught.value.record_id == "big"
        queries = tmp_path / "q.smi"
        queries.write_text(f"{big} big\nCCO ethanol\n")
        result = read_molecules(queries, geometry=True)
    assert [m.id for m in result.molecules] == ["ethanol"]
    assert result.molecules[0].has_positions
    (error,) = result.errors
    assert error.record_id == "big" and error.stage == "geometry"
    assert "embed-timeout-s" in error.message
