"""Thread limits for one labeling task: OpenMP and BLAS pools pinned for the task's duration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def limited_threads(n_threads: int) -> Iterator[None]:
    """Limit OpenMP and BLAS thread pools (tblite's libgomp, numpy's OpenBLAS) to ``n_threads``.

    Uses threadpoolctl, which calls ``omp_set_num_threads`` and the BLAS equivalents on the
    libraries already loaded, so it works after import (environment variables do not).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy's stack
        yield
        return
    with threadpool_limits(limits=int(n_threads)):
        yield
