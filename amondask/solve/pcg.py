"""Matrix-free preconditioned conjugate gradient for (K + lambda I) x = y.

K is never whole in memory: the solver only asks for products ``K @ V`` (V of shape (n, k), one
column per right-hand side, all advanced together so that one pass over K serves every column)
and, once, for m landmark columns ``K[:, landmarks]`` to build the preconditioner. K can be

- a *block provider* (:class:`ArrayBlockProvider`: row blocks sliced from a numpy or zarr array,
  the next block read in a background thread while the current one is multiplied;
  :class:`FunctionBlockProvider`: blocks recomputed on the fly by a function, optionally on the
  dask cluster; :class:`DaskArrayProvider`: a dask array, e.g. ``da.from_zarr`` of the
  workspace's kernel, multiplied on the workers), or
- a plain callable ``matvec(V) -> K @ V`` (landmark columns then cost one product with m
  selection vectors).

Preconditioner (Nystrom, as in Falkon, Rudi et al. 2017, in the numerically stable form of
Frangella, Tropp & Udell, SIAM J. Matrix Anal. Appl. 44, 718 (2023)): with m landmark columns
C = K[:, S] (uniformly sampled without replacement, seeded), shift nu = eps * ||C||_F,
R = chol(C[S] + nu I), B = (C + nu E_S) R^-1 = U Sigma V^T (thin QR B = Q T, then the
eigendecomposition of the m x m T T^T), Lambda = max(Sigma^2 - nu, 0); the Nystrom
approximation is K_nys = U Lambda U^T and

    P^-1 = (lambda_min + lambda) U (Lambda + lambda I)^-1 U^T + (I - U U^T),

lambda_min the smallest kept Nystrom eigenvalue (Woodbury: applying it costs two products with
the n x m matrix U). Memory: U (8 n m bytes) plus, during set-up, about two more n x m arrays;
the streamed matvec holds two row blocks (``block_mib`` each).

Measured (``benchmarks/results/bench_solve_out_of_core.json``): n = 60000, K 26.8 GiB in a
Zarr directory store (more than the machine's 23.5 GiB of RAM), Gaussian kernel with
cond(K + lambda I) ~ 1e6, m = 2000: 22 iterations to a true relative residual of 6.0e-9
(tolerance 1e-8), 1268 s of which 220 s set-up, peak RSS 3.2 GiB under a 6 GiB address-space
limit, on 2 cores shared with other jobs. Plain CG needs ~1000 iterations on such systems.

Stopping rule: the relative residual ||(K + lambda I) x - y|| / ||y|| <= ``tolerance`` for every
column. The CG recurrence's residual drifts from the true one at tight tolerances, so when the
recurrence says "converged" the true residual is computed (one more pass over K); if it is still
above the tolerance the true residual replaces the recurrence's and CG restarts from the current x.
A restart that does not halve the true residual means the rounding floor (about
1e-16 * cond(K + lambda I); a direct solve has it too) is above the tolerance: PCG then stops with
a :class:`~amondask.errors.SolverWarning` that says so (``info["stagnated"]``). On the real QM9
aSLATM kernel with lambda = 1e-4 (n = 3000-3500, cond(K + lambda I) ~ 3e9) the floor is ~4e-8 for a
standard normal y, where scipy's Cholesky lands too; for the energies themselves (smooth in K's
leading eigenvectors) it is ~5e-10.
The reported ``residual`` is therefore a true residual, and ``iterations`` counts the passes over
K spent in CG (not the set-up pass nor the checks).

Default tolerance 1e-6 (``amondask.solve.pcg-tolerance``), because predictions do not need more
(``benchmarks/bench_solve.py --tolerance-study 3500``, results in
``benchmarks/results/bench_solve_qm9_tolerance.json``): 3500 QM9 molecules with <= 7 heavy atoms
(amon-sized) as training set, U0 minus the per-element baseline, lambda = 1e-4, predicting 400
other such molecules and 400 with 9 heavy atoms. At tolerance t the predictions differ from the
Cholesky ones by about t relative (at 1e-6: 0.8e-6 to 1.2e-6 with 100, 500 or 2000 landmarks;
largest difference 4e-4 kcal/mol), against a model error (MAE vs DFT) of 0.41 and 1.47 kcal/mol,
unchanged to the third decimal. 1e-8 costs a third more passes over K (2000 landmarks: 40
instead of 30; 500: 193 vs 143; 100: over the default cap of 1000 vs 817) and is already below
the rounding floor for a standard normal y (3.6e-8), a floor that rises with cond(K + lambda I),
i.e. with n (lambda_max(K) grows about linearly: 7.8e4 at n = 1000, 2.9e5 at 3500). On the
training points the agreement is guaranteed: (K + lambda I)(x - x*) = r gives
||K (x - x*)|| <= 2 ||r|| <= 2 t ||y||. Pass a smaller tolerance when alpha itself is the
product (its relative error was up to 7e-6 at 1e-6).
"""

