"""Distributed amon extraction into the workspace's global, deduplicated amon store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import dask.config
import numpy as np
import pytest
from extract_helpers import assert_same_content, build, store_content

from amondask.amons import extract_amons
from amondask.chem import read_molecules
from amondask.pipeline import SERIAL, extract_workspace
from amondask.pipeline import extract as extract_module
from amondask.store import Workspace
from amondask.store.ingest import read_into_workspace


@pytest.fixture(scope="module")
def queries(examples_dir_module):
    return read_molecules(examples_dir_module / "qm9_sample.extxyz").molecules[:12]


@pytest.fixture(scope="module")
def examples_dir_module():
    from conftest import EXAMPLES

    return EXAMPLES


@pytest.fixture(scope="module")
def reference(tmp_path_factory, queries):
    """The store built serially in one partition and one bucket."""
    path = tmp_path_factory.mktemp("reference") / "ws.zarr"
    workspace = build(path, queries, partition_size=100, buckets=1)
    return store_content(workspace)


def test_store_matches_direct_extraction(tmp_path, queries):
    """Each query's row of the count matrix equals extract_amons on that query alone."""
    workspace = build(tmp_path / "ws.zarr", queries, partition_size=5, buckets=3)
    store = workspace.amons
    keys = store.amons.read_text("key")
    assert len(set(keys)) == len(keys)  # deduplicated
    from rdkit import Chem

    from amondask.chem import canonical_key

    for key, smiles in zip(keys, store.amons.read_text("smiles"), strict=True):
        assert canonical_key(Chem.AddHs(Chem.MolFromSmiles(smiles))) == key
    matrix = store.query_amon_matrix().toarray()
    first_query = store.amons.read("first_query")
    for index, molecule in enumerate(queries):
        direct = extract_amons(molecule, 4, geometry=False)
        expected = {amon.key: amon.count for amon in direct}
        got = {keys[j]: int(matrix[index, j]) for j in np.flatnonzero(matrix[index])}
        assert got == expected, molecule.id
    # Ids follow (first query, n_heavy, key); first_query is the first query holding the amon.
    n_heavy = store.amons.read("n_heavy")
    order = sorted(range(len(keys)), key=lambda k: (first_query[k], n_heavy[k], keys[k]))
    assert order == list(range(len(keys)))
    for j in range(len(keys)):
        assert matrix[: first_query[j], j].sum() == 0 and matrix[first_query[j], j] > 0
    # Every conformer belongs to an amon graph of the same key and comes from a query holding it.
    conformer_amons = store.conformers.read("amon")
    assert set(conformer_amons.tolist()) == set(range(len(keys)))
    for conformer, molecule in enumerate(store.conformers.molecules()):
        assert molecule.key == keys[conformer_amons[conformer]]
    qc = store.query_conformers
    for query, conformer in zip(qc.read("query"), qc.read("conformer"), strict=True):
        assert matrix[query, conformer_amons[conformer]] > 0


@pytest.mark.parametrize("partition_size,buckets", [(1, 7), (5, 3), (12, 2)])
def test_partitioning_does_not_change_the_store(
    tmp_path, queries, reference, partition_size, buckets
):
    workspace = build(tmp_path / "ws.zarr", queries, partition_size=partition_size, buckets=buckets)
    assert_same_content(store_content(workspace), reference)


def test_partitions_start_largest_first(tmp_path, queries):
    """The parts are submitted by estimated cost (sum of squared atom counts), largest first;
    equal costs keep their order. Checked against a loop over the molecules themselves."""
    workspace = Workspace(tmp_path / "ws.zarr")
    read_into_workspace(list(queries), workspace, progress=False)
    partitions = [(0, 3), (3, 4), (4, 9), (9, 12)]
    cost = {(a, b): sum(queries[k].n_atoms ** 2 for k in range(a, b)) for a, b in partitions}
    expected = sorted(partitions, key=lambda p: (-cost[p], partitions.index(p)))
    assert extract_module.largest_first(workspace, partitions) == expected
    assert expected[0] == (4, 9) and expected[-1] == (3, 4)
    assert extract_module.largest_first(workspace, [(2, 5)]) == [(2, 5)]


def test_two_worker_processes_give_the_serial_store(tmp_path, queries, reference):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            workspace = build(tmp_path / "ws.zarr", queries, client=client, partition_size=3)
    assert_same_content(store_content(workspace), reference)


def test_append_keeps_ids_and_equals_one_run(tmp_path, queries, reference):
    workspace = build(tmp_path / "ws.zarr", queries[:5], partition_size=2, buckets=2)
    before = store_content(workspace)
    read_into_workspace(queries[5:], workspace, progress=False)
    extract_workspace(workspace, max_heavy_atoms=4, client=SERIAL, progress=False, buckets=5)
    after = store_content(workspace)
    n_amons = len(before["amons/key"])
    np.testing.assert_array_equal(after["amons/key"][:n_amons], before["amons/key"])
    assert_same_content(after, reference)
    # Repeating changes nothing.
    report = extract_workspace(workspace, max_heavy_atoms=4, client=SERIAL, progress=False)
    assert report.queries_extracted == 0
    assert_same_content(store_content(workspace), reference)


def test_amon_size_is_a_defining_parameter(tmp_path, queries):
    from amondask.errors import WorkspaceParameterError

    workspace = build(tmp_path / "ws.zarr", queries[:2])
    with pytest.raises(WorkspaceParameterError, match="max_heavy_atoms=4"):
        extract_workspace(workspace, max_heavy_atoms=5, client=SERIAL, progress=False)


