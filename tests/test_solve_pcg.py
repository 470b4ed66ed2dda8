"""Matrix-free PCG: equal to scipy's solve, reaches its stated tolerance, streams K."""

from __future__ import annotations

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
import scipy.linalg
import zarr
from distributed import get_task_stream
from test_solve_problems import (
    gaussian_kernel,
    kernel_problem,
    reference_solution,
    relative_error,
)

from amondask import config
from amondask.errors import SolverError, SolverWarning
from amondask.solve import (
    ArrayBlockProvider,
    DaskArrayProvider,
    FunctionBlockProvider,
    nystrom_preconditioner,
    pcg_solve,
)
from amondask.solve.pcg import as_operator

N = 1500


@pytest.fixture(scope="module")
def problem():
    return kernel_problem(N, rhs=3)


@pytest.fixture(scope="module")
def reference(problem):
    _, kernel, targets, regularization = problem
    return reference_solution(kernel, targets, regularization)


def true_relative_residual(kernel, x, targets, regularization):
    residual = kernel @ x + regularization * x - targets
    return np.max(np.linalg.norm(residual, axis=0) / np.linalg.norm(targets, axis=0))


def test_equals_scipy_and_reaches_its_tolerance(problem, reference):
    _, kernel, targets, regularization = problem
    result = pcg_solve(kernel, targets, regularization, tolerance=1e-9, landmarks=300)
    assert result.method == "pcg" and result.converged
    assert result.info["tolerance"] == 1e-9
    assert true_relative_residual(kernel, result.x, targets, regularization) <= 1e-9
    assert result.residual == pytest.approx(
        true_relative_residual(kernel, result.x, targets, regularization), rel=1e-6
    )
    assert relative_error(result.x, reference) < 1e-6
    # the history starts at ||y|| / ||y|| = 1 and has one entry per iteration
    assert result.residual_history[0] == pytest.approx(1.0)
    assert len(result.residual_history) == result.iterations + 1
    assert 0 < result.iterations < 200


@pytest.mark.parametrize("tolerance", [1e-3, 1e-6])
def test_looser_tolerances_are_met_with_fewer_iterations(problem, tolerance):
    _, kernel, targets, regularization = problem
    result = pcg_solve(kernel, targets, regularization, tolerance=tolerance, landmarks=300)
    tight = pcg_solve(kernel, targets, regularization, tolerance=1e-9, landmarks=300)
    assert true_relative_residual(kernel, result.x, targets, regularization) <= tolerance
    assert result.iterations < tight.iterations


def test_nystrom_preconditioner_cuts_iterations_and_conditioning(problem):
    _, kernel, targets, regularization = problem
    with pytest.warns(SolverWarning, match="Nystrom landmarks"):
        plain = pcg_solve(
            kernel,
            targets[:, 0],
            regularization,
            tolerance=1e-6,
            preconditioner=None,
            max_iterations=150,
        )
    assert not plain.converged and plain.residual > 1e-6
    preconditioned = pcg_solve(kernel, targets[:, 0], regularization, tolerance=1e-6)
    assert preconditioned.converged and preconditioned.iterations < 50

    preconditioner = nystrom_preconditioner(as_operator(kernel), regularization, landmarks=300)
    inverse = preconditioner.apply(np.eye(N))
    np.testing.assert_allclose(inverse, inverse.T, atol=1e-10)
    root = scipy.linalg.sqrtm(inverse).real
    system = kernel + regularization * np.eye(N)
    eigenvalues = np.linalg.eigvalsh(root @ system @ root)
    original = np.linalg.eigvalsh(system)
    assert eigenvalues[0] > 0
    assert eigenvalues[-1] / eigenvalues[0] < 1e-2 * original[-1] / original[0]


def test_prebuilt_preconditioner_is_reused(problem, reference):
    _, kernel, targets, regularization = problem
    preconditioner = nystrom_preconditioner(as_operator(kernel), regularization, landmarks=300)
    result = pcg_solve(
        kernel, targets, regularization, tolerance=1e-9, preconditioner=preconditioner
    )
    assert result.info["landmarks"] == 300
    assert relative_error(result.x, reference) < 1e-6


