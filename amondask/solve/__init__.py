"""Solvers for the kernel ridge regression system (K + lambda I) alpha = y.

See :mod:`amondask.solve.choose` for the automatic choice among them.
"""

from amondask.solve.cholesky import blas_thread_guard, cholesky_solve
from amondask.solve.result import SolveResult

__all__ = ["SolveResult", "blas_thread_guard", "cholesky_solve"]
