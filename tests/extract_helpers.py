"""Helpers for the extraction tests: build a store and dump its whole content for comparison."""

from __future__ import annotations

import numpy as np

from amondask.pipeline import SERIAL, extract_workspace
from amondask.store import Workspace
from amondask.store.ingest import read_into_workspace


def store_content(workspace: Workspace) -> dict[str, np.ndarray]:
    """Every committed value of the amon store's tables, by table/column."""
    store = workspace.amons
    tables = {
        "amons": store.amons,
        "conformers": store.conformers,
        "query_amons": store.query_amons,
        "query_conformers": store.query_conformers,
    }
    out: dict[str, np.ndarray] = {}
    for name, table in tables.items():
        for column in table.columns:
            if column in ("offsets", "bond_offsets"):
                values = table.offsets(kind=column)
            elif column in ("numbers", "formal_charges", "positions"):
                values = table.group[column][: table.n_atoms]
            elif column == "bonds":
                values = table.group[column][: int(table.offsets(kind="bond_offsets")[-1])]
            else:
                values = table.read(column)
            out[f"{name}/{column}"] = np.asarray(
                values.tolist() if values.dtype.kind == "T" else values
            )
    out["extracted"] = np.array(store.extracted_queries)
    return out


def assert_same_content(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def build(path, source, *, client=SERIAL, max_heavy_atoms=4, **options) -> Workspace:
    workspace = Workspace(path)
    read_into_workspace(source, workspace, progress=False)
    extract_workspace(
        workspace, max_heavy_atoms=max_heavy_atoms, client=client, progress=False, **options
    )
    return workspace
