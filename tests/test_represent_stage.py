"""Representation and kernel stages over a workspace: values, partitioning, resume, workers."""

from __future__ import annotations

import numpy as np
import pytest

from amondask.kernels import local_kernel
from amondask.pipeline import SERIAL
from amondask.pipeline import represent as represent_module
from amondask.pipeline.extract import extract
from amondask.pipeline.kernel import kernel_workspace, open_kernel
from amondask.pipeline.represent import (
    ConcatenatedRows,
    open_representation,
    represent_workspace,
)
from amondask.represent import ElementBlock, element_blocks
from amondask.store import Workspace

QUERIES = ["CCO", "CC=O", "Oc1ccccc1", "CC(=O)N", "C#CC"]


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws.zarr")
    extract(QUERIES, ws, max_heavy_atoms=3, client=SERIAL, progress=False)
    return ws


def in_memory(blocks):
    return {
        z: ElementBlock(np.asarray(b.x), np.asarray(b.molecule_index)) for z, b in blocks.items()
    }


def reference_blocks(workspace, target):
    mbtypes = workspace.root["represent/aslatm"].attrs["mbtypes"]
    source = workspace.amons.conformers if target == "amons" else workspace.queries
    return element_blocks(source.molecules(), mbtypes, dgrid=(0.04, 0.04))


def test_concatenated_rows_slices_across_parts():
    parts = [
        np.arange(6).reshape(3, 2),
        np.arange(6, 8).reshape(1, 2),
        np.arange(8, 14).reshape(3, 2),
    ]
    view = ConcatenatedRows(parts, (2,), np.int64)
    whole = np.concatenate(parts)
    assert view.shape == (7, 2)
    for start in range(8):
        for stop in range(start, 9):
            np.testing.assert_array_equal(view[start:stop], whole[start:stop])
    np.testing.assert_array_equal(np.asarray(view), whole)


@pytest.mark.parametrize("partition_size", [1, 4, 1000])
def test_representation_equals_in_memory_aslatm(workspace, partition_size):
    for target in ("amons", "queries"):
        represent_workspace(
            workspace, target=target, client=SERIAL, progress=False, partition_size=partition_size
        )
        blocks, n = open_representation(workspace, target)
        reference = reference_blocks(workspace, target)
        source = workspace.amons.conformers if target == "amons" else workspace.queries
        assert n == source.n_rows
        assert sorted(blocks) == sorted(z for z in reference if len(reference[z].x))
        for z, block in blocks.items():
            np.testing.assert_array_equal(np.asarray(block.x), reference[z].x)
            np.testing.assert_array_equal(
                np.asarray(block.molecule_index), reference[z].molecule_index
            )


def test_interrupted_representation_resumes(workspace, monkeypatch):
    original = represent_module._represent_part
    calls = []

    def failing(*args):
        calls.append(args[2])
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return original(*args)

    monkeypatch.setattr(represent_module, "_represent_part", failing)
    with pytest.raises(RuntimeError):
        represent_workspace(workspace, client=SERIAL, progress=False, partition_size=2)
    monkeypatch.setattr(represent_module, "_represent_part", original)
    report = represent_workspace(workspace, client=SERIAL, progress=False, partition_size=2)
    assert report.new_rows == workspace.amons.conformers.n_rows - 4  # two parts were kept
    blocks, _ = open_representation(workspace, "amons")
    reference = reference_blocks(workspace, "amons")
    for z, block in blocks.items():
        np.testing.assert_array_equal(np.asarray(block.x), reference[z].x)


def test_new_queries_add_parts_and_the_basis_is_kept(workspace):
    represent_workspace(workspace, client=SERIAL, progress=False)
    n_before = workspace.amons.conformers.n_rows
    extract(["CCCO"], workspace, client=SERIAL, progress=False)
    report = represent_workspace(workspace, client=SERIAL, progress=False)
    assert report.new_rows == workspace.amons.conformers.n_rows - n_before > 0
    blocks, _ = open_representation(workspace, "amons")
    for z, block in blocks.items():
        np.testing.assert_array_equal(
            np.asarray(block.x), reference_blocks(workspace, "amons")[z].x
        )


def test_the_basis_is_qmllibs_rule_over_the_queries_with_their_counts(workspace):
    from amondask.represent import slatm_mbtypes

    represent_workspace(workspace, client=SERIAL, progress=False)
    stored = workspace.root["represent/aslatm"].attrs["mbtypes"]
    expected = slatm_mbtypes([m.numbers for m in workspace.queries.molecules()])
    assert sorted(map(tuple, stored)) == sorted(map(tuple, expected))
    # Phenol's six carbons and six hydrogens: the repeated-element angles are in the basis.
    for triple in ([6, 6, 6], [1, 6, 1], [6, 1, 6], [1, 1, 1], [8, 6, 6]):
        assert triple in stored or triple[::-1] in stored


