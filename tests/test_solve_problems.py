"""SPD test problems for amondask.solve that look like our kernels, and checks of them.

A Gaussian kernel on random points in [0, 1]^3 is numerically of low rank (its smallest
eigenvalues are ~1e-12 of its largest), so lambda sets the condition number of K + lambda I;
we choose lambda = lambda_max(K) / target_condition.
"""

from __future__ import annotations

import numpy as np

TARGET_CONDITION = 1e6


def gaussian_kernel(points_a: np.ndarray, points_b: np.ndarray, width: float) -> np.ndarray:
    """exp(-|a - b|^2 / (2 width^2)), shape (len(a), len(b))."""
    squared = (
        (points_a**2).sum(1)[:, None] + (points_b**2).sum(1)[None, :] - 2 * points_a @ points_b.T
    )
    return np.exp(-np.maximum(squared, 0.0) / (2 * width**2))


def kernel_problem(
    n: int, rhs: int = 2, seed: int = 0, width: float = 0.4, condition: float = TARGET_CONDITION
):
    """(points, K, y, lambda) with cond(K + lambda I) ~ ``condition``; y is (n, rhs) or (n,)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(size=(n, 3))
    kernel = gaussian_kernel(points, points, width)
    largest = np.linalg.eigvalsh(kernel)[-1]
    regularization = float(largest / condition)
    targets = rng.standard_normal((n, rhs)) if rhs > 1 else rng.standard_normal(n)
    return points, kernel, targets, regularization


def reference_solution(kernel: np.ndarray, targets: np.ndarray, regularization: float):
    """Independent reference: LU solve (scipy.linalg.solve, general matrix)."""
    import scipy.linalg

    system = kernel + regularization * np.eye(kernel.shape[0])
    return scipy.linalg.solve(system, targets, assume_a="gen")


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def test_problem_has_the_condition_number_of_our_kernels():
    _, kernel, _, regularization = kernel_problem(600)
    eigenvalues = np.linalg.eigvalsh(kernel + regularization * np.eye(600))
    condition = eigenvalues[-1] / eigenvalues[0]
    assert 3e5 < condition < 1.01e6
    assert eigenvalues[0] > 0
