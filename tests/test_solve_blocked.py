"""Blocked Cholesky over dask arrays: equal to scipy's solve on threads and on 2 processes."""

from __future__ import annotations

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import zarr
from distributed import get_task_stream
from test_solve_problems import kernel_problem, reference_solution, relative_error

from amondask.errors import SolverError
from amondask.solve import dask_cholesky_solve
from amondask.solve.blocked import (
    as_square_tiles,
    balanced_tile_size,
    tiled_cholesky_solve_graph,
)


@pytest.fixture(scope="module")
def problem():
    return kernel_problem(900, rhs=2)


@pytest.fixture(scope="module")
def reference(problem):
    _, kernel, targets, regularization = problem
    return reference_solution(kernel, targets, regularization)


@pytest.fixture(scope="module")
def kernel_in_zarr(problem, tmp_path_factory):
    _, kernel, _, _ = problem
    path = tmp_path_factory.mktemp("solve") / "kernel.zarr"
    array = zarr.create_array(str(path), shape=kernel.shape, chunks=(256, 256), dtype="f8")
    array[...] = kernel
    return path


@pytest.mark.parametrize("algorithm", ["tiled", "dask"])
@pytest.mark.parametrize("tile_size", [128, 250, 1024])  # even, uneven last tile, one tile
def test_threaded_equals_scipy(problem, reference, algorithm, tile_size):
    _, kernel, targets, regularization = problem
    with dask.config.set(scheduler="threads"):
        result = dask_cholesky_solve(
            kernel, targets, regularization, tile_size=tile_size, algorithm=algorithm
        )
    assert result.method == "dask-cholesky"
    assert result.info["tiles"] == -(-900 // tile_size)
    assert relative_error(result.x, reference) < 1e-8
    assert result.residual < 1e-9


def test_tiled_reads_only_the_lower_triangle_of_tiles(problem, reference):
    _, kernel, targets, regularization = problem
    tile = np.arange(900) // 128
    upper_tiles = tile[:, None] < tile[None, :]
    poisoned = np.where(upper_tiles, np.nan, kernel)  # any read of an upper tile gives NaN
    result = dask_cholesky_solve(
        poisoned, targets, regularization, tile_size=128, compute_residual=False
    )
    assert relative_error(result.x, reference) < 1e-8


@pytest.mark.parametrize(
    ("tile_size", "tile_rows"), [(300, (300,) * 3), (250, (250,) * 3 + (150,))]
)
def test_graph_returns_row_tiles_of_the_solution(problem, reference, tile_size, tile_rows):
    _, kernel, targets, regularization = problem
    tiles = as_square_tiles(kernel, tile_size)
    solution = tiled_cholesky_solve_graph(tiles, targets, regularization)
    assert solution.shape == targets.shape
    assert solution.chunks == (tile_rows, (2,))
    with dask.config.set(scheduler="threads"):
        assert relative_error(solution.compute(), reference) < 1e-8


@pytest.mark.parametrize(
    ("n", "tile_size", "expected"), [(16000, 4096, 4000), (900, 250, 225), (900, 1024, 900)]
)
def test_balanced_tile_size(n, tile_size, expected):
    assert balanced_tile_size(n, tile_size) == expected


def test_one_right_hand_side_keeps_its_shape(problem, reference):
    _, kernel, targets, regularization = problem
    result = dask_cholesky_solve(kernel, targets[:, 0], regularization, tile_size=256)
    assert result.x.shape == (900,)
    assert relative_error(result.x, reference[:, 0]) < 1e-8


def test_tiles_from_zarr(problem, reference, kernel_in_zarr):
    _, _, targets, regularization = problem
    stored = da.from_zarr(str(kernel_in_zarr))
    result = dask_cholesky_solve(stored, targets, regularization, tile_size=256)
    assert relative_error(result.x, reference) < 1e-8


def test_not_positive_definite_says_what_to_do():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((200, 200))
    with pytest.raises(SolverError, match="method='scipy'"):
        dask_cholesky_solve(matrix + matrix.T, np.ones(200), 0.0, tile_size=64)


def test_unknown_algorithm():
    with pytest.raises(SolverError, match="tiled"):
        dask_cholesky_solve(np.eye(4), np.ones(4), 1.0, algorithm="magic")


@pytest.fixture(scope="module")
def process_client():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("algorithm", ["tiled", "dask"])
def test_two_worker_processes_equal_scipy(
    process_client, problem, reference, kernel_in_zarr, algorithm
):
    _, _, targets, regularization = problem
    stored = da.from_zarr(str(kernel_in_zarr))  # the workers read the tiles themselves
    with get_task_stream(process_client) as task_stream:
        result = dask_cholesky_solve(
            stored, targets, regularization, tile_size=256, algorithm=algorithm
        )
    assert result.info["scheduler"] == "distributed"
    assert relative_error(result.x, reference) < 1e-8
    assert len({task["worker"] for task in task_stream.data}) == 2  # both workers took part
