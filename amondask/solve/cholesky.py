"""In-memory Cholesky solve of (K + lambda I) x = y with scipy/LAPACK.

The matrix is factored in place in one n x n float64 buffer (a copy of K unless
``overwrite_kernel=True``), so the peak memory is 8 n^2 bytes on top of K (none with overwrite).

When the factorization fails (K is not numerically positive definite: duplicate training points,
lambda = 0, rounding), a jitter ``start * mean(diag K) * growth**t`` (t = 0, 1, ...) is added to
the diagonal and the factorization retried; when every try fails, the system is solved by least
squares (``scipy.linalg.lstsq``, the minimum-norm solution). Both fallbacks warn with
:class:`amondask.errors.SolverWarning`: they are never silent.

OpenBLAS's threaded Cholesky has segfaulted on our machines at n >= 16000 with 2 threads
(one thread, or ``OPENBLAS_CORETYPE=Haswell``, avoids it), so above
``amondask.solve.single-thread-blas-above`` the factorization runs under a one-thread BLAS limit
(:func:`blas_thread_guard`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator

import numpy as np
import scipy.linalg
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from amondask import config
from amondask.errors import SolverError, SolverWarning
from amondask.solve.result import SolveResult, relative_residual


@contextlib.contextmanager
def blas_thread_guard(n: int, threshold: int | None = None) -> Iterator[None]:
    """Limit BLAS/LAPACK to one thread while factoring an n x n matrix with n > ``threshold``.

    ``threshold`` defaults to ``amondask.solve.single-thread-blas-above``. Below it, nothing
    changes. The limit is process-wide while it holds (threadpoolctl).
    """
    threshold = int(config.get("solve.single-thread-blas-above", threshold))
    if n > threshold:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    else:
        yield


def _check_system(kernel: np.ndarray, targets: np.ndarray, regularization: float) -> None:
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise SolverError(
            f"K must be a square matrix, got shape {kernel.shape}; pass K(train, train)"
        )
    if targets.ndim not in (1, 2) or targets.shape[0] != kernel.shape[0]:
        raise SolverError(
            f"y has shape {targets.shape} but K is {kernel.shape}; y must be (n,) or (n, k) with "
            f"n = {kernel.shape[0]}"
        )
    if not np.isfinite(regularization) or regularization < 0:
        raise SolverError(f"lambda must be finite and >= 0, got {regularization}")


def _restore_lower_from_upper(matrix: np.ndarray, diagonal: np.ndarray, block: int = 1024) -> None:
    """Undo a failed in-place ``dpotrf(lower)`` on Fortran-ordered ``matrix``.

    LAPACK only wrote the lower triangle and the diagonal; the strict upper triangle still holds
    K, so the lower triangle is rebuilt by symmetry, block column by block column (no n x n
    temporary), and the diagonal from ``diagonal``.
    """
    n = matrix.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        diagonal_block = matrix[start:stop, start:stop]
        diagonal_block[...] = np.triu(diagonal_block) + np.triu(diagonal_block, 1).T
        # below the diagonal block: the transpose of the (untouched) row block right of it
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T
    matrix[np.diag_indices(n)] = diagonal


def cholesky_solve(
    kernel: np.ndarray,
    targets: np.ndarray,
    regularization: float,
    *,
    overwrite_kernel: bool = False,
    compute_residual: bool = True,
    jitter_start: float | None = None,
    jitter_growth: float | None = None,
    jitter_tries: int | None = None,
    single_thread_above: int | None = None,
    keep_factor: bool = False,
) -> SolveResult:
    """Solve (K + lambda I) x = y by Cholesky, with the jitter-then-least-squares fallback.

    Parameters
    ----------
    kernel
        K, shape (n, n), symmetric. Only one triangle is read by the factorization.
    targets
        y, shape (n,) or (n, k): one or several right-hand sides.
    regularization
        lambda >= 0, added to the diagonal.
    overwrite_kernel
        Factor in K's own memory (saves 8 n^2 bytes); K is garbage afterwards. Only honoured for
        a C- or Fortran-contiguous float64 K.
    compute_residual
        Also compute the relative residual (one more product with K, O(n^2 k)); needs K intact,
        so it is skipped when ``overwrite_kernel`` is true.
    jitter_start, jitter_growth, jitter_tries
        Fallback jitter schedule (``amondask.solve.jitter-*`` by default).
    single_thread_above
        n above which BLAS runs single-threaded (see :func:`blas_thread_guard`).
    keep_factor
        Return the Cholesky factor of K + lambda I in ``result.factor`` (e.g. for a posterior
        variance) when no jitter was needed, instead of dropping it.

    Returns
    -------
    SolveResult
        ``method="scipy"``; ``info["jitter"]`` is the jitter added (0.0 when none) and
        ``info["fallback"]`` is ``"jitter"``, ``"lstsq"`` or ``None``.
    """
    started = time.perf_counter()
    kernel = np.asarray(kernel)
    targets = np.asarray(targets, dtype=np.float64)
    _check_system(kernel, targets, regularization)
    jitter_start = float(config.get("solve.jitter-start", jitter_start))
    jitter_growth = float(config.get("solve.jitter-growth", jitter_growth))
    jitter_tries = int(config.get("solve.jitter-tries", jitter_tries))
    n = kernel.shape[0]

    in_place = (
        overwrite_kernel
        and kernel.dtype == np.float64
        and (kernel.flags.c_contiguous or kernel.flags.f_contiguous)
    )
    # K is symmetric, so a C-ordered K is its own Fortran-ordered transpose: factor K.T in place.
    if in_place:
        factor = kernel if kernel.flags.f_contiguous else kernel.T
    else:
        factor = np.array(kernel, dtype=np.float64, order="K", copy=True)
        if not factor.flags.f_contiguous:
            factor = factor.T
    diagonal = np.diagonal(factor).copy()
    mean_diagonal = float(np.mean(diagonal)) if n else 1.0

    jitters = [0.0] + [
        jitter_start * max(mean_diagonal, np.finfo(float).tiny) * jitter_growth**t
        for t in range(jitter_tries)
    ]
    factored = False
    used_jitter = 0.0
    for attempt, jitter in enumerate(jitters):
        if attempt > 0:
            # the failed attempt overwrote the lower triangle: rebuild K + lambda I + jitter I
            _restore_lower_from_upper(factor, diagonal)
        factor[np.diag_indices(n)] = diagonal + regularization + jitter
        with blas_thread_guard(n, single_thread_above):
            factor, info = lapack.dpotrf(factor, lower=1, overwrite_a=1, clean=0)
        if info == 0:
            factored = True
            used_jitter = jitter
            break
        if info < 0:
            raise SolverError(f"LAPACK dpotrf rejected argument {-info}; this is a bug, report it")

    fallback = None
    if factored:
        with blas_thread_guard(n, single_thread_above):
            x, info = lapack.dpotrs(factor, targets, lower=1)
        if info != 0:
            raise SolverError(f"LAPACK dpotrs failed (info={info}); this is a bug, report it")
        if used_jitter > 0:
            fallback = "jitter"
            warnings.warn(
                f"K + lambda I (n={n}, lambda={regularization:g}) is not numerically positive "
                f"definite; solved with an extra jitter {used_jitter:.3g} "
                f"({used_jitter / mean_diagonal:.1e} x mean diagonal) on the diagonal. Increase "
                "lambda or remove duplicate training points to avoid this.",
                SolverWarning,
                stacklevel=2,
            )
    else:
        fallback = "lstsq"
        _restore_lower_from_upper(factor, diagonal)
        factor[np.diag_indices(n)] = diagonal + regularization
        with blas_thread_guard(n, single_thread_above):
            x, _, rank, _ = scipy.linalg.lstsq(factor, targets, check_finite=False)
        warnings.warn(
            f"K + lambda I (n={n}, lambda={regularization:g}) is not positive definite even with a "
            f"jitter of {jitters[-1]:.3g} ({jitters[-1] / mean_diagonal:.1e} x mean diagonal); "
            f"used the least-squares solution instead (numerical rank {rank} of {n}). Check "
            "that K is a valid kernel matrix (symmetric, finite), and increase lambda.",
            SolverWarning,
            stacklevel=2,
        )

    residual = float("nan")
    if compute_residual and not in_place:
        residual = relative_residual(kernel @ x, x, targets, regularization)
    kept = None
    if keep_factor and factored and used_jitter == 0.0:
        for column in range(1, n):  # dpotrf(clean=0) left K's upper triangle: zero it
            factor[:column, column] = 0.0
        kept = factor
    return SolveResult(
        x=x,
        method="scipy",
        iterations=0,
        residual=residual,
        wall_time_s=time.perf_counter() - started,
        info={"jitter": used_jitter, "fallback": fallback},
        factor=kept,
    )
