"""``solve``: one entry point for (K + lambda I) x = y, with an automatic choice of method.

Methods
-------
``"scipy"``
    In-memory Cholesky in this process (:func:`amondask.solve.cholesky.cholesky_solve`): exact to
    rounding, O(n^3 / 3) flops, 8 n^2 bytes for the factor (plus K itself when K is a numpy array
    we must not overwrite).
``"dask-cholesky"``
    Blocked Cholesky on the dask cluster (:func:`amondask.solve.blocked.dask_cholesky_solve`):
    exact to rounding, the tiles spread over the workers' memory.
``"pcg"``
    Matrix-free preconditioned CG (:func:`amondask.solve.pcg.pcg_solve`): K is streamed (from the
    workspace, or recomputed) and never whole in memory; the result meets a stated tolerance.

The automatic choice (``method="auto"``, :func:`choose_method`)
---------------------------------------------------------------
With n the size of K, ``fraction = amondask.solve.memory-fraction`` (0.6) and
``direct_max_n = amondask.solve.direct-max-n``:

1. K given as a block provider or a matvec callable (no array to factor) -> ``"pcg"``.
2. n > ``direct_max_n`` -> ``"pcg"`` (an O(n^3) factorization would take far longer than a
   few hundred streamed passes over K).
3. The in-memory need fits: 8 n^2 bytes (the factor; K loaded from zarr/dask is factored in
   place) plus 8 n^2 more when K is a numpy array (kept intact), at most ``fraction`` x
   ``memory_limit`` -> ``"scipy"``. ``memory_limit`` defaults to the memory available to this
   process now (``psutil.virtual_memory().available``).
4. A distributed Client is active and 2 x 8 n^2 bytes (K's lower tiles, L, the trailing
   updates in flight) fit in ``fraction`` x the sum of the workers' memory limits ->
   ``"dask-cholesky"``.
5. Otherwise -> ``"pcg"``.

Pass ``method=`` (or set ``amondask.solve.method``) to override; the reason for an automatic
choice is in ``result.info["choice"]``.

Why this order (``benchmarks/bench_solve.py``, 2 cores shared with other jobs): at n = 16000
(K from Zarr) scipy took 55 s and 2.2 GiB, our tiled dask Cholesky 49-91 s on threads and
61-157 s on 2 worker processes, PCG 79 s (22 iterations, of which 52 s Nystrom set-up) and
1.3 GiB. On one machine the in-memory factorization is as fast as anything and exact, so it
comes first; the blocked Cholesky pays off when the cluster has memory (and cores) this process
lacks; PCG is the only one that needs neither (n = 60000, K 26.8 GiB on disk: 22 iterations,
21 min, 3.2 GiB peak). At n = 40000 (K 11.9 GiB, read from Zarr) scipy took 531 s and
12.6 GiB, the tiled Cholesky 438-552 s and 7.5 GiB (threads) or 13.8 GiB (2 processes), PCG at
tolerance 1e-8 103 s and 2.4 GiB (``bench_solve_32k_40k.json``): on a kernel this well
conditioned (cond ~1e6, 22 iterations) PCG is already the fastest, but its iteration count
grows with the conditioning (hundreds of iterations with few landmarks on the QM9 kernel,
``bench_solve_qm9_tolerance.json``) while a factorization's cost does not.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from amondask import config
from amondask.errors import SolverError
from amondask.solve.blocked import _active_client, dask_cholesky_solve
from amondask.solve.cholesky import cholesky_solve
from amondask.solve.pcg import as_operator, pcg_solve
from amondask.solve.result import SolveResult, relative_residual

METHODS = ("auto", "scipy", "dask-cholesky", "pcg")
BYTES_PER_ENTRY = 8


def _kind(kernel: Any) -> str:
    """'numpy', 'dask', 'zarr', 'array' (other sliceable arrays) or 'operator'."""
    if isinstance(kernel, np.ndarray):
        return "numpy"
    module = type(kernel).__module__
    if module.startswith("dask"):
        return "dask"
    if module.startswith("zarr"):
        return "zarr"
    if hasattr(kernel, "shape") and hasattr(kernel, "__getitem__") and len(kernel.shape) == 2:
        return "array"
    return "operator"


def cluster_memory_bytes(client: Any = None) -> int | None:
    """Sum of the memory limits of the workers of ``client`` (the default Client if None);
    None when no distributed Client is active."""
    client = client if client is not None else _active_client()
    if client is None:
        return None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return int(sum(worker.get("memory_limit", 0) or 0 for worker in workers.values()))


def choose_method(
    n: int,
    kind: str,
    memory_limit: int | None = None,
    cluster_memory: int | None = None,
    memory_fraction: float | None = None,
    direct_max_n: int | None = None,
) -> tuple[str, str]:
    """The automatic choice of the module docstring, as (method, reason).

    ``kind`` is what K is: ``"numpy"``, ``"dask"``, ``"zarr"``, ``"array"`` or ``"operator"``;
    ``memory_limit`` bytes for this process (default: available RAM now); ``cluster_memory``
    the workers' total memory limit in bytes (None: no distributed cluster).
    """
    import psutil

    fraction = float(config.get("solve.memory-fraction", memory_fraction))
    direct_max_n = int(config.get("solve.direct-max-n", direct_max_n))
    if memory_limit is None:
        memory_limit = int(psutil.virtual_memory().available)
    matrix_bytes = BYTES_PER_ENTRY * n * n
    if kind == "operator":
        return "pcg", "K is given as a block provider or matvec: only PCG can use it"
    if n > direct_max_n:
        return "pcg", f"n = {n} > direct-max-n = {direct_max_n}"
    local_need = matrix_bytes * (2 if kind == "numpy" else 1)
    if local_need <= fraction * memory_limit:
        return "scipy", (
            f"in-memory Cholesky needs {local_need / 2**30:.2f} GiB <= {fraction} x "
            f"{memory_limit / 2**30:.2f} GiB available"
        )
    if cluster_memory is not None and 2 * matrix_bytes <= fraction * cluster_memory:
        return "dask-cholesky", (
            f"too big for this process ({local_need / 2**30:.2f} GiB > {fraction} x "
            f"{memory_limit / 2**30:.2f} GiB) but 2 x {matrix_bytes / 2**30:.2f} GiB fits in "
            f"{fraction} x {cluster_memory / 2**30:.2f} GiB of cluster memory"
        )
    where = "" if cluster_memory is None else f" nor the cluster ({cluster_memory / 2**30:.2f} GiB)"
    return "pcg", (
        f"K ({matrix_bytes / 2**30:.2f} GiB) fits neither this process "
        f"({memory_limit / 2**30:.2f} GiB){where}"
    )


def _load(kernel: Any, kind: str) -> np.ndarray:
    if kind == "dask":
        return np.asarray(kernel.compute(), dtype=np.float64)
    return np.asarray(kernel[...], dtype=np.float64)


def solve(
    kernel: Any,
    targets: np.ndarray,
    regularization: float,
    method: str | None = None,
    memory_limit: int | None = None,
    *,
    n: int | None = None,
    **options: Any,
) -> SolveResult:
    """Solve (K + lambda I) x = y.

    Parameters
    ----------
    kernel
        K (n, n): a numpy, dask or zarr array, a block provider (see :mod:`amondask.solve.pcg`)
        or a matvec callable (then pass ``n``).
    targets
        y, shape (n,) or (n, k).
    regularization
        lambda, added to K's diagonal (hartree-free: K and lambda share K's units).
    method
        ``"auto"`` (default, ``amondask.solve.method``), ``"scipy"``, ``"dask-cholesky"`` or
        ``"pcg"``; see the module docstring for the automatic choice.
    memory_limit
        Bytes this process may use for an in-memory solve (default: the RAM available now).
    n
        Size of K when it is a matvec callable.
    options
        Passed to the chosen solver (e.g. ``tolerance``, ``landmarks`` for PCG; ``tile_size``,
        ``algorithm`` for dask-cholesky). The direct solvers report the true residual by
        default, which costs one more pass over K (for a lazily computed dask K, computing it
        again): pass ``compute_residual=False`` to skip it. ``keep_factor=True`` keeps the
        Cholesky factor of K + lambda I in ``result.factor`` when the method is ``"scipy"``
        (ignored by the others).

    Returns
    -------
    SolveResult
        With ``info["choice"]`` saying why the method was used.
    """
    started = time.perf_counter()
    method = config.get("solve.method", method)
    if method not in METHODS:
        raise SolverError(f"unknown solve method {method!r}; use one of {METHODS}")
    kind = _kind(kernel)
    size = int(kernel.shape[0]) if kind != "operator" else as_operator(kernel, n=n).n
    if method == "auto":
        method, reason = choose_method(
            size, kind, memory_limit=memory_limit, cluster_memory=cluster_memory_bytes()
        )
    else:
        reason = "asked for"
    if method != "pcg" and kind == "operator":
        raise SolverError(
            f"method={method!r} needs K as an array; a block provider or matvec can only be "
            "solved with method='pcg' (or 'auto')"
        )

    keep_factor = bool(options.pop("keep_factor", False))
    if method == "scipy":
        options["keep_factor"] = keep_factor
        if kind == "numpy":
            result = cholesky_solve(kernel, targets, regularization, **options)
        else:
            # we own the loaded copy: factor it in place, then get the residual by streaming K
            compute_residual = options.pop("compute_residual", True)
            loaded = _load(kernel, kind)
            result = cholesky_solve(
                loaded, targets, regularization, overwrite_kernel=True, **options
            )
            del loaded
            if compute_residual:
                solution = result.x.reshape(size, -1)
                product = as_operator(kernel).matvec(solution)
                result.residual = relative_residual(
                    product, solution, np.asarray(targets, dtype=np.float64), regularization
                )
    elif method == "dask-cholesky":
        result = dask_cholesky_solve(kernel, targets, regularization, **options)
    else:
        result = pcg_solve(kernel, targets, regularization, n=n, **options)
    result.info["choice"] = reason
    result.wall_time_s = time.perf_counter() - started
    return result
