"""``amondask extract``: amons of every query, merged into the workspace's amon store."""

from __future__ import annotations

import argparse
import sys

from amondask.cli.common import (
    add_amon_arguments,
    add_cluster_arguments,
    add_progress_argument,
    add_workspace_argument,
    check_defining_parameters,
    check_input_files,
    existing_workspace,
    positive_int,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract the amons of the queries into the workspace's amon store",
        description=(
            "Read QUERIES (if given) into the workspace, then extract every query's amons on a "
            "Dask cluster and merge them into the global, deduplicated amon store (amons/, "
            "query_amons/). Only queries not yet extracted are processed: re-running resumes an "
            "interrupted run or does nothing."
        ),
    )
    parser.add_argument("queries", nargs="*", metavar="QUERIES", help="molecule file(s) to add")
    add_workspace_argument(parser)
    add_amon_arguments(parser)
    parser.add_argument("--partition-size", type=positive_int, help="queries per task")
    add_cluster_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.cluster import get_client
    from amondask.pipeline.extract import extract_workspace
    from amondask.pipeline.tasks import SERIAL
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    check_input_files(args.queries)
    # Without QUERIES there is nothing to extract from a new workspace: do not create one.
    workspace = Workspace(args.workspace) if args.queries else existing_workspace(args.workspace)
    check_defining_parameters(
        workspace,
        max_heavy_atoms=args.max_heavy_atoms,
        amon_rules=args.rules,
        max_conformers_per_amon=args.max_conformers_per_amon,
    )
    show = not args.no_progress and sys.stderr.isatty()
    serial = SERIAL if args.workers == 0 else None
    with get_client(serial, scheduler=args.scheduler, n_workers=args.workers) as client:
        for source in args.queries:
            reading = read_into_workspace(
                source, workspace, progress=show, client=None if client is SERIAL else client
            )
            print(reading.format())
        report = extract_workspace(
            workspace,
            max_heavy_atoms=args.max_heavy_atoms,
            rules=args.rules,
            max_conformers_per_amon=args.max_conformers_per_amon,
            client=client,
            partition_size=args.partition_size,
            progress=show,
        )
    print(report.format())
    return 0
