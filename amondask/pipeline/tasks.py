"""Running a list of tasks on Dask workers (or in this process), with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

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
        from distributed import as_completed

        futures = [client.submit(function, *args, pure=False) for args in arguments]
        index = {future.key: k for k, future in enumerate(futures)}
        results = [None] * len(futures)
        for future in as_completed(futures):
            results[index[future.key]] = future.result()
            bar.update()
        return results
    finally:
        bar.close()
