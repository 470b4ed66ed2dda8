"""``amondask export``: the predictions of a workspace as CSV or Parquet."""

from __future__ import annotations

import argparse
import sys

from amondask.cli.common import add_existing_workspace_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the predictions as CSV or Parquet",
        description=(
            "Write predictions/<model> of the workspace: id, SMILES, predicted energy "
            "(hartree), atomization energy (kcal/mol: the energy minus the free atoms' "
            "energies at the same level, negative when bound), energy minus the per-element "
            "baseline (kcal/mol), uncertainty, coverage flag, number of amons."
        ),
    )
    add_existing_workspace_argument(parser, "a workspace after `amondask run`")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--model", default="global", help="model name (default: global)")
    parser.add_argument("--output", "-o", help="output file (default: standard output for CSV)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.errors import InputError
    from amondask.pipeline.train import predictions_frame
    from amondask.store import Workspace

    frame = predictions_frame(Workspace(args.workspace, mode="r"), args.model)
    if args.format == "parquet":
        if not args.output:
            raise InputError("Parquet output needs a file: pass --output FILE.parquet")
        frame.to_parquet(args.output, index=False)
    elif args.output:
        frame.to_csv(args.output, index=False)
    else:
        frame.to_csv(sys.stdout, index=False)
    if args.output:
        print(f"wrote {len(frame)} predictions to {args.output}", file=sys.stderr)
    return 0
