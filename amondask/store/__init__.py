"""The Zarr workspace: schema, append-only tables, ingest of queries."""

from amondask.store.table import Column, RaggedMoleculeTable, Table
from amondask.store.workspace import SCHEMA_VERSION, Workspace

__all__ = ["SCHEMA_VERSION", "Column", "RaggedMoleculeTable", "Table", "Workspace"]
