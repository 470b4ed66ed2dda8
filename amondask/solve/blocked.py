"""Distributed blocked Cholesky solve of (K + lambda I) x = y over a dask array of tiles.

K arrives as a dask array (its tiles may be read by the workers from the workspace with
``da.from_zarr``), a zarr array, or a numpy array; it is (re)chunked into square tiles of
``tile_size`` rows and columns (``amondask.solve.tile-size``) and only its lower triangle of tiles
is read. Two algorithms are available:

``algorithm="tiled"`` (the default, ours)
    A right-looking tiled Cholesky as one task graph, followed in the same graph by the forward
    and backward triangular solves, so only the (n, k) solution comes back to the client and the
    factor L stays on the workers. With T = ceil(n / tile_size) tiles per side, step t factors the
    diagonal tile (``potrf``), solves the tiles below it (``trsm``: L_it = A_it L_tt^-T), and
    updates the trailing lower triangle (A_ij -= L_it L_jt^T; ``syrk`` on the diagonal). Each
    update consumes the previous version of its tile, so a tile's history is a chain and no task
    holds more than three tiles. The last tile may be smaller than the others.

``algorithm="dask"``
    ``dask.array.linalg.cholesky`` followed by two ``dask.array.linalg.solve_triangular``. Its
    graph is left-looking: every tile of L is ``A_ij - sum(list of products)``, so one task holds
    all the products of a row at once, and it requires every tile (including the last) to have
    the same size, so K is padded with an identity block to a multiple of ``tile_size``.

Measured (``benchmarks/bench_solve.py``, results in ``benchmarks/results/bench_solve*.json``;
2 cores shared with other jobs at load average 8-16, so compare within one run), n = 16000,
tiles of 4000, K read from Zarr, seconds:

    run                   tiled-threads  dask-threads  tiled-2-processes  dask-2-processes
    1                          49             41               61                104
    2 (Fortran tiles)          91            120              157                  -
    n = 24000 (6 tiles)       119            149                -                  -
    n = 32000 (8 tiles)       462            485              520                586
    n = 40000 (10 tiles)      552*           383              438                  -

(* with the test suite running beside it) and peak memory 2.1 vs 2.5 GiB (threads), 3.2 vs
3.8 GiB (processes, client + workers); at n = 24000 3.4 vs 4.5 GiB (scipy: 107 s, 4.7 GiB); at
n = 40000 7.5 vs 10.4 GiB on threads, 13.8 GiB ours on processes (scipy: 531 s, 12.6 GiB;
``bench_solve_32k_40k.json``). On threads the two are within the noise; on worker processes ours
was 1.7x faster at n = 16000 and 1.1x at 32000 (dask's left-looking sums move every product of
a row to one worker; 9.1 vs 10.2 GiB at 32000) and it needs less memory, reads only the lower
triangle and needs no padding: ``"tiled"`` is the default. On this 2-core machine neither
clearly beats the in-memory scipy solve (55 s at n = 16000 in run 1; at 40000 383-552 s vs
531 s, under changing load); the blocked solve is for K that does not fit one process but fits
the cluster.

BLAS threads: tasks call single-threaded BLAS (one BLAS thread per dask thread). A
``LocalCluster`` sets ``OPENBLAS_NUM_THREADS=1`` in its workers; with the threaded scheduler we
hold a threadpoolctl limit of one thread for the duration of the compute.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.linalg
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from scipy.linalg import blas, lapack
from threadpoolctl import threadpool_limits

from amondask import config
from amondask.errors import SolverError
from amondask.solve.result import SolveResult, relative_residual

ALGORITHMS = ("tiled", "dask")


# ----------------------------------------------------------------------------- tile kernels
# Every tile the graph produces is Fortran-ordered, so BLAS/LAPACK take it without a copy (a
# C-ordered operand costs f2py a transposing copy: measured 19 s vs 11 s for one 4000-tile
# update). No task modifies its inputs: a distributed worker may run a task again.
def _shift_diagonal(tile: np.ndarray, shift: float) -> np.ndarray:
    shifted = np.array(tile, dtype=np.float64, order="F", copy=True)
    shifted[np.diag_indices(shifted.shape[0])] += shift
    return shifted


def _potrf_tile(tile: np.ndarray, tile_index: int) -> np.ndarray:
    """Lower Cholesky factor of a diagonal tile (upper triangle zeroed)."""
    factor, info = lapack.dpotrf(tile, lower=1, overwrite_a=0, clean=1)
    if info != 0:
        raise SolverError(
            f"blocked Cholesky failed in diagonal tile {tile_index} (LAPACK info={info}): "
            "K + lambda I is not numerically positive definite. Increase lambda, or solve with "
            "method='scipy' (it falls back to jitter and least squares with a warning)."
        )
    return factor


def _trsm_tile(tile: np.ndarray, diagonal_factor: np.ndarray) -> np.ndarray:
    """L_it = A_it L_tt^-T (shape of ``tile``)."""
    return blas.dtrsm(1.0, diagonal_factor, tile, side=1, lower=1, trans_a=1, overwrite_b=0)


def _update_tile(tile: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A_ij - L_it L_jt^T (a new array; ``tile`` is left as it is)."""
    return blas.dgemm(-1.0, left, right, beta=1.0, c=tile, trans_b=1, overwrite_c=0)


