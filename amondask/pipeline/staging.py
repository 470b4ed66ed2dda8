"""Staging areas: per-task results written to the workspace before they are merged.

A staging group holds the outputs of many tasks, each in its own subgroup, so tasks never write
the same Zarr chunk. A subgroup counts only once its ``complete`` attribute is set, which its task
does last: a task killed midway leaves an incomplete subgroup that the re-run overwrites.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage

COMPLETE_ATTR = "complete"


def fresh_group(parent: zarr.Group, name: str) -> zarr.Group:
    """An empty subgroup ``name`` (an incomplete earlier attempt is discarded)."""
    if name in parent:
        delete_group(parent, name)
    return parent.create_group(name)


def delete_group(parent: zarr.Group, name: str) -> None:
    """Delete the subgroup ``name`` and everything in it.

    On a local directory store the directory is removed at once (zarr deletes key by key, which
    takes seconds for a staging area of many small arrays).
    """
    store = parent.store
    root = getattr(store, "root", None)
    if isinstance(store, zarr.storage.LocalStore) and root is not None:
        path = Path(root) / parent.path / name
        if path.is_dir():
            shutil.rmtree(path)
            return
    del parent[name]


def is_complete(parent: zarr.Group, name: str) -> bool:
    return name in parent and bool(parent[name].attrs.get(COMPLETE_ATTR, False))


def mark_complete(group: zarr.Group, **summary: Any) -> None:
    group.attrs.update({**summary, COMPLETE_ATTR: True})


def write_columns(group: zarr.Group, columns: dict[str, np.ndarray], chunk_rows: int) -> None:
    """Write whole 1-D/2-D columns as arrays of ``group`` (strings as variable-length text)."""
    for name, values in columns.items():
        values = np.asarray(values)
        is_text = values.dtype.kind in ("U", "O", "T")
        dtype = str if is_text else values.dtype
        shape = values.shape
        chunks = (max(1, min(chunk_rows, shape[0] or 1)), *shape[1:])
        array = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype)
        if shape[0]:
            array[...] = values.astype(np.dtypes.StringDType()) if is_text else values


def read_column(group: zarr.Group, name: str, start: int = 0, stop: int | None = None):
    values = group[name][start:stop]
    return [str(v) for v in values.tolist()] if values.dtype.kind == "T" else values


def merged_rows(
    sources: Sequence[Callable[[int, int], list[tuple]]],
    lengths: Sequence[int],
    chunk: int = 50_000,
) -> Iterator[tuple[int, int, tuple]]:
    """K-way merge of sorted row streams: yields ``(source, row, row_key)`` in key order.

    ``sources[k](start, stop)`` returns the sort keys of rows [start, stop) of stream k, which
    must be sorted; each stream is read ``chunk`` rows at a time, so memory stays bounded.
    """

    def stream(k: int) -> Iterator[tuple[tuple, int, int]]:
        for start in range(0, lengths[k], chunk):
            keys = sources[k](start, min(start + chunk, lengths[k]))
            for offset, key in enumerate(keys):
                yield key, k, start + offset

    for key, k, row in heapq.merge(*(stream(k) for k in range(len(sources)))):
        yield k, row, key
