"""Running a list of tasks on Dask workers (or in this process), with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from amondask import config
from amondask.errors import ClusterError

#: Pass as ``client`` to run tasks one after the other in this process (no Dask cluster): for
#: in-memory workspaces, debugging and small inputs.
SERIAL = "serial"


def run_tasks(
    client: Any,
    function: Callable[..., Any],
    arguments: Sequence[tuple],
    *,
    description: str,
    progress: bool = True,
) -> list[Any]:
    """``[function(*args) for args in arguments]``, on the cluster when ``client`` is a Client.

    Results come back in the order of ``arguments``. A task that raises stops the run with
    its exception (after distributed's own retries of tasks lost with a worker).
    """
    bar = tqdm(total=len(arguments), desc=description, unit="task", disable=not progress)
    try:
        if client is SERIAL or client is None:
            results = []
            for args in arguments:
                results.append(function(*args))
                bar.update()
            return results
        futures = [client.submit(function, *args, pure=False) for args in arguments]
        index = {future.key: k for k, future in enumerate(futures)}
        results = [None] * len(futures)
        for future in _as_completed_or_lost(client, futures, description):
            results[index[future.key]] = future.result()
            bar.update()
        return results
    finally:
        bar.close()


def _as_completed_or_lost(client: Any, futures: list, description: str) -> Iterator[Any]:
    """The futures as they finish; raises ClusterError when the cluster, having had workers
    during the stage, has had none for ``amondask.cluster.lost-workers-timeout-s`` (a worker
    that died and whose nanny could not restart it leaves the tasks waiting forever)."""
    from distributed import wait
    from distributed.utils import TimeoutError as DistributedTimeout

    timeout = config.get("cluster.lost-workers-timeout-s")
    timeout = None if timeout in (None, 0) else float(timeout)
    poll = 5.0 if timeout is None else min(5.0, timeout)
    pending = set(futures)
    had_workers = bool(client.nthreads())
    lost_since: float | None = None
    while pending:
        try:
            done, pending = wait(pending, timeout=poll, return_when="FIRST_COMPLETED")
        except (DistributedTimeout, TimeoutError):
            done = set()
        yield from done
        if done or timeout is None:
            lost_since = None
            continue
        n_workers = len(client.nthreads())
        if n_workers:
            had_workers, lost_since = True, None
        elif had_workers or lost_since is not None:
            lost_since = time.monotonic() if lost_since is None else lost_since
            if time.monotonic() - lost_since >= timeout:
                raise ClusterError(
                    f"the cluster has had no workers for {timeout:.0f} s while {len(pending)} "
                    f"'{description}' tasks wait (workers died and were not replaced: out of "
                    "memory, killed, or a nanny that could not restart them). Finished tasks "
                    "are kept in the workspace: fix the cluster and run the same command again "
                    "to resume (amondask.cluster.lost-workers-timeout-s sets this wait)"
                )
