"""Predicting molecules that are not queries of the workspace with its stored global model.

Reference: the workspace's own global predictions of its queries (the stored blocked kernel and
the prediction stage), which predict_molecules must reproduce from the molecules alone; and
invariances (rotation, atom order, chunking).
"""

from __future__ import annotations

import numpy as np
import pytest

from amondask.chem import Molecule
from amondask.errors import WorkspaceError
from amondask.pipeline import SERIAL
from amondask.pipeline.run import run
from amondask.pipeline.train import predict_molecules, predictions_frame
from amondask.store import Workspace

QUERIES = [
    ("CCO", "ethanol"),
    ("CCCO", "propanol"),
    ("CC(C)O", "isopropanol"),
    ("CCOC", "methoxyethane"),
    ("CC=O", "acetaldehyde"),
    ("OCCO", "ethylene_glycol"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "ws.zarr"
    run(QUERIES, path, max_heavy_atoms=3, client=SERIAL, progress=False)
    return Workspace(path, mode="r")


def _rotated_and_permuted(molecule: Molecule, seed: int) -> Molecule:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    order = rng.permutation(molecule.n_atoms)
    inverse = np.argsort(order)
    bonds = np.asarray(molecule.bonds).copy()
    if len(bonds):
        bonds[:, :2] = inverse[bonds[:, :2]]
    return Molecule(
        id=molecule.id,
        numbers=np.asarray(molecule.numbers)[order],
        bonds=bonds,
        formal_charges=np.asarray(molecule.formal_charges)[order],
        positions=(np.asarray(molecule.positions) @ q.T + 3.0)[order],
    )


def test_equals_the_workspace_predictions_of_its_own_queries(finished):
    stored = predictions_frame(finished, "global").set_index("id")
    molecules = list(finished.queries.molecules())
    dataset = predict_molecules(finished, molecules, molecule_chunk=4)
    assert list(dataset["query_id"].values) == [qid for _, qid in QUERIES]
    ids = dataset["query_id"].values
    np.testing.assert_allclose(
        dataset["energy"].values, stored["energy_hartree"].loc[ids], atol=1e-9
    )
    np.testing.assert_allclose(
        dataset["uncertainty"].values,
        stored["uncertainty_hartree"].loc[dataset["query_id"].values],
        atol=1e-9,
    )
    np.testing.assert_array_equal(
        dataset["flagged"].values, stored["flagged"].loc[dataset["query_id"].values]
    )


def test_rotation_atom_order_and_chunking_do_not_change_predictions(finished):
    molecules = list(finished.queries.molecules())
    reference = predict_molecules(finished, molecules)
    moved = [_rotated_and_permuted(m, seed) for seed, m in enumerate(molecules)]
    for chunk in (1, 2, 100):
        got = predict_molecules(finished, moved[::-1], molecule_chunk=chunk)
        np.testing.assert_allclose(
            got["energy"].sel(query_id=reference["query_id"].values).values,
            reference["energy"].values,
            atol=1e-8,
        )


def test_an_element_the_model_never_saw_is_not_covered(finished):
    from amondask.chem import read_molecules
    from amondask.chem.geometry import ensure_positions

    molecule = ensure_positions(read_molecules(["CCF"]).molecules[0])
    ethanol = next(iter(finished.queries.molecules()))
    dataset = predict_molecules(finished, [molecule, ethanol])
    # F is outside the workspace's aSLATM basis: no energy, not covered, flagged; the other
    # molecule of the batch is predicted as alone.
    assert np.isnan(dataset["energy"].values[0])
    assert not bool(dataset["covered"].values[0])
    assert bool(dataset["flagged"].values[0])
    alone = predict_molecules(finished, [ethanol])
    np.testing.assert_allclose(dataset["energy"].values[1], alone["energy"].values[0], atol=1e-10)


def test_no_model_is_a_clear_error(tmp_path):
    workspace = Workspace(tmp_path / "empty.zarr")
    with pytest.raises(WorkspaceError, match="run the train stage first"):
        predict_molecules(workspace, [])
