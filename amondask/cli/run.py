"""``amondask run``: queries in, predicted energies out, on the cluster, resumable."""

from __future__ import annotations

import argparse
import sys

from amondask.cli.common import (
    add_amon_arguments,
    add_cluster_arguments,
    add_model_arguments,
    add_progress_argument,
    add_workspace_argument,
    check_defining_parameters,
    check_input_files,
    existing_workspace,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="predict the energies of query molecules from their amons (all stages)",
        description=(
            "Read QUERIES, extract their amons, label the amons (GFN2-xTB by default), compute "
            "aSLATM and the local kernels out-of-core, train kernel ridge regression on the "
            "amons and predict every query. Every stage resumes from the workspace: run the "
            "same command again after an interruption."
        ),
    )
    parser.add_argument("queries", nargs="*", metavar="QUERIES", help="molecule file(s)")
    add_workspace_argument(parser)
    add_amon_arguments(parser)
    add_model_arguments(
        parser,
        protocol_help="global (default): one model on all amons; per-query: the paper's, each "
        "query's own amons",
    )
    add_cluster_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.cli.label import labeler_from_args
    from amondask.errors import InputError
    from amondask.pipeline.run import run as run_pipeline
    from amondask.pipeline.tasks import SERIAL
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    labeler = labeler_from_args(args)
    if args.queries:
        check_input_files(args.queries)
        workspace = Workspace(args.workspace)
    else:  # the workspace's own queries: it must exist and hold some
        workspace = existing_workspace(args.workspace)
        if not workspace.has("queries") or not workspace.queries.n_rows:
            raise InputError(
                f"workspace {workspace.location} holds no queries; give the molecule files: "
                f"amondask run QUERIES --workspace {workspace.location}"
            )
    # A run that contradicts the workspace's N_I or rules is refused before it reads anything.
    check_defining_parameters(
        workspace,
        max_heavy_atoms=args.max_heavy_atoms,
        amon_rules=args.rules,
        max_conformers_per_amon=args.max_conformers_per_amon,
    )
    # Every file but the last is read first; the run reads the last one on its cluster.
    *first_files, last = args.queries or [None]
    for source in first_files:
        print(read_into_workspace(source, workspace, progress=False).format())
    dataset = run_pipeline(
        last,
        workspace,
        max_heavy_atoms=args.max_heavy_atoms,
        rules=args.rules,
        max_conformers_per_amon=args.max_conformers_per_amon,
        labeler=labeler,
        protocol=args.protocol or "global",
        client=SERIAL if args.workers == 0 else None,
        scheduler=args.scheduler,
        n_workers=args.workers or None,
        progress=not args.no_progress and sys.stderr.isatty(),
        echo=True,
    )
    seconds = dataset.attrs["summary"].splitlines()[-1]
    print(seconds)
    return 0
