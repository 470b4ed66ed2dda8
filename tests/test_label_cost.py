"""The cost model, task planning, and label_many mapped over partitions on a Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from amondask.chem import Molecule
from amondask.label import estimated_cost_seconds, get_labeler, label_many
from amondask.label.cost import n_basis_functions, plan_tasks
from amondask.label.table import TableLabeler
from amondask.label.xtb import XTBLabeler


def test_basis_function_counts_by_hand():
    water = Molecule.from_smiles("O", "water")
    # STO-3G: O 1s 2s 2p(3) = 5, H 1s = 1
    assert n_basis_functions(water, "sto-3g") == 7
    # 6-31G(2df,p), spherical: O 3s 2p (9) + 2d (10) + 1f (7) = 26; H 2s 1p = 5
    assert n_basis_functions(water, "6-31G(2df,p)") == 36


def test_costs_grow_with_size_and_relaxation():
    small, large = Molecule.from_smiles("C", "a"), Molecule.from_smiles("CCCCCCC", "b")
    relaxed, single_point = XTBLabeler(), XTBLabeler(relax=False)
    assert 0 < estimated_cost_seconds(small, relaxed) < estimated_cost_seconds(large, relaxed)
    assert estimated_cost_seconds(large, single_point) < estimated_cost_seconds(large, relaxed)
    dft = get_labeler("pyscf")
    assert estimated_cost_seconds(large, dft) > estimated_cost_seconds(small, dft)
    assert estimated_cost_seconds(large, dft) > estimated_cost_seconds(large, relaxed)
    relaxed_dft = get_labeler("pyscf", relax=True)
    assert estimated_cost_seconds(large, relaxed_dft) > estimated_cost_seconds(large, dft)
    import pandas as pd

    table = TableLabeler(pd.DataFrame({"smiles": ["C"], "energy": [-40.0]}), level_of_theory="x")
    assert estimated_cost_seconds(large, table) == estimated_cost_seconds(small, table)


def test_plan_tasks():
    costs = [1.0, 1.0, 5.0, 0.5, 0.5, 0.5, 3.0]
    tasks = plan_tasks(costs, target_seconds=2.0)
    assert [t.tolist() for t in tasks] == [[0, 1], [2], [3, 4, 5], [6]]
    assert np.concatenate(tasks).tolist() == list(range(len(costs)))
    assert plan_tasks([], 1.0) == []
    with pytest.raises(ValueError):
        plan_tasks(costs, 0)


def _label_partition(molecules):
    labels, errors = label_many(XTBLabeler(relax=False), molecules)
    return [(label.molecule_id, label.status, label.energy_hartree) for label in labels], errors


def test_label_many_on_a_cluster_equals_serial():
    from distributed import Client, LocalCluster

    from amondask.chem.geometry import embed_molecule

    molecules = [
        embed_molecule(Molecule.from_smiles(smiles, f"m{k}"), seed=k)
        for k, smiles in enumerate(["C", "CO", "CC=O", "N#CC", "OC=O", "CN"])
    ]
    molecules.insert(
        3, Molecule(id="radical", numbers=[6, 1, 1, 1], bonds=[[0, 1, 1], [0, 2, 1], [0, 3, 1]])
    )
    serial, serial_errors = _label_partition(molecules)
    partitions = [molecules[:3], molecules[3:5], molecules[5:]]
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        results = client.gather(client.map(_label_partition, partitions))
    distributed = [row for rows, _ in results for row in rows]
    errors = [error for _, part_errors in results for error in part_errors]
    assert [row[:2] for row in distributed] == [row[:2] for row in serial]
    ok = [k for k, row in enumerate(serial) if row[1] == "ok"]
    np.testing.assert_allclose(
        [distributed[k][2] for k in ok], [serial[k][2] for k in ok], rtol=0, atol=1e-10
    )
    assert [e.record_id for e in errors] == [e.record_id for e in serial_errors] == ["radical"]
