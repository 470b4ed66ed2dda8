"""Which Dask cluster a stage runs on.

``client=None`` starts the embedded default, a :class:`distributed.LocalCluster` with one
single-threaded worker process per core (BLAS/OpenMP pinned to one thread per worker, since
oversubscription collapses throughput); a :class:`distributed.Client` is used as given; a
scheduler address (``tcp://host:8786``) or a scheduler file (JSON written by
``dask scheduler --scheduler-file``) attaches to an existing cluster. The dashboard link is
printed at start.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from amondask import config

PINNED_THREADS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


@contextlib.contextmanager
def get_client(
    client: object | None = None,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    quiet: bool = False,
) -> Iterator[object]:
    """Yield a distributed Client: the one given, one attached to ``scheduler``, or a new local one.

    ``client`` may also be :data:`amondask.pipeline.tasks.SERIAL` (run in this process, no
    Dask), which is yielded as it is. Clusters started here are closed on exit; given clients
    and attached clusters are not.
    """
    from distributed import Client, LocalCluster

    if client is not None:  # a Client, or SERIAL
        yield client
        return
    scheduler = config.get("cluster.scheduler", scheduler)
    if scheduler:
        if Path(str(scheduler)).is_file():
            attached = Client(scheduler_file=str(scheduler))
        else:
            attached = Client(str(scheduler))
        _announce(attached, quiet)
        try:
            yield attached
        finally:
            attached.close()
        return
    n_workers = int(config.get("cluster.n-workers", n_workers) or os.cpu_count() or 1)
    if n_workers < 1:
        from amondask.errors import ConfigError

        raise ConfigError(
            f"a LocalCluster needs at least 1 worker, not {n_workers} (None: one per core; "
            "pass SERIAL to run in this process without Dask)"
        )
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=config.get("cluster.dashboard-address"),
        env=PINNED_THREADS_ENV,
    )
    local = Client(cluster)
    _announce(local, quiet)
    try:
        yield local
    finally:
        local.close()
        cluster.close()


def _announce(client: object, quiet: bool) -> None:
    if quiet:
        return
    link = getattr(client, "dashboard_link", None)
    workers = len(client.scheduler_info().get("workers", {}))  # type: ignore[attr-defined]
    print(f"dask: {workers} workers, dashboard {link}", file=sys.stderr)
