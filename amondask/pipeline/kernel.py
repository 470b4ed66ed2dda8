"""The kernel stage: local kernels between the workspace's amons (and queries), out-of-core.

``kernels/amons-amons/K`` (n_conformers, n_conformers) and ``kernels/amons-queries/K``
(n_conformers, n_queries) (and ``kernels/amons-<name>/K`` for another representation of the
queries, e.g. ``queries-at-<level>`` of the evaluation stage) are built block by block with
:func:`amondask.kernels.write_kernel` from the stored aSLATM
(:func:`amondask.pipeline.represent.open_representation`): one task per block, written as one
Zarr chunk, with done-markers so that a re-run computes only missing blocks. The widths are the
authors' per-element sigma_Z (the farthest same-element pair of amon atoms scores 0.5) unless
given; they are stored with the kernels, and the amon-query kernel uses those of the amon-amon
kernel.

When the amons grow (new queries extracted), the stored kernels no longer match: they are
rebuilt (``overwrite``), since a kernel's block plan is fixed by its shape.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from amondask import config
from amondask.pipeline.represent import open_representation
from amondask.pipeline.tasks import SERIAL
from amondask.store.workspace import Workspace

Columns = str
"""A representation name: ``"amons"``, ``"queries"`` or e.g. ``"queries-at-<level slug>"``."""


@dataclass
class KernelReport:
    name: str
    shape: tuple[int, int]
    kernel: str
    sigma: dict[int, float]
    seconds: float

    def format(self) -> str:
        widths = ", ".join(f"{z}: {s:.3g}" for z, s in sorted(self.sigma.items()))
        return (
            f"kernel {self.name} {self.shape[0]} x {self.shape[1]} ({self.kernel}, sigma_Z "
            f"{widths}) in {self.seconds:.1f} s"
        )


def kernel_group_name(cols: Columns) -> str:
    return f"amons-{cols}"


def amon_sigmas(workspace: Workspace, kernel: str) -> dict[int, float]:
    """The per-element widths of the amon-amon kernel, computed once and kept in its attrs."""
    from amondask.kernels import element_sigmas

    group = workspace.root.require_group(f"kernels/{kernel_group_name('amons')}")
    blocks, n_rows = open_representation(workspace, "amons")
    stored = group.attrs.get("sigma_z")
    if stored is not None and group.attrs.get("sigma_rows") == n_rows:
        return {int(z): float(s) for z, s in stored.items()}
    sigmas = element_sigmas(blocks, kernel=kernel)
    group.attrs.update({"sigma_z": {str(z): s for z, s in sigmas.items()}, "sigma_rows": n_rows})
    return sigmas


def kernel_workspace(
    workspace: Workspace,
    *,
    cols: Columns = "amons",
    kernel: str | None = None,
    sigma: float | dict[int, float] | None = None,
    block_size: int | None = None,
    client: Any = None,
    progress: bool = False,
) -> KernelReport:
    """Build K(amons, ``cols``) into ``kernels/amons-<cols>/K``; resumable. ``progress``: a bar
    of the blocks written (already written ones included), whatever the scheduler."""
    import time

    from amondask.kernels import write_kernel

    kernel = str(config.get("kernels.kernel", kernel))
    started = time.perf_counter()
    rows, n_rows = open_representation(workspace, "amons")
    columns, n_cols = (rows, n_rows) if cols == "amons" else open_representation(workspace, cols)
    widths = sigma if sigma is not None else amon_sigmas(workspace, kernel)
    group = workspace.root.require_group(f"kernels/{kernel_group_name(cols)}")
    existing = group.get("K")
    overwrite = existing is not None and tuple(existing.shape) != (n_rows, n_cols)
    with blocks_progress_bar(group, "K", f"kernel {kernel_group_name(cols)}", enabled=progress):
        write_kernel(
            rows,
            None if cols == "amons" else columns,
            group,
            sigma=widths,
            kernel=kernel,
            block_size=block_size,
            n_row_molecules=n_rows,
            n_col_molecules=n_cols,
            overwrite=overwrite,
            scheduler="sync" if client is SERIAL else None,
        )
    as_dict = widths if isinstance(widths, dict) else {z: float(widths) for z in rows}
    return KernelReport(
        name=kernel_group_name(cols),
        shape=(n_rows, n_cols),
        kernel=kernel,
        sigma={int(z): float(s) for z, s in as_dict.items()},
        seconds=time.perf_counter() - started,
    )


@contextlib.contextmanager
def blocks_progress_bar(
    group: Any, name: str, description: str, *, enabled: bool = True, interval_s: float = 2.0
) -> Iterator[None]:
    """A progress bar of the kernel blocks written while the body runs: a thread reads the
    done-markers ``group[name + "_done"]`` (written by the block tasks, wherever they run)
    every ``interval_s`` seconds. A symmetric kernel counts both triangles."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc=description, unit="block", total=None)
    stop = threading.Event()

    def update() -> None:
        markers = group.get(f"{name}_done")
        if markers is None:  # not created yet
            return
        done = markers[...]
        bar.total = int(done.size)
        bar.n = int(np.count_nonzero(done))
        bar.refresh()

    def poll() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a marker chunk being written: next time
                update()

    thread = threading.Thread(target=poll, name="kernel-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(Exception):
            update()
        bar.close()


def open_kernel(workspace: Workspace, cols: Columns = "amons") -> Any:
    """The stored kernel K(amons, ``cols``) as a Zarr array."""
    from amondask.errors import WorkspaceError

    path = f"kernels/{kernel_group_name(cols)}/K"
    if not workspace.has(path):
        raise WorkspaceError(
            f"workspace {workspace.location} has no kernel {path}; run the kernel stage first"
        )
    return workspace.root[path]


def kernels(
    workspace: Workspace | str,
    *,
    queries: bool = True,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> list[KernelReport]:
    """The kernel stage on its own: K(amons, amons) and (``queries``) K(amons, queries) of
    ``workspace``; ``client`` as in :func:`amondask.extract`. Resumable."""
    from amondask.cluster import get_client

    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    columns: list[Columns] = ["amons", "queries"] if queries else ["amons"]
    with get_client(client, scheduler=scheduler, n_workers=n_workers, quiet=not progress) as active:
        return [
            kernel_workspace(workspace, cols=c, client=active, progress=progress) for c in columns
        ]
