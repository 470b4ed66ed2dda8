"""In-memory Cholesky solve: values against scipy's LU solve, fallbacks, the BLAS guard."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from test_solve_problems import kernel_problem, reference_solution, relative_error
from threadpoolctl import threadpool_info

from amondask.errors import SolverError, SolverWarning
from amondask.solve import blas_thread_guard, cholesky_solve


@pytest.fixture(scope="module")
def problem():
    return kernel_problem(700, rhs=3)


def test_matches_lu_solve_for_several_right_hand_sides(problem):
    _, kernel, targets, regularization = problem
    kernel_before = kernel.copy()
    result = cholesky_solve(kernel, targets, regularization)
    assert result.method == "scipy" and result.info["fallback"] is None
    assert result.x.shape == targets.shape
    assert relative_error(result.x, reference_solution(kernel, targets, regularization)) < 1e-8
    assert result.residual < 1e-9
    np.testing.assert_array_equal(kernel, kernel_before)  # K untouched


def test_one_right_hand_side_keeps_its_shape(problem):
    _, kernel, targets, regularization = problem
    result = cholesky_solve(kernel, targets[:, 0], regularization)
    assert result.x.shape == (kernel.shape[0],)
    expected = reference_solution(kernel, targets[:, 0], regularization)
    assert relative_error(result.x, expected) < 1e-8


@pytest.mark.parametrize("order", ["C", "F"])
def test_overwrite_factors_in_place_with_the_same_answer(problem, order):
    _, kernel, targets, regularization = problem
    expected = cholesky_solve(kernel, targets, regularization).x
    scratch = np.array(kernel, order=order)
    result = cholesky_solve(scratch, targets, regularization, overwrite_kernel=True)
    # the same factorization up to rounding (BLAS may block a Fortran-ordered buffer
    # differently; this K's condition number amplifies that to ~1e-8 in single entries)
    assert relative_error(result.x, expected) < 1e-10
    assert not np.array_equal(scratch, kernel)  # the buffer was used for the factor


def _slightly_indefinite(n: int = 300, rank: int = 40, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((n, rank))
    low_rank = basis @ basis.T
    # smallest eigenvalue -1e-9 * mean diagonal: Cholesky must fail, a small jitter cures it
    return low_rank - 1e-9 * np.mean(np.diag(low_rank)) * np.eye(n)


@pytest.mark.parametrize("overwrite", [False, True])
def test_jitter_fallback_warns_and_solves_the_jittered_system(overwrite):
    kernel = _slightly_indefinite()
    targets = np.random.default_rng(2).standard_normal(kernel.shape[0])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(kernel)
    scratch = kernel.copy()
    with pytest.warns(SolverWarning, match="jitter"):
        result = cholesky_solve(scratch, targets, 0.0, overwrite_kernel=overwrite)
    jitter = result.info["jitter"]
    assert result.info["fallback"] == "jitter" and jitter > 0
    # the first jitter 1e-10 x mean diagonal is too small, the second (1e-8 x) suffices
    assert jitter == pytest.approx(1e-8 * np.mean(np.diag(kernel)))
    expected = reference_solution(kernel, targets, jitter)
    assert relative_error(result.x, expected) < 1e-6


@pytest.mark.parametrize("overwrite", [False, True])
def test_least_squares_fallback_warns_and_equals_lstsq(overwrite):
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((200, 200))
    kernel = matrix + matrix.T  # strongly indefinite: no small jitter helps
    targets = rng.standard_normal((200, 2))
    scratch = kernel.copy()
    with pytest.warns(SolverWarning, match="least-squares"):
        result = cholesky_solve(scratch, targets, 0.5, overwrite_kernel=overwrite)
    assert result.info["fallback"] == "lstsq"
    expected = scipy.linalg.lstsq(kernel + 0.5 * np.eye(200), targets)[0]
    assert relative_error(result.x, expected) < 1e-8


def test_no_warning_on_a_healthy_system(problem):
    _, kernel, targets, regularization = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cholesky_solve(kernel, targets, regularization)


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_guard_limits_threads_above_the_threshold_only():
    assert _blas_threads(), "threadpoolctl sees no BLAS library"
    outside = _blas_threads()
    with blas_thread_guard(n=20000, threshold=12000):
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == outside
    with blas_thread_guard(n=100, threshold=12000):
        assert _blas_threads() == outside


def test_bad_input_says_what_to_pass():
    with pytest.raises(SolverError, match="square"):
        cholesky_solve(np.ones((3, 4)), np.ones(3), 1.0)
    with pytest.raises(SolverError, match=r"\(n,\) or \(n, k\)"):
        cholesky_solve(np.eye(3), np.ones(4), 1.0)
    with pytest.raises(SolverError, match="lambda"):
        cholesky_solve(np.eye(3), np.ones(3), -1.0)
