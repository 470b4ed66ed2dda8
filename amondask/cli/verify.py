"""``amondask verify W``: check a workspace's integrity; exit 0 when clean, 1 on problems."""

from __future__ import annotations

import argparse

from amondask.cli.common import add_existing_workspace_argument, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check a workspace's integrity (exit 0: clean, 1: problems)",
        description=(
            "Check the schema, offsets, ids, counts, labels against amons, kernels against "
            "representations and models against their parameters; print one line per "
            "problem. Reads only: safe while another run writes, though it may then see "
            "half-written rows."
        ),
    )
    add_existing_workspace_argument(parser, "the workspace directory or URL")
    parser.add_argument("--json", action="store_true", help="print problems and notes as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.errors import WorkspaceError
    from amondask.store import Workspace
    from amondask.store.verify import VerifyReport, verify

    try:
        report = verify(Workspace(args.workspace, mode="r"))
    except WorkspaceError as exc:  # not even openable: that is the one problem to report
        report = VerifyReport(location=args.workspace, problems=[f"/: {exc}"])
    if args.json:
        print_json(
            {"location": report.location, "ok": report.ok, "problems": report.problems,
             "notes": report.notes, "checked": report.checked}
        )  # fmt: skip
    else:
        print(report.format())
    return 0 if report.ok else 1