class Interrupt(Exception):
    pass


def _fail_on_call(monkeypatch, owner, name, call_number):
    original = getattr(owner, name)
    calls = Counter()

    def wrapper(*args, **kwargs):
        calls[name] += 1
        if calls[name] == call_number:
            raise Interrupt(f"{name} call {call_number}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize(
    "target,call",
    [
        ("_extract_part", 3),  # some partitions written, the rest not
        ("_merge_bucket", 2),  # some buckets merged
        ("append_molecules", 2),  # conformers half appended by the client
        ("_resolve_links", 2),
        ("append", 3),  # query_amons half appended by the client
    ],
)
def test_interrupted_run_resumes_to_the_same_store(
    tmp_path, monkeypatch, queries, reference, target, call
):
    from amondask.store.table import RaggedMoleculeTable, Table

    monkeypatch.setattr(extract_module, "APPEND_BATCH", 7)
    workspace = Workspace(tmp_path / "ws.zarr")
    read_into_workspace(queries, workspace, progress=False)
    with monkeypatch.context() as patch:
        owner = {"append_molecules": RaggedMoleculeTable, "append": Table}.get(
            target, extract_module
        )
        _fail_on_call(patch, owner, target, call)
        with pytest.raises(Interrupt):
            extract_workspace(
                workspace,
                max_heavy_atoms=4,
                client=SERIAL,
                progress=False,
                partition_size=3,
                buckets=3,
            )
    report = extract_workspace(
        Workspace(tmp_path / "ws.zarr"), max_heavy_atoms=4, client=SERIAL, progress=False
    )
    assert report.queries_extracted == len(queries)
    assert_same_content(store_content(Workspace(tmp_path / "ws.zarr")), reference)
    assert not Workspace(tmp_path / "ws.zarr").has("staging_extract")


def test_bad_queries_become_error_rows(tmp_path, queries):
    workspace = Workspace(tmp_path / "ws.zarr")
    with dask.config.set({"amondask.read.allow-radicals": True}):
        mixed = read_molecules([("CCO", "ethanol"), ("C[CH2]", "ethyl"), ("CC=O", "acetaldehyde")])
    assert len(mixed.molecules) == 3
    read_into_workspace(mixed.molecules, workspace, progress=False, geometry=True)
    report = extract_workspace(workspace, max_heavy_atoms=3, client=SERIAL, progress=False)
    assert report.errors == 1
    (error,) = workspace.error_records()
    assert (error.record_id, error.stage, error.error_type) == ("ethyl", "amons", "AmonError")
    assert "radical" in error.message
    matrix = workspace.amons.query_amon_matrix().toarray()
    assert matrix[1].sum() == 0 and matrix[0].sum() > 0 and matrix[2].sum() > 0
    keys = workspace.amons.amons.read_text("key")
    assert "CC=O" in keys and "CCO" in keys


KILL_SCRIPT = """
import os, signal, sys
from amondask.pipeline import extract_workspace, SERIAL
from amondask.pipeline import extract as module
from amondask.store import Workspace
from amondask.store.table import RaggedMoleculeTable, Table

target, call_number = sys.argv[2], int(sys.argv[3])
owner = {"append_molecules": RaggedMoleculeTable, "append": Table}.get(target, module)
original = getattr(owner, target)
calls = [0]

def killed_on_call(*args, **kwargs):
    calls[0] += 1
    if calls[0] == call_number:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

setattr(owner, target, killed_on_call)
module.APPEND_BATCH = 5
extract_workspace(Workspace(sys.argv[1]), max_heavy_atoms=4, client=SERIAL, progress=False,
                  partition_size=2, buckets=3)
"""


@pytest.mark.parametrize(
    "target,call", [("_extract_part", 4), ("append_molecules", 3), ("append", 4)]
)
def test_client_killed_with_sigkill_resumes(tmp_path, queries, reference, target, call):
    """SIGKILL of the process running the extraction, at a chosen point; then resume."""
    path = tmp_path / "ws.zarr"
    read_into_workspace(queries, Workspace(path), progress=False)
    process = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(path), target, str(call)])
    assert process.returncode == -signal.SIGKILL
    assert Workspace(path).has("staging_extract")  # it died mid-run
    extract_workspace(Workspace(path), max_heavy_atoms=4, client=SERIAL, progress=False)
    assert_same_content(store_content(Workspace(path)), reference)


def test_worker_killed_mid_run(tmp_path, queries, reference):
    """A worker process dies during extraction; its tasks are retried and the store is exact."""
    import threading

    from distributed import Client, LocalCluster

    path = tmp_path / "ws.zarr"
    read_into_workspace(queries, Workspace(path), progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            pids = list(client.run(os.getpid).values())

            killed_at = []

            def kill_one():
                time.sleep(1.5)
                os.kill(pids[0], signal.SIGKILL)
                killed_at.append(time.monotonic())

            killer = threading.Thread(target=kill_one)
            killer.start()
            extract_workspace(
                Workspace(path), max_heavy_atoms=4, client=client, progress=False, partition_size=1
            )
            finished_at = time.monotonic()
            killer.join()
            assert killed_at and killed_at[0] < finished_at  # the kill happened mid-run
            assert len(client.scheduler_info()["workers"]) == 2  # the nanny restarted it
    assert_same_content(store_content(Workspace(path)), reference)
