"""Solvers for the kernel ridge regression system (K + lambda I) alpha = y.

:func:`solve` picks among an in-memory Cholesky (scipy), a blocked Cholesky on the dask cluster
and a matrix-free preconditioned CG that streams K; see :mod:`amondask.solve.choose`.
"""

from amondask.solve.blocked import dask_cholesky_solve, tiled_cholesky_solve_graph
from amondask.solve.cholesky import blas_thread_guard, cholesky_solve
from amondask.solve.choose import choose_method, solve
from amondask.solve.pcg import (
    ArrayBlockProvider,
    CallableOperator,
    DaskArrayProvider,
    FunctionBlockProvider,
    KernelOperator,
    NystromPreconditioner,
    nystrom_preconditioner,
    pcg_solve,
)
from amondask.solve.result import SolveResult

__all__ = [
    "ArrayBlockProvider",
    "CallableOperator",
    "DaskArrayProvider",
    "FunctionBlockProvider",
    "KernelOperator",
    "NystromPreconditioner",
    "SolveResult",
    "blas_thread_guard",
    "cholesky_solve",
    "choose_method",
    "dask_cholesky_solve",
    "nystrom_preconditioner",
    "pcg_solve",
    "solve",
    "tiled_cholesky_solve_graph",
]
