"""Blocked, out-of-core local kernels: K as a dask array of blocks read from Zarr.

The per-element representations live in a Zarr group (one (n_atoms_Z, d_Z) array per element,
see :func:`write_element_blocks`). K (n_row_molecules, n_col_molecules) is cut into square
blocks of ``block_size`` molecules; one task computes one block from the atoms of its molecules
(read ``atom_chunk`` rows at a time) and either returns it (:func:`kernel_dask_array`, to stream
blocks into a solver) or writes it as exactly one chunk of a Zarr array
(:func:`write_kernel`), then sets that block's done-marker. A re-run skips blocks whose marker
is set, so a killed run resumes and a finished one does nothing.

Why whole chunks: concurrent writes to different chunks of one Zarr v3 *shard* lose data, so the
kernel array is unsharded and a task always owns complete chunks (its K block, the mirrored
block of a symmetric kernel, and its marker). Memory per task is bounded by the block, not by K:
about ``8 * (2 * block_size**2 + atom_chunk**2 + 2 * atom_chunk * d_max)`` bytes
(docs/kernels.md has the table and when to stream instead of storing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.highlevelgraph import HighLevelGraph

from amondask import config
from amondask.errors import WorkspaceParameterError
from amondask.kernels.local import (
    KernelName,
    _sigma_for,
    accumulate_element_kernel,
)
from amondask.represent.blocks import ElementBlock

MOLECULE_INDEX_GROUP = "molecule_index"


# ----------------------------------------------------------------------------------------------
# representation storage


def write_element_blocks(
    group: zarr.Group,
    blocks: Mapping[int, ElementBlock],
    *,
    n_molecules: int,
    chunk_rows: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Write per-element blocks into ``group``: array ``<Z>`` (n_atoms_Z, d_Z) float64 chunked
    (chunk_rows, d_Z), and ``molecule_index/<Z>`` (n_atoms_Z,) int64; ``group.attrs`` get
    ``elements``, ``n_molecules`` and ``attributes`` (e.g. mbtypes and the SLATM parameters).

    Existing arrays are replaced. Uncompressed: the kernel re-reads these rows many times.
    """
    for z in blocks:
        for path in (str(int(z)), f"{MOLECULE_INDEX_GROUP}/{int(z)}"):
            if path in group:
                del group[path]
    group.attrs.update({"elements": [], "n_molecules": 0})
    append_element_blocks(
        group, blocks, n_molecules=n_molecules, chunk_rows=chunk_rows, attributes=attributes
    )