def _update_diagonal_tile(tile: np.ndarray, left: np.ndarray) -> np.ndarray:
    """A_jj - L_jt L_jt^T; only the lower triangle is meaningful afterwards."""
    return blas.dsyrk(-1.0, left, beta=1.0, c=tile, lower=1, overwrite_c=0)


def _subtract_product(accumulated: np.ndarray, matrix: np.ndarray, vector: np.ndarray, transpose):
    """accumulated - matrix @ vector (or matrix.T @ vector)."""
    product = matrix.T @ vector if transpose else matrix @ vector
    return accumulated - product


def _triangular_solve(diagonal_factor: np.ndarray, rhs: np.ndarray, transpose: bool) -> np.ndarray:
    return scipy.linalg.solve_triangular(
        diagonal_factor, rhs, lower=True, trans=1 if transpose else 0, check_finite=False
    )


def _stack(*blocks: np.ndarray) -> np.ndarray:
    return np.concatenate(blocks, axis=0)


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _one_blas_thread_unless_distributed() -> Iterator[None]:
    """One BLAS thread per task under the threaded scheduler; nothing under distributed."""
    if _active_client() is None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    else:
        yield


def _active_client() -> Any:
    """The default distributed Client when one is active and dask uses it, else None."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    return client


def as_square_tiles(kernel: Any, tile_size: int) -> da.Array:
    """K as a dask array with square tiles of ``tile_size`` (the last tile may be smaller).

    ``kernel`` may be a dask array, a zarr array (read lazily, tile by tile, by the workers) or
    a numpy array. Only metadata is checked here; nothing is computed.
    """
    if isinstance(kernel, da.Array):
        array = kernel
    elif type(kernel).__module__.startswith("zarr"):
        array = da.from_zarr(kernel)
    else:
        array = da.from_array(np.asarray(kernel), chunks=tile_size)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise SolverError(f"K must be a square matrix, got shape {array.shape}")
    n = array.shape[0]
    wanted = tuple(min(tile_size, n - start) for start in range(0, n, tile_size))
    if array.chunks != (wanted, wanted):
        array = array.rechunk((tile_size, tile_size))
    return array.astype(np.float64) if array.dtype != np.float64 else array


def balanced_tile_size(n: int, tile_size: int) -> int:
    """The tile edge <= ``tile_size`` that cuts n into the same number of tiles as
    ``tile_size`` does, as evenly as possible: ceil(n / ceil(n / tile_size)). No tile is then
    much smaller than the others, and dask's algorithm pads K by fewer than (tiles) rows."""
    tiles = max(1, math.ceil(n / tile_size))
    return max(1, math.ceil(n / tiles))


