"""``amondask read``: ingest and validate a query dataset into a workspace."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from amondask.cli.common import add_progress_argument, add_workspace_argument, check_input_files
from amondask.errors import WorkspaceError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "read",
        help="read and validate query molecules into a workspace",
        description=(
            "Read query molecules (.smi/.txt, .csv, .sdf/.mol, .xyz/.extxyz, .pdb, optionally "
            ".gz) into the workspace's queries/ table. Molecules given as graphs get an "
            "ETKDG+MMFF94 3D geometry. Bad records are stored as error rows (see `amondask "
            "info W --errors`) and the rest is read. Re-reading the same file changes nothing."
        ),
    )
    parser.add_argument("queries", nargs="+", metavar="QUERIES", help="molecule file(s)")
    add_workspace_argument(parser)
    parser.add_argument(
        "--format", choices=["smiles", "csv", "sdf", "xyz", "pdb"], help="override the file format"
    )
    parser.add_argument("--smiles-column", help="CSV column holding SMILES (default: 'smiles')")
    parser.add_argument("--id-column", help="CSV column holding record ids (default: 'id')")
    parser.add_argument(
        "--no-geometry",
        action="store_true",
        help="store graph-only molecules without generating 3D coordinates",
    )
    parser.add_argument("--seed", type=int, help="random seed of the 3D embedding")
    parser.add_argument(
        "--rebuild", action="store_true", help="discard the workspace's content first"
    )
    add_progress_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    check_input_files(args.queries)  # before --rebuild discards anything
    if args.rebuild:
        path = Path(args.workspace)
        if path.is_dir() and not (path / "zarr.json").exists() and any(path.iterdir()):
            raise WorkspaceError(
                f"--rebuild refuses to delete {path}: it is not an amondask workspace"
            )
        if path.is_dir():
            shutil.rmtree(path)
    workspace = Workspace(args.workspace)
    exit_code = 0
    for source in args.queries:
        report = read_into_workspace(
            source,
            workspace,
            geometry=not args.no_geometry,
            progress=not args.no_progress and sys.stderr.isatty(),
            format=args.format,
            smiles_column=args.smiles_column,
            id_column=args.id_column,
            seed=args.seed,
        )
        print(report.format())
        if report.n_records and report.n_errors == report.n_records:
            exit_code = 1
    total = workspace.queries.n_rows
    print(f"workspace {workspace.location}: {total} queries")
    return exit_code