def test_a_query_outside_the_basis_is_refused(workspace):
    from amondask.errors import WorkspaceError

    represent_workspace(workspace, client=SERIAL, progress=False)
    extract(["CCS"], workspace, client=SERIAL, progress=False)
    with pytest.raises(WorkspaceError, match="basis lacks"):
        represent_workspace(workspace, client=SERIAL, progress=False)


def test_kernels_equal_in_memory_local_kernel(workspace):
    for target in ("amons", "queries"):
        represent_workspace(workspace, target=target, client=SERIAL, progress=False)
    amons = kernel_workspace(workspace, cols="amons", client=SERIAL, block_size=5)
    queries = kernel_workspace(workspace, cols="queries", client=SERIAL, block_size=3)
    rows, n = open_representation(workspace, "amons")
    cols, n_q = open_representation(workspace, "queries")
    expected = local_kernel(in_memory(rows), None, sigma=amons.sigma, n_row_molecules=n)
    np.testing.assert_allclose(open_kernel(workspace)[:], expected, rtol=1e-12, atol=1e-12)
    expected_q = local_kernel(
        in_memory(rows), in_memory(cols), sigma=amons.sigma, n_row_molecules=n, n_col_molecules=n_q
    )
    np.testing.assert_allclose(
        open_kernel(workspace, "queries")[:], expected_q, rtol=1e-12, atol=1e-12
    )
    assert queries.sigma == amons.sigma
    # The authors' widths: the farthest pair of same-element atoms scores 0.5.
    for z, block in in_memory(rows).items():
        x = block.x
        far = max(np.linalg.norm(a - b) for a in x for b in x)
        assert np.exp(-(far**2) / (2 * amons.sigma[z] ** 2)) == pytest.approx(0.5, rel=1e-9)


def test_kernel_stage_on_two_worker_processes(workspace, capsys):
    from distributed import Client, LocalCluster

    represent_workspace(workspace, client=SERIAL, progress=False)
    serial = kernel_workspace(workspace, client=SERIAL, block_size=4)
    expected = open_kernel(workspace)[:]
    del workspace.root["kernels"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            represent_workspace(workspace, client=client, progress=False)
            capsys.readouterr()
            distributed = kernel_workspace(workspace, client=client, block_size=4, progress=True)
    # the progress bar counts the blocks the worker processes wrote
    blocks = workspace.root["kernels/amons-amons/K_done"].size
    assert blocks > 1
    assert f"{blocks}/{blocks}" in capsys.readouterr().err
    assert distributed.sigma == serial.sigma
    np.testing.assert_allclose(open_kernel(workspace)[:], expected, rtol=1e-13, atol=1e-13)


def test_blocks_progress_bar_counts_the_done_markers(capsys):
    import zarr

    from amondask.pipeline.kernel import blocks_progress_bar

    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    with blocks_progress_bar(group, "K", "kernel test", interval_s=0.01):
        markers = group.create_array("K_done", shape=(2, 3), dtype="uint8", fill_value=0)
        markers[0, :] = 1
        markers[1, 1] = 1
    err = capsys.readouterr().err
    assert "kernel test:  67%" in err and "4/6" in err
    with blocks_progress_bar(group, "K", "kernel off", enabled=False):
        pass
    assert "kernel off" not in capsys.readouterr().err


def test_queries_without_hydrogen_get_the_caps_types_and_old_bases_still_work(tmp_path):
    """Queries without any H (CO2 and N2 here; a crystal) have H-capped amons: the basis counts
    three H for each of them. A basis stored before that rule (without H) is still accepted,
    as it holds every type the queries themselves need."""
    from amondask.represent import slatm_mbtypes

    queries = ["O=C=O", "N#N"]
    ws = Workspace(tmp_path / "ws.zarr")
    extract(queries, ws, max_heavy_atoms=3, client=SERIAL, progress=False)
    stored = represent_module._basis(ws, {})
    with_caps = slatm_mbtypes([[6, 8, 8, 1, 1, 1], [7, 7, 1, 1, 1]])
    assert sorted(map(tuple, stored)) == sorted(map(tuple, with_caps))
    old_rule = slatm_mbtypes([m.numbers for m in ws.queries.molecules()])
    assert [1] not in old_rule and [1] in stored

    old = Workspace(tmp_path / "old.zarr")
    extract(queries, old, max_heavy_atoms=3, client=SERIAL, progress=False)
    group = old.root.require_group("represent/aslatm")
    group.attrs.update({"mbtypes": old_rule})  # as amondask stored it before
    assert represent_module._basis(old, {}) == [list(m) for m in old_rule]