def _check_targets(targets: np.ndarray, n: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim not in (1, 2) or targets.shape[0] != n:
        raise SolverError(
            f"y has shape {targets.shape} but K is ({n}, {n}); y must be (n,) or (n, k)"
        )
    return targets


# ----------------------------------------------------------------------------- tiled graph
def tiled_cholesky_solve_graph(
    kernel_tiles: da.Array, targets: np.ndarray, regularization: float
) -> da.Array:
    """The lazy solution x of (K + lambda I) x = y by our right-looking tiled Cholesky.

    ``kernel_tiles`` must have square tiles (see :func:`as_square_tiles`); ``targets`` is (n, k).
    Returns a dask array of shape (n, k) chunked like K's rows.
    """
    tile_rows = kernel_tiles.chunks[0]
    tiles = len(tile_rows)
    token = tokenize(kernel_tiles, targets, regularization, "amondask-tiled-cholesky")
    name = f"tiled-cholesky-solve-{token}"
    source = kernel_tiles.name
    graph: dict[Any, Any] = {}

    # current version of each lower tile A_ij (i >= j)
    current: dict[tuple[int, int], Any] = {}
    for i in range(tiles):
        for j in range(i):
            current[i, j] = (source, i, j)
        key = (f"shift-{token}", i)
        graph[key] = (_shift_diagonal, (source, i, i), regularization)
        current[i, i] = key

    factor_keys: dict[tuple[int, int], Any] = {}
    for step in range(tiles):
        diagonal_key = (f"potrf-{token}", step)
        graph[diagonal_key] = (_potrf_tile, current[step, step], step)
        factor_keys[step, step] = diagonal_key
        for i in range(step + 1, tiles):
            key = (f"trsm-{token}", i, step)
            graph[key] = (_trsm_tile, current[i, step], diagonal_key)
            factor_keys[i, step] = key
        for j in range(step + 1, tiles):
            key = (f"syrk-{token}", j, step)
            graph[key] = (_update_diagonal_tile, current[j, j], factor_keys[j, step])
            current[j, j] = key
            for i in range(j + 1, tiles):
                key = (f"gemm-{token}", i, j, step)
                graph[key] = (
                    _update_tile,
                    current[i, j],
                    factor_keys[i, step],
                    factor_keys[j, step],
                )
                current[i, j] = key

    # the right-hand side, split into row tiles, embedded in the graph (it is small: n x k)
    offsets = np.cumsum((0,) + tile_rows)
    forward: dict[int, Any] = {}
    for i in range(tiles):
        accumulated: Any = (f"rhs-{token}", i)
        graph[accumulated] = targets[offsets[i] : offsets[i + 1]]
        for j in range(i):
            key = (f"forward-update-{token}", i, j)
            graph[key] = (_subtract_product, accumulated, factor_keys[i, j], forward[j], False)
            accumulated = key
        key = (f"forward-{token}", i)
        graph[key] = (_triangular_solve, factor_keys[i, i], accumulated, False)
        forward[i] = key

    backward: dict[int, Any] = {}
    for i in reversed(range(tiles)):
        accumulated = forward[i]
        for j in range(i + 1, tiles):
            key = (f"backward-update-{token}", i, j)
            graph[key] = (_subtract_product, accumulated, factor_keys[j, i], backward[j], True)
            accumulated = key
        key = (name, i, 0)
        graph[key] = (_triangular_solve, factor_keys[i, i], accumulated, True)
        backward[i] = key

    high_level = HighLevelGraph.from_collections(name, graph, dependencies=[kernel_tiles])
    return da.Array(
        high_level,
        name,
        chunks=(tile_rows, (targets.shape[1],)),
        dtype=np.float64,
    )


def _dask_cholesky_solve_graph(
    kernel_tiles: da.Array, targets: np.ndarray, regularization: float, tile_size: int
) -> da.Array:
    """The lazy solution by dask.array.linalg (K padded with I to a multiple of the tile)."""
    n = kernel_tiles.shape[0]
    padded = math.ceil(n / tile_size) * tile_size
    system = kernel_tiles + regularization * da.eye(n, chunks=tile_size)
    rhs = da.from_array(targets, chunks=(tile_size, targets.shape[1]))
    if padded != n:
        extra = padded - n
        system = da.block(
            [
                [system, da.zeros((n, extra), chunks=tile_size)],
                [da.zeros((extra, n), chunks=tile_size), da.eye(extra, chunks=tile_size)],
            ]
        ).rechunk(tile_size)
        rhs = da.concatenate([rhs, da.zeros((extra, targets.shape[1]))]).rechunk(
            (tile_size, targets.shape[1])
        )
    lower = da.linalg.cholesky(system, lower=True)
    intermediate = da.linalg.solve_triangular(lower, rhs, lower=True)
    solution = da.linalg.solve_triangular(lower.T, intermediate, lower=False)
    return solution[:n]


def dask_cholesky_solve(
    kernel: Any,
    targets: np.ndarray,
    regularization: float,
    *,
    tile_size: int | None = None,
    algorithm: str = "tiled",
    compute_residual: bool = True,
) -> SolveResult:
    """Solve (K + lambda I) x = y by a blocked Cholesky on the active dask scheduler.

    Parameters
    ----------
    kernel
        K, shape (n, n), symmetric: a dask array (e.g. ``da.from_zarr`` of the workspace's
        kernel), a zarr array or a numpy array. Only its lower triangle of tiles is read by
        ``algorithm="tiled"``.
    targets
        y, shape (n,) or (n, k).
    regularization
        lambda >= 0.
    tile_size
        Largest rows (= columns) per tile; ``amondask.solve.tile-size`` by default, evened out
        by :func:`balanced_tile_size` (16000 with 4096 gives 4 tiles of 4000). A tile uses
        8 tile_size^2 bytes (128 MiB at 4096).
    algorithm
        ``"tiled"`` (ours) or ``"dask"`` (``dask.array.linalg``); see the module docstring.
    compute_residual
        Also compute the relative residual: one more pass over K, on the workers.

    Returns
    -------
    SolveResult
        ``method="dask-cholesky"``, ``info`` with ``algorithm``, ``tile_size``, ``tiles``.

    Runs on the default distributed Client when one is active, else on the threaded scheduler
    (or whatever ``dask.config`` ``scheduler`` says).
    """
    started = time.perf_counter()
    if algorithm not in ALGORITHMS:
        raise SolverError(f"unknown algorithm {algorithm!r}; use one of {ALGORITHMS}")
    if not np.isfinite(regularization) or regularization < 0:
        raise SolverError(f"lambda must be finite and >= 0, got {regularization}")
    tile_size = balanced_tile_size(
        int(kernel.shape[0]), int(config.get("solve.tile-size", tile_size))
    )
    kernel_tiles = as_square_tiles(kernel, tile_size)
    n = kernel_tiles.shape[0]
    targets = _check_targets(targets, n)
    targets_2d = targets.reshape(n, -1)

    if algorithm == "tiled":
        solution = tiled_cholesky_solve_graph(kernel_tiles, targets_2d, regularization)
    else:
        solution = _dask_cholesky_solve_graph(kernel_tiles, targets_2d, regularization, tile_size)

    with _one_blas_thread_unless_distributed():
        x = np.asarray(solution.compute())
        residual = float("nan")
        if compute_residual:
            product = np.asarray(
                da.dot(kernel_tiles, da.from_array(x, chunks=(tile_size, x.shape[1]))).compute()
            )
            residual = relative_residual(product, x, targets_2d, regularization)
    x = x.reshape(targets.shape)
    return SolveResult(
        x=x,
        method="dask-cholesky",
        iterations=0,
        residual=residual,
        wall_time_s=time.perf_counter() - started,
        info={
            "algorithm": algorithm,
            "tile_size": tile_size,
            "tiles": len(kernel_tiles.chunks[0]),
            "scheduler": "distributed" if _active_client() is not None else "local",
        },
    )
