"""The outcome of a solve: the solution and how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SolveResult:
    """Solution of (K + lambda I) x = y and its diagnostics.

    Attributes
    ----------
    x
        The solution, shape (n,) or (n, k) like ``y``.
    method
        What produced it: ``"scipy"``, ``"dask-cholesky"``, ``"pcg"``; a fallback is noted in
        ``info`` (``"jitter"``, ``"fallback"``).
    iterations
        PCG iterations (matrix-vector passes over K); 0 for the direct solvers.
    residual
        Relative residual ||(K + lambda I) x - y|| / ||y||, the largest over the right-hand sides;
        ``nan`` when it was not computed.
    wall_time_s
        Wall-clock seconds of the solve (including preconditioner set-up for PCG).
    converged
        False when PCG stopped at its iteration cap before its tolerance.
    residual_history
        PCG: the relative residual after each iteration (largest over the right-hand sides),
        starting with the initial one; empty for direct solvers.
    info
        Method-specific details (tolerance, landmarks, tile size, jitter, ...).
    factor
        ``"scipy"`` asked with ``keep_factor=True``: the (n, n) lower Cholesky factor L of
        K + lambda I (upper triangle zero), when no jitter was needed; else None.
    """

    x: np.ndarray
    method: str
    iterations: int = 0
    residual: float = float("nan")
    wall_time_s: float = 0.0
    converged: bool = True
    residual_history: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    factor: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"SolveResult(method={self.method!r}, n={self.x.shape[0]}, "
            f"rhs={1 if self.x.ndim == 1 else self.x.shape[1]}, iterations={self.iterations}, "
            f"residual={self.residual:.3g}, wall_time_s={self.wall_time_s:.3g}, "
            f"converged={self.converged})"
        )


def relative_residual(
    kernel_times_x: np.ndarray, x: np.ndarray, targets: np.ndarray, regularization: float
) -> float:
    """max over columns of ||K x + lambda x - y|| / ||y|| given ``K @ x`` (shape like ``x``)."""
    residual = kernel_times_x + regularization * x - targets
    residual = residual.reshape(residual.shape[0], -1)
    targets_2d = targets.reshape(targets.shape[0], -1)
    norms = np.linalg.norm(targets_2d, axis=0)
    norms[norms == 0] = 1.0
    return float(np.max(np.linalg.norm(residual, axis=0) / norms))
