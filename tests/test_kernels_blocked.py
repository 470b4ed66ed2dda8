"""Blocked / out-of-core kernels: equal to the in-memory kernel for every block size and number
of workers, resumable through the done-markers, memory bounded by the block."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr

import amondask.kernels.blocked as blocked
from amondask.errors import WorkspaceParameterError
from amondask.kernels import (
    append_element_blocks,
    compute_block,
    element_sigmas,
    kernel_dask_array,
    kernel_progress,
    local_kernel,
    open_element_blocks,
    suggested_block_size,
    write_element_blocks,
    write_kernel,
)
from amondask.represent import element_blocks, slatm_mbtypes

sys.path.insert(0, str(Path(__file__).parent))
from test_represent_slatm import qm9_sample  # noqa: E402

N_ROWS = 30


@pytest.fixture(scope="module")
def data():
    molecules = qm9_sample(16, 131)  # 48 molecules
    mbtypes = slatm_mbtypes([n for n, _ in molecules])
    rows = element_blocks(molecules[:N_ROWS], mbtypes)
    cols = element_blocks(molecules[N_ROWS:], mbtypes)
    sigma = element_sigmas(rows)
    return {
        "rows": rows,
        "cols": cols,
        "n_cols": len(molecules) - N_ROWS,
        "sigma": sigma,
        "K_rows": local_kernel(rows, sigma=sigma),
        "K_rows_cols": local_kernel(rows, cols, sigma=sigma),
        "K_laplacian": local_kernel(rows, cols, sigma=200.0, kernel="laplacian"),
    }


@pytest.fixture
def store(tmp_path, data):
    root = zarr.open_group(tmp_path / "workspace.zarr", mode="w")
    write_element_blocks(root.require_group("represent/rows"), data["rows"], n_molecules=N_ROWS,
                         chunk_rows=16)  # fmt: skip
    write_element_blocks(
        root.require_group("represent/cols"), data["cols"], n_molecules=data["n_cols"],
        chunk_rows=16,
    )  # fmt: skip
    return root


def test_representation_round_trip(store, data):
    blocks, n_molecules = open_element_blocks(store["represent/rows"])
    assert n_molecules == N_ROWS
    for z, block in data["rows"].items():
        np.testing.assert_array_equal(blocks[z].x[...], block.x)
        np.testing.assert_array_equal(blocks[z].molecule_index[...], block.molecule_index)
    with pytest.raises(WorkspaceParameterError, match="write_element_blocks"):
        open_element_blocks(store.require_group("empty"))


@pytest.mark.parametrize("block_size", [3, 7, 64])
def test_symmetric_kernel_independent_of_block_size(store, data, block_size):
    out = store.require_group("kernels/test")
    k_array = write_kernel(
        store["represent/rows"], None, out, sigma=data["sigma"], block_size=block_size,
        atom_chunk=9, scheduler="threads",
    )  # fmt: skip
    assert k_array.chunks == (block_size, block_size) and k_array.shards is None
    got = k_array[...]
    np.testing.assert_allclose(got, data["K_rows"], rtol=1e-12)
    np.testing.assert_array_equal(got, got.T)
    assert kernel_progress(out) == 1.0
    assert k_array.attrs["symmetric"] is True and k_array.attrs["block_size"] == block_size


@pytest.mark.parametrize("block_size", [5, 13])
def test_rectangular_kernel(store, data, block_size):
    out = store.require_group("kernels/test")
    k_array = write_kernel(
        store["represent/rows"], store["represent/cols"], out, sigma=data["sigma"],
        block_size=block_size, atom_chunk=11, scheduler="sync",
    )  # fmt: skip
    assert k_array.shape == (N_ROWS, data["n_cols"])
    np.testing.assert_allclose(k_array[...], data["K_rows_cols"], rtol=1e-12)
    laplacian = write_kernel(
        store["represent/rows"], store["represent/cols"], out, name="L", sigma=200.0,
        kernel="laplacian", block_size=block_size, scheduler="sync",
    )  # fmt: skip
    np.testing.assert_allclose(laplacian[...], data["K_laplacian"], rtol=1e-12)


@pytest.mark.parametrize("column_cache_bytes", [0, 2**30])
def test_column_cache_does_not_change_values(store, data, column_cache_bytes):
    for cols in (None, store["represent/cols"]):
        lazy = kernel_dask_array(
            store["represent/rows"], cols, sigma=data["sigma"], block_size=12, atom_chunk=7,
            column_cache_bytes=column_cache_bytes,
        )  # fmt: skip
        expected = data["K_rows"] if cols is None else data["K_rows_cols"]
        np.testing.assert_allclose(lazy.compute(scheduler="sync"), expected, rtol=1e-12)


def test_dask_array_streams_blocks(store, data):
    lazy = kernel_dask_array(store["represent/rows"], sigma=data["sigma"], block_size=8)
    assert lazy.chunks == ((8, 8, 8, 6), (8, 8, 8, 6))
    np.testing.assert_allclose(lazy.compute(scheduler="threads"), data["K_rows"], rtol=1e-12)
    # lower blocks are transposes of the upper ones: 4 * 5 / 2 computed blocks
    computed = [k for k in dict(lazy.dask) if "transpose" not in str(dict(lazy.dask)[k])]
    assert len([k for k in computed if isinstance(k, tuple)]) == 10
    in_memory = kernel_dask_array(
        data["rows"], data["cols"], sigma=data["sigma"], block_size=6,
        n_row_molecules=N_ROWS, n_col_molecules=data["n_cols"],
    )  # fmt: skip
    np.testing.assert_allclose(in_memory.compute(), data["K_rows_cols"], rtol=1e-12)


def test_rerun_skips_finished_blocks_and_resumes(store, data, monkeypatch):
    out = store.require_group("kernels/resume")
    calls = []
    original = blocked.compute_block

    def counting(*args, **kwargs):
        calls.append(args[4:6])
        return original(*args, **kwargs)

    monkeypatch.setattr(blocked, "compute_block", counting)
    arguments = dict(sigma=data["sigma"], block_size=6, atom_chunk=8, scheduler="sync")
    k_array = write_kernel(store["represent/rows"], None, out, **arguments)
    assert len(calls) == 5 * 6 // 2  # upper triangle incl. diagonal of 5 x 5 blocks
    calls.clear()
    write_kernel(store["represent/rows"], None, out, **arguments)
    assert calls == []  # everything was done
    # simulate a killed run: two blocks lost (data and markers), the rest finished
    done = out["K_done"]
    k_array[0:6, 12:18] = 0.0
    k_array[12:18, 0:6] = 0.0
    k_array[24:30, 24:30] = 0.0
    done[0, 2] = done[2, 0] = done[4, 4] = 0
    assert kernel_progress(out) == pytest.approx(22 / 25)
    write_kernel(store["represent/rows"], None, out, **arguments)
    assert sorted(calls) == [((0, 6), (12, 18)), ((24, 30), (24, 30))]
    np.testing.assert_allclose(out["K"][...], data["K_rows"], rtol=1e-12)


def test_parameter_mismatch_is_an_error(store, data):
    out = store.require_group("kernels/mismatch")
    write_kernel(store["represent/rows"], None, out, sigma=2.0, block_size=10, scheduler="sync")
    with pytest.raises(WorkspaceParameterError, match="overwrite=True"):
        write_kernel(store["represent/rows"], None, out, sigma=3.0, block_size=10)
    with pytest.raises(WorkspaceParameterError, match="overwrite=True"):
        write_kernel(store["represent/rows"], None, out, sigma=2.0, block_size=12)
    rebuilt = write_kernel(
        store["represent/rows"], None, out, sigma=data["sigma"], block_size=12, overwrite=True,
        scheduler="sync",
    )  # fmt: skip
    np.testing.assert_allclose(rebuilt[...], data["K_rows"], rtol=1e-12)


def test_feature_mismatch_is_an_error(store, data):
    narrow = {z: type(b)(b.x[:, :-3], b.molecule_index) for z, b in data["cols"].items()}
    with pytest.raises(WorkspaceParameterError, match="same mbtypes"):
        kernel_dask_array(
            store["represent/rows"], narrow, sigma=1.0, n_col_molecules=data["n_cols"]
        )


def test_task_memory_is_bounded_by_block_not_by_data(store, data):
    """A block task allocates O(block + atom_chunk), not the whole representation."""
    rows, _ = open_element_blocks(store["represent/rows"])
    plan = blocked._Plan(rows, None, N_ROWS, N_ROWS, 5)
    args = plan.block_arguments(1, 3)
    d_max = max(b.x.shape[1] for b in data["rows"].values())
    atom_chunk = 8
    total_bytes = sum(b.x.nbytes for b in data["rows"].values())
    tracemalloc.start()
    compute_block(*args, sigma=data["sigma"], kernel="gaussian", atom_chunk=atom_chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bound = 8 * (2 * 5**2 + atom_chunk**2 + 2 * atom_chunk * d_max)
    assert peak < 2 * bound + 2**20  # + 1 MiB for zarr / Python overhead
    assert peak < total_bytes / 4


def test_suggested_block_size():
    b = suggested_block_size(2 * 2**30, atom_chunk=4096, max_features=3000)
    used = 8 * (2 * b**2 + 4096**2 + 2 * 4096 * 3000)
    assert used <= 2 * 2**30 < 8 * (2 * (b + 1) ** 2 + 4096**2 + 2 * 4096 * 3000)
    with pytest.raises(ValueError, match="lower atom_chunk"):
        suggested_block_size(2**20, atom_chunk=4096, max_features=3000)


def test_two_worker_processes_match_one_thread(store, data):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        assert len(client.scheduler_info()["workers"]) == 2
        out = store.require_group("kernels/cluster")
        with distributed.get_task_stream(client) as task_stream:
            k_array = write_kernel(
                store["represent/rows"], store["represent/cols"], out, sigma=data["sigma"],
                block_size=4, atom_chunk=10,
            )  # fmt: skip
        assert len({task["worker"] for task in task_stream.data}) == 2  # both processes worked
        symmetric = write_kernel(
            store["represent/rows"], None, out, name="S", sigma=data["sigma"], block_size=7
        )
        lazy = kernel_dask_array(store["represent/rows"], sigma=data["sigma"], block_size=9)
        streamed = lazy.compute()
    with dask.config.set(scheduler="sync"):
        serial = write_kernel(
            store["represent/rows"], store["represent/cols"], store.require_group("serial"),
            sigma=data["sigma"], block_size=4, atom_chunk=10,
        )  # fmt: skip
    np.testing.assert_array_equal(k_array[...], serial[...])
    np.testing.assert_allclose(k_array[...], data["K_rows_cols"], rtol=1e-12)
    np.testing.assert_allclose(symmetric[...], data["K_rows"], rtol=1e-12)
    np.testing.assert_allclose(streamed, data["K_rows"], rtol=1e-12)


def test_append_partitions_equals_one_write(tmp_path, data):
    molecules = qm9_sample(16, 131)[:N_ROWS]
    mbtypes = slatm_mbtypes([n for n, _ in qm9_sample(16, 131)])
    root = zarr.open_group(tmp_path / "append.zarr", mode="w")
    group = root.require_group("rows")
    for start in range(0, N_ROWS, 11):
        part = element_blocks(molecules[start : start + 11], mbtypes, first_molecule_index=start)
        append_element_blocks(
            group, part, n_molecules=min(start + 11, N_ROWS), chunk_rows=8,
            attributes={"mbtypes": mbtypes},
        )  # fmt: skip
    blocks, n_molecules = open_element_blocks(group)
    assert n_molecules == N_ROWS and group.attrs["mbtypes"] == mbtypes
    for z, block in data["rows"].items():
        np.testing.assert_array_equal(blocks[z].x[...], block.x)
        np.testing.assert_array_equal(blocks[z].molecule_index[...], block.molecule_index)
    k_array = write_kernel(group, None, root.require_group("k"), sigma=data["sigma"], block_size=8)
    np.testing.assert_allclose(k_array[...], data["K_rows"], rtol=1e-12)
    narrow = {z: type(b)(b.x[:, :-1], b.molecule_index + N_ROWS) for z, b in data["cols"].items()}
    with pytest.raises(WorkspaceParameterError, match="features"):
        append_element_blocks(group, narrow, n_molecules=N_ROWS + data["n_cols"])