def test_streams_row_blocks_from_zarr_and_never_reads_all_of_k(problem, reference, tmp_path):
    _, kernel, targets, regularization = problem
    stored = zarr.create_array(
        str(tmp_path / "k.zarr"), shape=kernel.shape, chunks=(100, N), dtype="f8"
    )
    stored[...] = kernel

    largest_read = []

    class CountingArray:
        shape = stored.shape
        chunks = stored.chunks

        def __getitem__(self, index):
            block = stored[index]
            largest_read.append(block.size)
            return block

    provider = ArrayBlockProvider(
        CountingArray(), block_mib=0.5
    )  # 0.5 MiB: 43 rows (< one chunk: kept)
    assert provider.block_rows < N
    result = pcg_solve(provider, targets, regularization, tolerance=1e-9, landmarks=300)
    assert relative_error(result.x, reference) < 1e-6
    assert max(largest_read) <= provider.block_rows * N < kernel.size


def test_block_rows_follow_the_memory_budget_and_zarr_chunks():
    array = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(1000, 1000), chunks=(30, 1000), dtype="f8"
    )
    provider = ArrayBlockProvider(array, block_mib=1.0)  # 2**20 / 8000 = 131 rows -> 120
    assert provider.block_rows == 120


@pytest.mark.parametrize("lower_only", [True, False])
@pytest.mark.parametrize("provider_type", ["array", "function", "function-dask"])
def test_providers_give_exact_products_and_columns(problem, lower_only, provider_type):
    points, kernel, _, _ = problem
    rows_per_block = 148  # 1.7 MiB / (8 * 1500 bytes per row)
    if lower_only:  # the blocks right of the diagonal blocks must never be read
        block_stop = (np.arange(N) // rows_per_block + 1) * rows_per_block
        source = np.where(np.arange(N)[None, :] >= block_stop[:, None], np.nan, kernel)
    else:
        source = kernel
    if provider_type == "array":
        provider = ArrayBlockProvider(source, block_mib=1.7, lower_only=lower_only)
    else:
        provider = FunctionBlockProvider(
            lambda rows, columns: (
                source[rows][:, columns] if lower_only else kernel[rows][:, columns]
            ),
            N,
            block_mib=1.7,
            lower_only=lower_only,
            use_dask=provider_type == "function-dask",
        )
    assert provider.block_rows == rows_per_block and N % rows_per_block != 0  # uneven last
    vectors = np.random.default_rng(5).standard_normal((N, 3))
    with dask.config.set(scheduler="threads"):
        product = provider.matvec(vectors)
    np.testing.assert_allclose(product, kernel @ vectors, rtol=1e-12, atol=1e-10)
    if provider_type == "array":  # (a function provider is asked for the columns directly)
        landmarks = np.array([0, 7, 148, 149, 150, 700, N - 1])
        # equal up to rounding: the test kernel (a GEMM) is symmetric only to ~1e-15, and a
        # provider may read a column as the matching row
        np.testing.assert_allclose(
            provider.columns(landmarks), kernel[:, landmarks], rtol=0, atol=1e-13
        )


def test_function_provider_recomputes_blocks(problem, reference):
    points, kernel, targets, regularization = problem
    calls = []

    def compute_block(rows, columns):
        calls.append((rows, columns))
        return gaussian_kernel(points[rows], points[columns], 0.4)

    provider = FunctionBlockProvider(compute_block, N, block_mib=2.0)
    result = pcg_solve(provider, targets, regularization, tolerance=1e-9, landmarks=300)
    assert relative_error(result.x, reference) < 1e-6
    blocks_per_pass = -(-N // provider.block_rows)
    assert blocks_per_pass > 1
    # set-up pass + CG passes + one true-residual check per (re)start, block by block
    passes = 1 + result.iterations + 1 + result.info["restarts"]
    assert len(calls) == passes * blocks_per_pass


def test_matvec_callable_needs_n(problem, reference):
    _, kernel, targets, regularization = problem
    result = pcg_solve(
        lambda vectors: kernel @ vectors, targets, regularization, n=N, tolerance=1e-9
    )
    assert relative_error(result.x, reference) < 1e-6
    with pytest.raises(SolverError, match="pass n"):
        pcg_solve(lambda vectors: kernel @ vectors, targets, regularization)


def test_one_right_hand_side_and_initial_guess(problem, reference):
    _, kernel, targets, regularization = problem
    cold = pcg_solve(kernel, targets[:, 1], regularization, tolerance=1e-9)
    assert cold.x.shape == (N,)
    assert relative_error(cold.x, reference[:, 1]) < 1e-6
    warm = pcg_solve(
        kernel, targets[:, 1], regularization, tolerance=1e-9, initial_guess=reference[:, 1]
    )
    assert warm.iterations < cold.iterations


def test_zero_right_hand_side_column_is_solved_by_zero(problem):
    _, kernel, targets, regularization = problem
    with_zero = targets.copy()
    with_zero[:, 0] = 0.0
    result = pcg_solve(kernel, with_zero, regularization, tolerance=1e-8)
    assert np.all(result.x[:, 0] == 0.0)


def test_needs_positive_lambda():
    with pytest.raises(SolverError, match="lambda > 0"):
        pcg_solve(np.eye(3), np.ones(3), 0.0)


def test_dask_array_threaded(problem, reference):
    _, kernel, targets, regularization = problem
    with dask.config.set(scheduler="threads"):
        result = pcg_solve(
            da.from_array(kernel, chunks=500), targets, regularization, tolerance=1e-9
        )
    assert result.info["operator"] == "DaskArrayProvider"
    assert relative_error(result.x, reference) < 1e-6


@pytest.fixture(scope="module")
def process_client():
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _kernel_block(points, rows, columns):
    return gaussian_kernel(points[rows], points[columns], 0.4)


def test_two_worker_processes_zarr_and_recomputed(process_client, problem, reference, tmp_path):
    points, kernel, targets, regularization = problem
    path = str(tmp_path / "k.zarr")
    stored = zarr.create_array(path, shape=kernel.shape, chunks=(500, 500), dtype="f8")
    stored[...] = kernel
    with get_task_stream(process_client) as task_stream:
        from_zarr = pcg_solve(
            DaskArrayProvider(da.from_zarr(path)), targets, regularization, tolerance=1e-9
        )
    assert len({task["worker"] for task in task_stream.data}) == 2
    assert relative_error(from_zarr.x, reference) < 1e-6

    import functools

    compute_block = functools.partial(_kernel_block, points)
    provider = FunctionBlockProvider(compute_block, N, block_mib=2.0, use_dask=True)
    with get_task_stream(process_client) as task_stream:
        recomputed = pcg_solve(provider, targets, regularization, tolerance=1e-9)
    assert len({task["worker"] for task in task_stream.data}) == 2
    assert relative_error(recomputed.x, reference) < 1e-6


def test_unreachable_tolerance_stops_at_the_rounding_floor_and_says_so():
    _, kernel, targets, regularization = kernel_problem(1000, rhs=1, condition=1e10)
    direct = reference_solution(kernel, targets, regularization)
    floor = true_relative_residual(kernel, direct[:, None], targets[:, None], regularization)
    with pytest.warns(SolverWarning, match="attainable accuracy"):
        result = pcg_solve(kernel, targets, regularization, tolerance=1e-14, landmarks=300)
    assert result.info["stagnated"] and not result.converged
    assert result.iterations < 1000  # stopped, did not run to the cap
    assert result.residual < 10 * floor  # as accurate as the direct solve


DEFAULT_TOLERANCE = 1e-6


def test_default_tolerance_gives_scipys_solution_and_predictions(problem, reference):
    """At the default tolerance (1e-6) PCG's solution is scipy's to 1e-6 relative and its
    predictions are scipy's to 1e-5 relative, on the kernel-like problem (cond ~1e6) with too
    few landmarks (100 of 1500) for the preconditioner to be exact: ~30 iterations.

    Measured here: alpha 1e-7, fitted values 3e-6, new points 3e-6. The fitted values obey
    ||K (x - x_scipy)|| <= 2 tol ||y||: (K + lambda I)(x - x_scipy) is PCG's residual r (scipy's
    is ~1e-11), so K (x - x_scipy) = r - lambda (x - x_scipy) and lambda ||x - x_scipy|| <= ||r||.
    """
    points, kernel, targets, regularization = problem
    assert config.get("solve.pcg-tolerance") == DEFAULT_TOLERANCE
    result = pcg_solve(kernel, targets, regularization, landmarks=100)
    assert result.info["tolerance"] == DEFAULT_TOLERANCE and result.converged
    assert 5 < result.iterations < 200
    assert true_relative_residual(kernel, result.x, targets, regularization) <= DEFAULT_TOLERANCE
    assert relative_error(result.x, reference) < 1e-6

    difference = kernel @ (result.x - reference)
    for column in range(targets.shape[1]):
        bound = 2 * DEFAULT_TOLERANCE * np.linalg.norm(targets[:, column])
        assert np.linalg.norm(difference[:, column]) <= bound
    new_points = np.random.default_rng(7).uniform(size=(300, points.shape[1]))
    cross = gaussian_kernel(new_points, points, 0.4)  # the width of kernel_problem
    assert relative_error(cross @ result.x, cross @ reference) < 1e-5