def append_element_blocks(
    group: zarr.Group,
    blocks: Mapping[int, ElementBlock],
    *,
    n_molecules: int,
    chunk_rows: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Append a partition of per-element blocks to ``group`` (creating arrays as needed).

    ``blocks`` carry global molecule indices (``element_blocks(..., first_molecule_index=...)``)
    that follow the ones already stored; ``n_molecules`` is the new total. One writer at a time.
    """
    chunk_rows = int(config.get("kernels.representation-chunk-rows", chunk_rows))
    owners = group.require_group(MOLECULE_INDEX_GROUP)
    elements = {int(z) for z in group.attrs.get("elements", [])}
    for z, block in blocks.items():
        z = int(z)
        x = np.asarray(block.x, dtype=np.float64)
        owner = np.asarray(block.molecule_index, dtype=np.int64)
        if len(owner) > 1 and np.any(np.diff(owner) < 0):
            raise ValueError(f"element {z}: molecule_index must be sorted (atoms by molecule)")
        if len(owner) and owner[-1] >= n_molecules:
            raise ValueError(f"element {z}: molecule index {owner[-1]} >= n_molecules")
        if str(z) not in group:
            group.create_array(
                str(z),
                shape=(0, x.shape[1]),
                chunks=(chunk_rows, max(x.shape[1], 1)),
                dtype="float64",
                compressors=None,
            )
            owners.create_array(str(z), shape=(0,), chunks=(65536,), dtype="int64")
        stored_x, stored_owner = group[str(z)], owners[str(z)]
        if stored_x.shape[1] != x.shape[1]:
            raise WorkspaceParameterError(
                f"element {z}: stored representation has {stored_x.shape[1]} features, this "
                f"partition {x.shape[1]}; use the mbtypes and SLATM parameters of the store"
            )
        if len(owner) and stored_owner.shape[0]:
            if owner[0] < stored_owner[stored_owner.shape[0] - 1]:
                raise ValueError(f"element {z}: appended molecule indices must follow stored ones")
        if len(owner):
            stored_x.append(x, axis=0)
            stored_owner.append(owner, axis=0)
        elements.add(z)
    group.attrs.update(
        {
            "elements": sorted(elements),
            "n_molecules": int(n_molecules),
            **dict(attributes or {}),
        }
    )


def open_element_blocks(group: zarr.Group) -> tuple[dict[int, ElementBlock], int]:
    """The per-element blocks of a group written by :func:`write_element_blocks`, lazily:
    ({Z: ElementBlock(zarr x array, zarr molecule_index array)}, n_molecules)."""
    try:
        elements = [int(z) for z in group.attrs["elements"]]
        n_molecules = int(group.attrs["n_molecules"])
    except KeyError as exc:
        raise WorkspaceParameterError(
            f"group {group.path!r} has no per-element representation (attrs 'elements', "
            "'n_molecules'); write it with amondask.kernels.write_element_blocks"
        ) from exc
    owners = group[MOLECULE_INDEX_GROUP]
    return {z: ElementBlock(group[str(z)], owners[str(z)]) for z in elements}, n_molecules


# ----------------------------------------------------------------------------------------------
# block plan


def block_bounds(n_molecules: int, block_size: int) -> np.ndarray:
    """(n_blocks + 1,) int64 molecule boundaries of the blocks."""
    return np.append(np.arange(0, n_molecules, block_size), n_molecules).astype(np.int64)


def _atom_ranges(blocks: Mapping[int, ElementBlock], bounds: np.ndarray) -> dict[int, np.ndarray]:
    """{Z: (n_blocks + 1,) atom boundaries}: the atoms of block b are rows [r[b], r[b + 1])."""
    ranges = {}
    for z, block in blocks.items():
        owner = np.asarray(block.molecule_index[:], dtype=np.int64)
        if len(owner) > 1 and np.any(np.diff(owner) < 0):
            raise ValueError(f"element {z}: molecule_index must be sorted (atoms by molecule)")
        ranges[z] = np.searchsorted(owner, bounds, side="left").astype(np.int64)
    return ranges


class _RowWindow:
    """Rows [start, stop) of a 2-D array-like, sliced lazily (zarr reads only what is asked)."""

    def __init__(self, array: Any, start: int, stop: int):
        self.array, self.start, self.stop = array, int(start), int(stop)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.stop - self.start, int(self.array.shape[1]))

    def __getitem__(self, item: slice) -> np.ndarray:
        lo, hi, _ = item.indices(self.stop - self.start)
        return np.asarray(self.array[self.start + lo : self.start + hi])


def compute_block(
    rows: Mapping[int, ElementBlock],
    cols: Mapping[int, ElementBlock] | None,
    row_atoms: Mapping[int, tuple[int, int]],
    col_atoms: Mapping[int, tuple[int, int]],
    row_molecules: tuple[int, int],
    col_molecules: tuple[int, int],
    *,
    sigma: float | Mapping[int, float],
    kernel: KernelName,
    atom_chunk: int,
    column_cache_bytes: int = 0,
) -> np.ndarray:
    """One kernel block (n_row_mols, n_col_mols): molecules [m0, m1) x [n0, n1), from the atom
    row ranges of each element. ``cols=None`` means a diagonal block of a symmetric kernel."""
    out = np.zeros((row_molecules[1] - row_molecules[0], col_molecules[1] - col_molecules[0]))
    for z, block in rows.items():
        r0, r1 = row_atoms[z]
        if r1 <= r0:
            continue
        x_rows = _RowWindow(block.x, r0, r1)
        row_owner = np.asarray(block.molecule_index[r0:r1], dtype=np.int64)
        if cols is None:
            x_cols = col_owner = None
        else:
            if z not in cols:
                continue
            c0, c1 = col_atoms[z]
            if c1 <= c0:
                continue
            x_cols = _RowWindow(cols[z].x, c0, c1)
            col_owner = np.asarray(cols[z].molecule_index[c0:c1], dtype=np.int64)
        accumulate_element_kernel(
            out,
            x_rows,
            row_owner,
            x_cols,
            col_owner,
            _sigma_for(sigma, z),
            kernel,
            row_offset=row_molecules[0],
            col_offset=col_molecules[0],
            atom_chunk=atom_chunk,
            column_cache_bytes=column_cache_bytes,
        )
    if cols is None:  # diagonal block of a symmetric K: GEMM rounding is not bitwise symmetric
        out = 0.5 * (out + out.T)
    return out


class _Plan:
    """Everything a block task needs, computed once on the client."""

    def __init__(self, rows, cols, n_rows, n_cols, block_size):
        self.rows, self.cols = rows, cols
        self.symmetric = cols is None
        self.row_bounds = block_bounds(n_rows, block_size)
        self.col_bounds = self.row_bounds if self.symmetric else block_bounds(n_cols, block_size)
        self.row_atoms = _atom_ranges(rows, self.row_bounds)
        self.col_atoms = self.row_atoms if self.symmetric else _atom_ranges(cols, self.col_bounds)
        self.shape = (n_rows, n_cols)
        self.n_blocks = (len(self.row_bounds) - 1, len(self.col_bounds) - 1)

    def block_arguments(self, i: int, j: int) -> tuple:
        diagonal = self.symmetric and i == j
        col_source = self.rows if self.symmetric else self.cols
        return (
            self.rows,
            None if diagonal else col_source,
            {z: (int(r[i]), int(r[i + 1])) for z, r in self.row_atoms.items()},
            {z: (int(r[j]), int(r[j + 1])) for z, r in self.col_atoms.items()},
            (int(self.row_bounds[i]), int(self.row_bounds[i + 1])),
            (int(self.col_bounds[j]), int(self.col_bounds[j + 1])),
        )

    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return tuple(np.diff(self.row_bounds).tolist()), tuple(np.diff(self.col_bounds).tolist())

    def blocks_to_compute(self) -> list[tuple[int, int]]:
        n_i, n_j = self.n_blocks
        return [(i, j) for i in range(n_i) for j in range(n_j) if not (self.symmetric and j < i)]


def _resolve(rows, cols, n_row_molecules, n_col_molecules):
    """Accept zarr groups (written by write_element_blocks) or block mappings."""
    if isinstance(rows, zarr.Group):
        rows, n_from_group = open_element_blocks(rows)
        n_row_molecules = n_from_group if n_row_molecules is None else n_row_molecules
    if isinstance(cols, zarr.Group):
        cols, n_from_group = open_element_blocks(cols)
        n_col_molecules = n_from_group if n_col_molecules is None else n_col_molecules
    if n_row_molecules is None or (cols is not None and n_col_molecules is None):
        raise ValueError("give n_row_molecules / n_col_molecules with block mappings")
    if cols is None:
        n_col_molecules = n_row_molecules
    for z, block in rows.items():
        if cols is not None and z in cols and block.x.shape[1] != cols[z].x.shape[1]:
            raise WorkspaceParameterError(
                f"element {z}: row representation has {block.x.shape[1]} features, column "
                f"representation {cols[z].x.shape[1]}; compute both with the same mbtypes "
                "and SLATM parameters"
            )
    return rows, cols, int(n_row_molecules), int(n_col_molecules)


# ----------------------------------------------------------------------------------------------
# streaming: K as a dask array


def kernel_dask_array(
    rows: zarr.Group | Mapping[int, ElementBlock],
    cols: zarr.Group | Mapping[int, ElementBlock] | None = None,
    *,
    sigma: float | Mapping[int, float],
    kernel: KernelName | None = None,
    block_size: int | None = None,
    atom_chunk: int | None = None,
    n_row_molecules: int | None = None,
    n_col_molecules: int | None = None,
    column_cache_bytes: int | None = None,
) -> da.Array:
    """K (n_row_molecules, n_col_molecules) float64 as a lazy dask array of blocks.

    Each block is computed from the representation rows of its molecules when the array is
    computed; with ``cols=None`` (symmetric) the lower blocks are transposes of the upper ones
    (computed once). Nothing is stored: use it to stream K into a solver block by block, or
    :func:`write_kernel` to keep it.
    """
    kernel = config.get("kernels.kernel", kernel)
    block_size = int(config.get("kernels.block-size", block_size))
    atom_chunk = int(config.get("kernels.atom-chunk", atom_chunk))
    cache_bytes = int(config.get("kernels.column-cache-bytes", column_cache_bytes))
    rows, cols, n_rows, n_cols = _resolve(rows, cols, n_row_molecules, n_col_molecules)
    plan = _Plan(rows, cols, n_rows, n_cols, block_size)
    name = "local-kernel-" + dask.base.tokenize(
        _token(rows), _token(cols), sigma, kernel, block_size, atom_chunk, n_rows, n_cols
    )
    # the representation handles enter the graph once, as keys the block tasks refer to
    rows_key, cols_key = f"{name}-rows", f"{name}-cols"
    layer: dict = {rows_key: _Opaque(rows), cols_key: _Opaque(cols)}
    for i, j in plan.blocks_to_compute():
        _, col_source, *ranges = plan.block_arguments(i, j)
        layer[(name, i, j)] = (
            _compute_block_task,
            rows_key,
            None if col_source is None else (rows_key if plan.symmetric else cols_key),
            *ranges,
            sigma,
            kernel,
            (atom_chunk, cache_bytes),
        )
        if plan.symmetric and j > i:
            layer[(name, j, i)] = (np.transpose, (name, i, j))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks=plan.chunks(), dtype=np.float64)


def _token(blocks) -> Any:
    if blocks is None:
        return None
    return [(z, id(b.x), np.shape(b.x)) for z, b in sorted(blocks.items())]


class _Opaque:
    """Carries the block mappings through a dask graph without dask looking inside."""

    def __init__(self, value: Any):
        self.value = value


def _unwrap(handle: Any) -> Any:
    return handle.value if isinstance(handle, _Opaque) else handle


def _compute_block_task(rows, cols, row_atoms, col_atoms, row_mols, col_mols, sigma, kernel, chunk):
    return compute_block(
        _unwrap(rows),
        _unwrap(cols),
        row_atoms,
        col_atoms,
        row_mols,
        col_mols,
        sigma=sigma,
        kernel=kernel,
        atom_chunk=chunk[0],
        column_cache_bytes=chunk[1],
    )


# ----------------------------------------------------------------------------------------------
# out-of-core: K written to Zarr, resumable


def _kernel_attributes(kernel, sigma, block_size, symmetric, shape) -> dict[str, Any]:
    if isinstance(sigma, Mapping):
        sigma_json: Any = {str(int(z)): float(s) for z, s in sorted(sigma.items())}
    else:
        sigma_json = float(sigma)
    return {
        "kernel": kernel,
        "sigma": sigma_json,
        "block_size": int(block_size),
        "symmetric": bool(symmetric),
        "shape": [int(shape[0]), int(shape[1])],
    }


def _open_or_create(group, name, attributes, plan, block_size, overwrite):
    done_name = f"{name}_done"
    if name in group and not overwrite:
        existing = group[name]
        stored = {k: existing.attrs.get(k) for k in attributes}
        if stored != attributes or done_name not in group:
            raise WorkspaceParameterError(
                f"kernel {name!r} in {group.path or '/'!r} was built with {stored}, this run asks "
                f"for {attributes}; pass overwrite=True to rebuild it or choose another name"
            )
        return existing, group[done_name]
    k_array = group.create_array(
        name,
        shape=plan.shape,
        chunks=(block_size, block_size),
        dtype="float64",
        compressors=None,
        fill_value=0.0,
        overwrite=True,
        attributes=attributes,
    )
    done = group.create_array(
        done_name,
        shape=plan.n_blocks,
        chunks=(1, 1),
        dtype="uint8",
        compressors=None,
        fill_value=0,
        overwrite=True,
    )
    return k_array, done


def _write_block_task(
    k_array, done, i, j, mirror, rows, cols, row_atoms, col_atoms, row_mols, col_mols,
    sigma, kernel, chunk,
) -> tuple[int, int]:  # fmt: skip
    block = compute_block(
        _unwrap(rows), _unwrap(cols), row_atoms, col_atoms, row_mols, col_mols,
        sigma=sigma, kernel=kernel, atom_chunk=chunk[0], column_cache_bytes=chunk[1],
    )  # fmt: skip
    k_array[row_mols[0] : row_mols[1], col_mols[0] : col_mols[1]] = block
    if mirror:
        k_array[col_mols[0] : col_mols[1], row_mols[0] : row_mols[1]] = np.ascontiguousarray(
            block.T
        )
        done[j, i] = 1
    done[i, j] = 1  # last: the block is only "done" once its chunks are on disk
    return i, j


def write_kernel(
    rows: zarr.Group | Mapping[int, ElementBlock],
    cols: zarr.Group | Mapping[int, ElementBlock] | None,
    group: zarr.Group,
    *,
    sigma: float | Mapping[int, float],
    name: str = "K",
    kernel: KernelName | None = None,
    block_size: int | None = None,
    atom_chunk: int | None = None,
    n_row_molecules: int | None = None,
    n_col_molecules: int | None = None,
    overwrite: bool = False,
    scheduler: Any = None,
    column_cache_bytes: int | None = None,
) -> zarr.Array:
    """Compute K block by block with Dask and write it into ``group[name]``; resumable.

    Args:
        rows, cols: zarr groups written by :func:`write_element_blocks` (or in-memory block
            mappings, then give the molecule counts); ``cols=None`` for the symmetric K(rows,
            rows), whose lower blocks are written as transposes of the upper ones.
        group: the zarr group to write into (a directory store when the workers are processes).
        sigma: kernel width, one float or {Z: sigma_Z}.
        name: array name; ``<name>_done`` (n_row_blocks, n_col_blocks) uint8 holds the markers.
        kernel: "gaussian" or "laplacian" (default from config ``kernels.kernel``).
        block_size: molecules per block side = chunk side of K (config ``kernels.block-size``).
        atom_chunk: atoms per atom-pair sub-block inside a task (config ``kernels.atom-chunk``).
        column_cache_bytes: keep a block's column atoms of one element in memory when they fit
            (read once instead of once per row chunk; config ``kernels.column-cache-bytes``).
        overwrite: rebuild even if ``group[name]`` exists (else its parameters must match).
        scheduler: passed to ``dask.compute`` (default: the active client or the threaded one).

    Returns:
        the zarr array K (n_row_molecules, n_col_molecules) float64, chunks (block_size,
        block_size), no shards, attrs kernel / sigma / block_size / symmetric / shape.
    """
    kernel = config.get("kernels.kernel", kernel)
    block_size = int(config.get("kernels.block-size", block_size))
    atom_chunk = int(config.get("kernels.atom-chunk", atom_chunk))
    cache_bytes = int(config.get("kernels.column-cache-bytes", column_cache_bytes))
    rows, cols, n_rows, n_cols = _resolve(rows, cols, n_row_molecules, n_col_molecules)
    plan = _Plan(rows, cols, n_rows, n_cols, block_size)
    attributes = _kernel_attributes(kernel, sigma, block_size, plan.symmetric, plan.shape)
    k_array, done = _open_or_create(group, name, attributes, plan, block_size, overwrite)
    finished = done[...]
    # the representation handles enter the graph once
    rows_handle = dask.delayed(_Opaque(rows), traverse=False)
    cols_handle = rows_handle if plan.symmetric else dask.delayed(_Opaque(cols), traverse=False)
    tasks = []
    for i, j in plan.blocks_to_compute():
        if finished[i, j]:
            continue
        mirror = plan.symmetric and j > i
        _, col_source, *ranges = plan.block_arguments(i, j)
        tasks.append(
            dask.delayed(_write_block_task, pure=False)(
                k_array,
                done,
                i,
                j,
                mirror,
                rows_handle,
                None if col_source is None else cols_handle,
                *ranges,
                sigma,
                kernel,
                (atom_chunk, cache_bytes),
            )
        )
    if tasks:
        dask.compute(*tasks, scheduler=scheduler)
    return k_array


def kernel_progress(group: zarr.Group, name: str = "K") -> float:
    """Fraction of K's blocks written (symmetric kernels count both triangles)."""
    done = group[f"{name}_done"][...]
    return float(done.mean()) if done.size else 1.0


def suggested_block_size(memory_bytes: float, *, atom_chunk: int, max_features: int) -> int:
    """Largest block side (molecules) whose task fits in ``memory_bytes``:
    8 * (2 * b**2 + atom_chunk**2 + 2 * atom_chunk * max_features) <= memory_bytes."""
    fixed = 8.0 * (atom_chunk**2 + 2.0 * atom_chunk * max_features)
    free = memory_bytes - fixed
    if free <= 0:
        raise ValueError(
            f"{memory_bytes / 2**30:.2f} GiB does not hold the atom sub-blocks "
            f"({fixed / 2**30:.2f} GiB); lower atom_chunk"
        )
    return max(1, int(math.sqrt(free / 16.0)))
