"""solve(): the automatic choice does what amondask.solve.choose documents; results are right."""

from __future__ import annotations

import dask.array as da
import distributed
import numpy as np
import pytest
import zarr
from test_solve_problems import kernel_problem, reference_solution, relative_error

from amondask.errors import SolverError
from amondask.solve import FunctionBlockProvider, choose_method, solve
from amondask.solve.choose import cluster_memory_bytes

GIB = 2**30


@pytest.fixture(scope="module")
def problem():
    return kernel_problem(600, rhs=2)


@pytest.fixture(scope="module")
def reference(problem):
    _, kernel, targets, regularization = problem
    return reference_solution(kernel, targets, regularization)


# n = 20000: K is 8 * 20000^2 bytes = 2.98 GiB
K_GIB = 8 * 20000**2 / GIB


@pytest.mark.parametrize(
    ("kind", "memory_gib", "cluster_gib", "expected"),
    [
        ("numpy", 2 * K_GIB / 0.6 + 0.01, None, "scipy"),  # K + factor fit in 0.6 x memory
        ("numpy", 2 * K_GIB / 0.6 - 0.01, None, "pcg"),  # just does not fit, no cluster
        ("zarr", 1 * K_GIB / 0.6 + 0.01, None, "scipy"),  # loaded K is factored in place
        ("dask", 1 * K_GIB / 0.6 - 0.01, None, "pcg"),
        ("numpy", 1.0, 2 * K_GIB / 0.6 + 0.01, "dask-cholesky"),  # cluster holds K tiles + L
        ("numpy", 1.0, 2 * K_GIB / 0.6 - 0.01, "pcg"),
        ("operator", 1000.0, 1000.0, "pcg"),  # nothing to factor
    ],
)
def test_choose_method_follows_the_documented_rule(kind, memory_gib, cluster_gib, expected):
    method, reason = choose_method(
        20000,
        kind,
        memory_limit=int(memory_gib * GIB),
        cluster_memory=None if cluster_gib is None else int(cluster_gib * GIB),
        memory_fraction=0.6,
        direct_max_n=60000,
    )
    assert method == expected, reason
    assert reason


def test_above_direct_max_n_is_pcg_even_with_plenty_of_memory():
    method, reason = choose_method(70000, "numpy", memory_limit=10**15, direct_max_n=60000)
    assert method == "pcg" and "direct-max-n" in reason


def test_auto_small_numpy_problem_uses_scipy(problem, reference):
    _, kernel, targets, regularization = problem
    result = solve(kernel, targets, regularization)
    assert result.method == "scipy" and "available" in result.info["choice"]
    assert relative_error(result.x, reference) < 1e-8


def test_auto_with_a_tiny_memory_limit_streams_with_pcg(problem, reference):
    _, kernel, targets, regularization = problem
    result = solve(kernel, targets, regularization, memory_limit=2**20, tolerance=1e-9)
    assert result.method == "pcg" and result.converged
    assert relative_error(result.x, reference) < 1e-6


def test_auto_with_a_block_provider_is_pcg(problem, reference):
    points, _, targets, regularization = problem
    from test_solve_problems import gaussian_kernel

    provider = FunctionBlockProvider(
        lambda rows, columns: gaussian_kernel(points[rows], points[columns], 0.4), 600
    )
    result = solve(provider, targets, regularization, tolerance=1e-9)
    assert result.method == "pcg"
    assert relative_error(result.x, reference) < 1e-6
    with pytest.raises(SolverError, match="method='pcg'"):
        solve(provider, targets, regularization, method="scipy")


def test_zarr_input_loaded_and_factored_in_place(problem, reference):
    _, kernel, targets, regularization = problem
    stored = zarr.create_array(zarr.storage.MemoryStore(), shape=(600, 600), dtype="f8")
    stored[...] = kernel
    result = solve(stored, targets, regularization)
    assert result.method == "scipy"
    assert relative_error(result.x, reference) < 1e-8
    assert result.residual < 1e-9  # computed by streaming K from the store
    np.testing.assert_array_equal(stored[...], kernel)  # the store is untouched


@pytest.mark.parametrize("method", ["scipy", "dask-cholesky", "pcg"])
def test_explicit_method_overrides_auto(problem, reference, method):
    _, kernel, targets, regularization = problem
    options = {"tolerance": 1e-9} if method == "pcg" else {}
    result = solve(da.from_array(kernel, chunks=200), targets, regularization, method, **options)
    assert result.method == method and result.info["choice"] == "asked for"
    assert relative_error(result.x, reference) < 1e-6


def test_unknown_method():
    with pytest.raises(SolverError, match="auto"):
        solve(np.eye(3), np.ones(3), 1.0, method="qr")


def test_auto_picks_dask_cholesky_on_a_cluster_when_local_memory_is_short(problem, reference):
    _, kernel, targets, regularization = problem
    assert cluster_memory_bytes() is None
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            memory_limit="1GiB",
        ) as cluster,
        distributed.Client(cluster),
    ):
        assert cluster_memory_bytes() == 2 * GIB
        result = solve(
            da.from_array(kernel, chunks=200),
            targets,
            regularization,
            memory_limit=2**20,
            tile_size=200,
        )
    assert result.method == "dask-cholesky" and "cluster memory" in result.info["choice"]
    assert relative_error(result.x, reference) < 1e-8