from __future__ import annotations

import concurrent.futures
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.linalg

from amondask import config
from amondask.errors import SolverError, SolverWarning
from amondask.solve.result import SolveResult

Matvec = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- operators
@runtime_checkable
class KernelOperator(Protocol):
    """What PCG needs of K (n x n, symmetric positive semi-definite)."""

    n: int

    def matvec(self, vectors: np.ndarray) -> np.ndarray:
        """K @ vectors, for vectors of shape (n, k); returns (n, k)."""
        ...

    def columns(self, indices: np.ndarray) -> np.ndarray:
        """K[:, indices], shape (n, len(indices))."""
        ...


def _rows_for_budget(n: int, block_mib: float | None, multiple_of: int = 1) -> int:
    block_mib = float(config.get("solve.stream-block-mib", block_mib))
    rows = max(1, int(block_mib * 2**20 // (8 * max(n, 1))))
    if multiple_of > 1 and rows >= multiple_of:
        rows -= rows % multiple_of
    return min(rows, max(n, 1))


class _StreamedRows:
    """Row-block streaming with one block of read-ahead in a background thread.

    With ``lower_only`` (K symmetric, the default) a pass reads only the lower block triangle,
    ``K[start:stop, :stop]`` per row block (diagonal blocks whole), and uses each block twice
    (as itself for the rows [start, stop) and transposed for the rows above): half the reading
    (or recomputing) of a full pass, for the same flops.
    """

    n: int
    block_rows: int
    lower_only: bool = True

    def _read_rows(self, start: int, stop: int, column_stop: int) -> np.ndarray:
        """K[start:stop, :column_stop]."""
        raise NotImplementedError

    def _bounds(self) -> list[tuple[int, int]]:
        return [
            (start, min(start + self.block_rows, self.n))
            for start in range(0, self.n, self.block_rows)
        ]

    def _stream(self) -> Iterator[tuple[int, int, Any]]:
        bounds = self._bounds()

        def read(start: int, stop: int) -> np.ndarray:
            return self._read_rows(start, stop, stop if self.lower_only else self.n)

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(read, *bounds[0])
            for index, (start, stop) in enumerate(bounds):
                block = pending.result()
                if index + 1 < len(bounds):
                    pending = pool.submit(read, *bounds[index + 1])
                yield start, stop, block
                del block

    def matvec(self, vectors: np.ndarray) -> np.ndarray:
        if not self.lower_only:
            result = np.empty((self.n, vectors.shape[1]))
            for start, stop, block in self._stream():
                np.matmul(block, vectors, out=result[start:stop])
            return result
        result = np.zeros((self.n, vectors.shape[1]))
        for start, stop, block in self._stream():
            result[start:stop] += block @ vectors[:stop]
            if start:
                result[:start] += block[:, :start].T @ vectors[start:stop]
        return result

    def columns(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        result = np.empty((self.n, len(indices)))
        for start, stop, block in self._stream():
            # entries K[r, l] with l < stop come from this block's rows ...
            left = indices < stop
            result[start:stop, left] = block[:, indices[left]]
            # ... and, for landmarks l inside [start, stop), K[r, l] = K[l, r] for the rows above
            inside = left & (indices >= start)
            if start and inside.any():
                result[:start, inside] = block[indices[inside] - start, :start].T
        return result


class ArrayBlockProvider(_StreamedRows):
    """K from an array that can be sliced by rows: numpy, zarr (the workspace's kernel), memmap.

    Parameters
    ----------
    array
        Shape (n, n). Only ``array[start:stop]`` row blocks are read, one pass per product.
    block_mib
        Size of one row block in MiB (``amondask.solve.stream-block-mib``); two blocks are in
        memory at once. Rows per block are rounded down to the array's row chunk when it has one
        (store K with chunk rows no larger than that, or each chunk is read several times).
    lower_only
        Read only the lower triangle (K must be symmetric): half the I/O per pass.
    """

    def __init__(self, array: Any, block_mib: float | None = None, lower_only: bool = True):
        if len(array.shape) != 2 or array.shape[0] != array.shape[1]:
            raise SolverError(f"K must be a square matrix, got shape {array.shape}")
        self.array = array
        self.lower_only = lower_only
        self.n = int(array.shape[0])
        chunks = getattr(array, "chunks", None)
        chunk_rows = int(chunks[0]) if chunks and isinstance(chunks[0], int) else 1
        self.block_rows = _rows_for_budget(self.n, block_mib, chunk_rows)

    def _read_rows(self, start: int, stop: int, column_stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop, :column_stop], dtype=np.float64)


def _block_contributions(
    compute_block: Callable[[slice, slice], np.ndarray],
    start: int,
    stop: int,
    lower_only: bool,
    n: int,
    vectors: np.ndarray,
) -> tuple[int, int, np.ndarray, np.ndarray | None]:
    """One row block's share of K @ V: (start, stop, rows part, part for the rows above)."""
    if not lower_only:
        return start, stop, compute_block(slice(start, stop), slice(0, n)) @ vectors, None
    block = compute_block(slice(start, stop), slice(0, stop))
    above = block[:, :start].T @ vectors[start:stop] if start else None
    return start, stop, block @ vectors[:stop], above


class FunctionBlockProvider(_StreamedRows):
    """K recomputed on the fly: ``compute_block(rows, columns) -> K[rows, columns]``.

    Parameters
    ----------
    compute_block
        Called with two slices, or a slice and an int index array (landmark columns); returns
        a float64 array of that shape. It is called again on every pass: nothing is cached.
    n
        Size of K.
    block_mib
        Size of one row block in MiB (``amondask.solve.stream-block-mib``).
    use_dask
        Compute the row blocks of each product as dask tasks on the active scheduler (the
        distributed cluster when a Client is active) instead of in this process; then
        ``compute_block`` must be picklable.
    lower_only
        Compute only the lower triangle (K symmetric): half the kernel evaluations per pass.
    """

    def __init__(
        self,
        compute_block: Callable[[slice, Any], np.ndarray],
        n: int,
        block_mib: float | None = None,
        use_dask: bool = False,
        lower_only: bool = True,
    ):
        self.compute_block = compute_block
        self.n = int(n)
        self.block_rows = _rows_for_budget(self.n, block_mib)
        self.use_dask = use_dask
        self.lower_only = lower_only

    def _read_rows(self, start: int, stop: int, column_stop: int) -> np.ndarray:
        block = self.compute_block(slice(start, stop), slice(0, column_stop))
        return np.asarray(block, dtype=np.float64)

    def columns(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        result = np.empty((self.n, len(indices)))
        for start, stop in self._bounds():
            result[start:stop] = self.compute_block(slice(start, stop), indices)
        return result

    def matvec(self, vectors: np.ndarray) -> np.ndarray:
        if not self.use_dask:
            return super().matvec(vectors)
        import dask

        shared = dask.delayed(vectors, pure=True)
        parts = [
            dask.delayed(_block_contributions, pure=True)(
                self.compute_block, start, stop, self.lower_only, self.n, shared
            )
            for start, stop in self._bounds()
        ]
        result = np.zeros((self.n, vectors.shape[1]))
        for start, stop, rows_part, above_part in dask.compute(*parts):
            result[start:stop] += rows_part
            if above_part is not None:
                result[:start] += above_part
        return result


class DaskArrayProvider:
    """K as a dask array (e.g. ``da.from_zarr`` of the workspace's kernel): every product runs
    as ``K @ V`` on the active scheduler, so on a cluster the tiles are read by the workers and
    only V (n x k) and the product travel."""

    def __init__(self, array: Any):
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise SolverError(f"K must be a square matrix, got shape {array.shape}")
        self.array = array
        self.n = int(array.shape[0])

    def matvec(self, vectors: np.ndarray) -> np.ndarray:
        import dask.array as da

        right = da.from_array(vectors, chunks=(self.array.chunks[1], vectors.shape[1]))
        return np.asarray(da.dot(self.array, right).compute())

    def columns(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.array[:, np.asarray(indices)].compute(), dtype=np.float64)


class CallableOperator:
    """K given only as ``matvec(V) -> K @ V``; columns come from a product with unit vectors."""

    def __init__(self, matvec: Matvec, n: int):
        self._matvec = matvec
        self.n = int(n)

    def matvec(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(self._matvec(vectors), dtype=np.float64).reshape(self.n, -1)

    def columns(self, indices: np.ndarray) -> np.ndarray:
        selection = np.zeros((self.n, len(indices)))
        selection[np.asarray(indices), np.arange(len(indices))] = 1.0
        return self.matvec(selection)


def as_operator(kernel: Any, n: int | None = None, block_mib: float | None = None):
    """Wrap what the user has into a :class:`KernelOperator`.

    numpy / zarr / other sliceable 2-D arrays -> :class:`ArrayBlockProvider`; dask arrays ->
    :class:`DaskArrayProvider`; a callable ``matvec`` -> :class:`CallableOperator` (needs ``n``);
    an object with ``matvec`` and ``columns`` is used as it is.
    """
    if isinstance(kernel, KernelOperator) and not isinstance(kernel, type):
        return kernel
    if type(kernel).__module__.startswith("dask"):
        return DaskArrayProvider(kernel)
    if hasattr(kernel, "shape") and hasattr(kernel, "__getitem__"):
        return ArrayBlockProvider(kernel, block_mib)
    if callable(kernel):
        if n is None:
            raise SolverError("K given as a matvec callable: pass n, the number of rows of K")
        return CallableOperator(kernel, n)
    raise SolverError(
        f"cannot use {type(kernel).__name__} as K: pass an array (numpy, zarr, dask), a block "
        "provider (amondask.solve.pcg.ArrayBlockProvider / FunctionBlockProvider) or a matvec "
        "callable with n"
    )


# ----------------------------------------------------------------------------- preconditioner
@dataclass
class NystromPreconditioner:
    """P^-1 = (lambda_min + lambda) U (Lambda + lambda I)^-1 U^T + (I - U U^T).

    ``basis`` U is (n, r) with orthonormal columns, ``eigenvalues`` Lambda (r,) the Nystrom
    approximation's eigenvalues (descending), ``landmarks`` the m sampled column indices.
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    regularization: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        floor = self.eigenvalues[-1] if len(self.eigenvalues) else 0.0
        self._scale = (floor + self.regularization) / (self.eigenvalues + self.regularization) - 1

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """P^-1 @ vectors for vectors (n, k)."""
        if self.basis.shape[1] == 0:
            return vectors.copy()
        coefficients = self.basis.T @ vectors
        coefficients *= self._scale[:, None]
        return vectors + self.basis @ coefficients


def nystrom_preconditioner(
    operator: KernelOperator,
    regularization: float,
    landmarks: int,
    seed: int = 0,
) -> NystromPreconditioner:
    """Build the Nystrom preconditioner from ``landmarks`` uniformly sampled columns of K.

    One pass over K (the columns), then O(n m^2) work. See the module docstring.
    """
    n = operator.n
    rng = np.random.default_rng(seed)
    landmark_indices = np.sort(rng.choice(n, size=min(landmarks, n), replace=False))
    sketch = operator.columns(landmark_indices)  # (n, m) = K[:, S]
    m = sketch.shape[1]
    nu = np.finfo(np.float64).eps * max(np.linalg.norm(sketch), np.finfo(float).tiny)
    core = sketch[landmark_indices].copy()
    core = 0.5 * (core + core.T)
    for _ in range(10):
        try:
            core_factor = scipy.linalg.cholesky(
                core + nu * np.eye(m), lower=False, check_finite=False
            )
            break
        except np.linalg.LinAlgError:
            nu *= 10
    else:  # pragma: no cover - only for a K that is far from positive semi-definite
        raise SolverError(
            "the Nystrom landmark block K[S, S] is not positive semi-definite; check that K is a "
            "valid kernel matrix, or use method='scipy'"
        )
    sketch[landmark_indices, np.arange(m)] += nu
    # B = (C + nu E_S) R^-1, computed in place as B^T = R^-T (C + nu E_S)^T
    factor_rows = scipy.linalg.solve_triangular(
        core_factor, sketch.T, trans=1, lower=False, overwrite_b=True, check_finite=False
    )
    del sketch
    orthonormal, triangular = scipy.linalg.qr(
        factor_rows.T, mode="economic", overwrite_a=True, check_finite=False
    )
    del factor_rows
    # B = Q R = (Q W) Sigma V^T with R R^T = W Sigma^2 W^T: a symmetric eigenproblem of size m,
    # several times faster than the SVD of R and as accurate for the kept (large) Sigma
    squared_singular_values, left = scipy.linalg.eigh(
        triangular @ triangular.T, driver="evd", check_finite=False
    )
    squared_singular_values, left = squared_singular_values[::-1], left[:, ::-1]
    eigenvalues = np.maximum(squared_singular_values - nu, 0.0)
    # directions whose eigenvalue is lost in rounding carry no information: leave them to I-UU^T
    keep = eigenvalues > max(eigenvalues[0], np.finfo(float).tiny) * 1e-13
    basis = orthonormal @ left[:, keep]
    return NystromPreconditioner(basis, eigenvalues[keep], regularization, landmark_indices)


# ----------------------------------------------------------------------------- the solver
def pcg_solve(
    kernel: Any,
    targets: np.ndarray,
    regularization: float,
    *,
    tolerance: float | None = None,
    max_iterations: int | None = None,
    landmarks: int | None = None,
    seed: int | None = None,
    block_mib: float | None = None,
    n: int | None = None,
    preconditioner: NystromPreconditioner | None | str = "nystrom",
    initial_guess: np.ndarray | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> SolveResult:
    """Solve (K + lambda I) x = y by preconditioned CG, streaming K.

    Parameters
    ----------
    kernel
        K (n, n): a block provider, an array (numpy, zarr, dask) or a ``matvec`` callable (then
        pass ``n``); see :func:`as_operator`.
    targets
        y, shape (n,) or (n, k); all k columns advance together (one pass over K per iteration).
    regularization
        lambda > 0 (CG needs a positive definite system).
    tolerance
        Stop when ||(K + lambda I) x - y|| / ||y|| <= tolerance for every column
        (``amondask.solve.pcg-tolerance``, 1e-6: predictions then match a direct solve's to
        about 1e-6 relative; see the module docstring).
    max_iterations
        Cap on CG iterations (``amondask.solve.pcg-max-iterations``); reaching it warns.
    landmarks
        m, the number of Nystrom columns (``amondask.solve.nystrom-landmarks``; capped at n).
    seed
        Seed of the landmark sample (``amondask.solve.seed``).
    block_mib
        Row block size for array/function providers (``amondask.solve.stream-block-mib``).
    preconditioner
        ``"nystrom"`` (default), ``None`` (plain CG), or a prebuilt
        :class:`NystromPreconditioner` (to reuse across solves with the same K and lambda).
    initial_guess
        x0, shape like y (zeros by default).
    callback
        Called as ``callback(iteration, relative_residual)`` after each iteration.

    Returns
    -------
    SolveResult
        ``method="pcg"``, ``iterations``, ``residual`` (true relative residual),
        ``residual_history`` (per iteration, from the recurrence), ``converged``; ``info`` has
        ``tolerance``, ``landmarks``, ``rank`` (kept Nystrom directions), ``setup_time_s``,
        ``block_rows``, ``restarts``.
    """
    started = time.perf_counter()
    tolerance = float(config.get("solve.pcg-tolerance", tolerance))
    max_iterations = int(config.get("solve.pcg-max-iterations", max_iterations))
    landmarks = int(config.get("solve.nystrom-landmarks", landmarks))
    seed = int(config.get("solve.seed", seed))
    if not np.isfinite(regularization) or regularization <= 0:
        raise SolverError(
            f"PCG needs lambda > 0 (got {regularization}); use method='scipy' for lambda = 0"
        )
    if tolerance <= 0:
        raise SolverError(f"tolerance must be > 0, got {tolerance}")
    operator = as_operator(kernel, n=n, block_mib=block_mib)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim not in (1, 2) or targets.shape[0] != operator.n:
        raise SolverError(
            f"y has shape {targets.shape} but K is ({operator.n}, {operator.n}); "
            "y must be (n,) or (n, k)"
        )
    rhs = targets.reshape(operator.n, -1)
    rhs_norms = np.linalg.norm(rhs, axis=0)
    rhs_norms[rhs_norms == 0] = 1.0

    def system_times(vectors: np.ndarray) -> np.ndarray:
        return operator.matvec(vectors) + regularization * vectors

    if isinstance(preconditioner, str):
        if preconditioner != "nystrom":
            raise SolverError(f"unknown preconditioner {preconditioner!r}; use 'nystrom' or None")
        preconditioner = nystrom_preconditioner(operator, regularization, landmarks, seed)
    setup_time = time.perf_counter() - started
    apply_inverse = preconditioner.apply if preconditioner is not None else np.copy

    if initial_guess is None:
        x = np.zeros_like(rhs)
        residual = rhs.copy()
    else:
        x = np.array(initial_guess, dtype=np.float64).reshape(rhs.shape)
        residual = rhs - system_times(x)
    relative = np.linalg.norm(residual, axis=0) / rhs_norms
    history = [float(relative.max())]
    iterations = 0
    restarts = 0
    converged = False
    stagnated = False
    previous_check = np.inf
    true_relative = relative
    while True:
        active = relative > tolerance
        preconditioned = np.zeros_like(residual)
        preconditioned[:, active] = apply_inverse(residual[:, active])
        direction = preconditioned.copy()
        rho = np.einsum("ij,ij->j", residual, preconditioned)
        while active.any() and iterations < max_iterations:
            product = np.zeros_like(direction)
            product[:, active] = system_times(direction[:, active])
            curvature = np.einsum("ij,ij->j", direction, product)
            step = np.where(active, rho / np.where(active, curvature, 1.0), 0.0)
            x += step * direction
            residual -= step * product
            iterations += 1
            relative = np.linalg.norm(residual, axis=0) / rhs_norms
            history.append(float(relative.max()))
            if callback is not None:
                callback(iterations, history[-1])
            active = relative > tolerance
            preconditioned[:, active] = apply_inverse(residual[:, active])
            rho_next = np.einsum("ij,ij->j", residual, preconditioned)
            beta = np.where(active, rho_next / np.where(rho != 0, rho, 1.0), 0.0)
            direction = preconditioned + beta * direction
            rho = rho_next
        # check the true residual; replace the drifted recurrence residual and restart if needed
        residual = rhs - system_times(x)
        true_relative = np.linalg.norm(residual, axis=0) / rhs_norms
        relative = true_relative
        if (true_relative <= tolerance).all():
            converged = True
            break
        # a restart that does not halve the true residual has hit the rounding floor
        stagnated = float(true_relative.max()) > 0.5 * previous_check
        if iterations >= max_iterations or restarts >= 5 or stagnated:
            break
        previous_check = float(true_relative.max())
        restarts += 1

    if not converged and stagnated:
        warnings.warn(
            f"PCG reached the attainable accuracy of this system: the true relative residual "
            f"stays at {true_relative.max():.3g} after a restart, above the tolerance "
            f"{tolerance:g}. Rounding in K @ x sets this floor (about 1e-16 * cond(K + lambda I)"
            "; a direct solve hits it too), so the solution is as accurate as double precision "
            f"allows. Pass tolerance >= {true_relative.max():.1g} to silence this warning.",
            SolverWarning,
            stacklevel=2,
        )
    elif not converged:
        warnings.warn(
            f"PCG stopped after {iterations} iterations at relative residual "
            f"{true_relative.max():.3g}, above the tolerance {tolerance:g}. Raise max_iterations "
            "or the number of Nystrom landmarks, or loosen the tolerance, or use a direct "
            "method.",
            SolverWarning,
            stacklevel=2,
        )
    return SolveResult(
        x=x.reshape(targets.shape),
        method="pcg",
        iterations=iterations,
        residual=float(true_relative.max()),
        wall_time_s=time.perf_counter() - started,
        converged=converged,
        residual_history=history,
        info={
            "tolerance": tolerance,
            "landmarks": 0 if preconditioner is None else len(preconditioner.landmarks),
            "rank": 0 if preconditioner is None else preconditioner.basis.shape[1],
            "setup_time_s": setup_time,
            "block_rows": getattr(operator, "block_rows", None),
            "restarts": restarts,
            "stagnated": stagnated,
            "operator": type(operator).__name__,
        },
    )
