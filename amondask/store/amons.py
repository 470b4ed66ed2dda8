"""The global amon store inside a workspace, and views on it.

Groups (row index = id; ids are stable, new rows are only ever appended):

``amons/``               one row per distinct amon graph: ``key`` (canonical SMILES, the dedup key),
                         ``smiles``, ``n_heavy`` (int8), ``first_query`` (int64, the query where the
                         amon was first seen).
``amons/conformers/``    one row per distinct 3D conformer (ragged molecules, see
                         :class:`~amondask.store.table.RaggedMoleculeTable`) plus ``amon`` (int64,
                         the graph's id) and ``first_query``.
``query_amons/``         sparse COO ``query``, ``amon``, ``count`` (int32): how many distinct
                         heavy-atom subgraphs of the query give the amon (its "DNA" count).
``query_conformers/``    COO ``query``, ``conformer``: which conformers came from each query.

The workspace attribute ``amondask.extracted_queries`` says how many queries (from row 0) have
their amons merged into the store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amondask.store.table import Column, RaggedMoleculeTable, Table
from amondask.store.workspace import Workspace

AMON_COLUMNS = {
    "key": Column("str"),
    "smiles": Column("str"),
    "n_heavy": Column("int8"),
    "first_query": Column("int64"),
}
CONFORMER_COLUMNS = {"amon": Column("int64"), "first_query": Column("int64")}
QUERY_AMON_COLUMNS = {
    "query": Column("int64"),
    "amon": Column("int64"),
    "count": Column("int32"),
}
QUERY_CONFORMER_COLUMNS = {"query": Column("int64"), "conformer": Column("int64")}
EXTRACTED_ATTR = "extracted_queries"


class AmonStore:
    """The amon tables of one workspace, created on first use."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        root = workspace.root
        chunk_rows = workspace.chunk_rows
        writable = workspace.mode != "r"
        if writable:
            self.amons = Table.create(root, "amons", AMON_COLUMNS, chunk_rows)
            self.conformers = RaggedMoleculeTable.create(
                self.amons.group, "conformers", CONFORMER_COLUMNS, chunk_rows
            )
            self.query_amons = Table.create(root, "query_amons", QUERY_AMON_COLUMNS, chunk_rows)
            self.query_conformers = Table.create(
                root, "query_conformers", QUERY_CONFORMER_COLUMNS, chunk_rows
            )
        else:
            if "amons" not in root:
                from amondask.errors import WorkspaceError

                raise WorkspaceError(
                    f"workspace {workspace.location} has no amons yet; run "
                    f"`amondask extract --workspace {workspace.location}`"
                )
            self.amons = Table(root["amons"])
            self.conformers = RaggedMoleculeTable(root["amons"]["conformers"])
            self.query_amons = Table(root["query_amons"])
            self.query_conformers = Table(root["query_conformers"])

    @property
    def extracted_queries(self) -> int:
        return int(self.workspace.meta.get(EXTRACTED_ATTR, 0))

    def set_extracted_queries(self, n: int) -> None:
        meta = self.workspace.meta
        meta[EXTRACTED_ATTR] = int(n)
        self.workspace.root.attrs["amondask"] = meta

    # ---- views -------------------------------------------------------------------------------
    def to_xarray(self) -> Any:
        """The amon graphs as an xarray Dataset indexed by ``amon`` id."""
        import xarray as xr

        n = self.amons.n_rows
        conformer_amon = self.conformers.read("amon")
        n_conformers = np.bincount(conformer_amon, minlength=n)[:n] if n else np.zeros(0, int)
        occurrences = self.query_amons.read("amon")
        counts = self.query_amons.read("count")
        n_queries = np.bincount(occurrences, minlength=n)[:n] if n else np.zeros(0, int)
        total = np.bincount(occurrences, weights=counts, minlength=n)[:n] if n else np.zeros(0)
        return xr.Dataset(
            {
                "key": ("amon", np.array(self.amons.read_text("key"), dtype=object)),
                "smiles": ("amon", np.array(self.amons.read_text("smiles"), dtype=object)),
                "n_heavy": ("amon", self.amons.read("n_heavy").astype(np.int64)),
                "first_query": ("amon", self.amons.read("first_query")),
                "n_conformers": ("amon", n_conformers.astype(np.int64)),
                "n_queries": ("amon", n_queries.astype(np.int64)),
                "total_count": ("amon", total.astype(np.int64)),
            },
            coords={"amon": np.arange(n)},
            attrs={
                "description": "distinct amon graphs of the workspace",
                **self.workspace.parameters,
            },
        )

    def query_amon_matrix(self) -> Any:
        """(n_queries, n_amons) scipy.sparse CSR matrix of amon counts per query."""
        import scipy.sparse

        n_queries = self.extracted_queries
        return scipy.sparse.csr_matrix(
            (
                self.query_amons.read("count"),
                (self.query_amons.read("query"), self.query_amons.read("amon")),
            ),
            shape=(n_queries, self.amons.n_rows),
        )

    def summary(self) -> dict[str, Any]:
        """Amons by size, mean amons per query, and the reuse factor."""
        n_heavy = self.amons.read("n_heavy").astype(np.int64)
        sizes, counts = np.unique(n_heavy, return_counts=True)
        per_query = self.query_amons.read("query")
        n_queries = self.extracted_queries
        distinct_per_query = np.bincount(per_query, minlength=n_queries) if n_queries else []
        pairs = len(per_query)
        return {
            "queries_extracted": n_queries,
            "amons": int(self.amons.n_rows),
            "conformers": int(self.conformers.n_rows),
            "amons_by_n_heavy": {int(s): int(c) for s, c in zip(sizes, counts, strict=True)},
            "mean_amons_per_query": float(np.mean(distinct_per_query)) if n_queries else 0.0,
            # sum over queries of their distinct amons / distinct amons: how often an amon is reused
            "reuse_factor": float(pairs / self.amons.n_rows) if self.amons.n_rows else 0.0,
        }
