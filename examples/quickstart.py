"""Quickstart: read the bundled query set into a workspace and look at it from Python.

python examples/quickstart.py [WORKSPACE]
"""

import sys
from pathlib import Path

import amondask
from amondask.store import Workspace
from amondask.store.ingest import read_into_workspace

HERE = Path(__file__).resolve().parent


def main(workspace_path: str) -> None:
    result = amondask.read_molecules(HERE / "queries.smi")
    print(f"parsed {len(result.molecules)} molecules, {len(result.errors)} errors")
    workspace = Workspace(workspace_path)
    report = read_into_workspace(HERE / "queries.smi", workspace, progress=False)
    print(report.format())
    first = workspace.queries.molecules(0, 1)[0]
    print(
        f"first query: {first.id} {first.smiles} ({first.n_atoms} atoms, 3D: {first.has_positions})"
    )
    print(f"workspace {workspace.location}: {workspace.queries.n_rows} queries")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "quickstart.zarr")
