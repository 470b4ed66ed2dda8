"""Local kernels between molecules: in-memory (:mod:`.local`) and blocked / out-of-core
(:mod:`.blocked`)."""

from amondask.kernels.blocked import (
    append_element_blocks,
    block_bounds,
    compute_block,
    kernel_dask_array,
    kernel_progress,
    open_element_blocks,
    suggested_block_size,
    write_element_blocks,
    write_kernel,
)
from amondask.kernels.local import (
    atom_kernel,
    element_max_distances,
    element_sigmas,
    gaussian_local_kernel,
    l1_distances,
    laplacian_local_kernel,
    local_kernel,
)

__all__ = [
    "append_element_blocks",
    "atom_kernel",
    "block_bounds",
    "compute_block",
    "element_max_distances",
    "element_sigmas",
    "gaussian_local_kernel",
    "kernel_dask_array",
    "kernel_progress",
    "l1_distances",
    "laplacian_local_kernel",
    "local_kernel",
    "open_element_blocks",
    "suggested_block_size",
    "write_element_blocks",
    "write_kernel",
]


def compute(workspace, rows: str = "amons", cols: str = "amons", **options):
    """Build K(``rows``, ``cols``) of a workspace into ``kernels/amons-<cols>/K``, resumable.

    A thin wrapper over :func:`amondask.pipeline.kernel.kernel_workspace` (rows are the amon
    conformers; ``cols`` is ``"amons"`` or ``"queries"``); ``options``: kernel, sigma,
    block_size, client.
    """
    from amondask.pipeline.kernel import kernel_workspace

    if rows != "amons":
        raise ValueError("kernel rows are the amons (the training set); use cols= for queries")
    return kernel_workspace(workspace, cols=cols, **options)
