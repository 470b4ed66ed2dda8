"""``amondask info``: what a workspace holds."""

from __future__ import annotations

import argparse

from amondask.cli.common import add_existing_workspace_argument, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarize a workspace",
        description="Print a workspace's parameters, contents and error counts.",
    )
    add_existing_workspace_argument(parser, "the workspace directory or URL")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--errors", action="store_true", help="list the error rows (record, stage, message)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from amondask.store import Workspace

    workspace = Workspace(args.workspace, mode="r")
    summary = workspace.summary()
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    if args.errors:
        for error in workspace.error_records():
            where = f" [{error.location}]" if error.location else ""
            print(f"{error.record_id}{where} {error.stage} {error.error_type}: {error.message}")
    return 0


def format_summary(summary: dict) -> str:
    lines = [
        f"workspace   {summary['location']}",
        f"schema      {summary['schema_version']} (created by amondask {summary['created_by']} "
        f"on {summary['created']})",
    ]
    parameters = summary.get("parameters") or {}
    if parameters:
        lines.append("parameters  " + ", ".join(f"{k}={v}" for k, v in sorted(parameters.items())))
    queries = summary.get("queries")
    if queries:
        lines.append(
            f"queries     {queries['molecules']} molecules, {queries['atoms']} atoms "
            f"({queries['with_input_coordinates']} with input coordinates)"
        )
    else:
        lines.append("queries     none")
    amons = summary.get("amons")
    if amons:
        by_size = ", ".join(f"N_I={k}: {v}" for k, v in sorted(amons["amons_by_n_heavy"].items()))
        lines.append(
            f"amons       {amons['amons']} distinct ({by_size}); {amons['conformers']} conformers"
        )
        lines.append(
            f"            {amons['queries_extracted']} queries extracted, "
            f"{amons['mean_amons_per_query']:.1f} amons per query, "
            f"reuse factor {amons['reuse_factor']:.2f}"
        )
    for level, targets in (summary.get("labels") or {}).items():
        for target, statuses in targets.items():
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
            lines.append(f"labels      {target} at {level}: {sum(statuses.values())} ({counts})")
    for name in ("kernels", "models", "predictions"):
        if summary.get(name):
            lines.append(f"{name:<11} {', '.join(summary[name])}")
    errors = summary.get("errors")
    if errors and errors["total"]:
        by_stage = ", ".join(f"{k}: {v}" for k, v in errors["by_stage"].items())
        by_type = ", ".join(f"{k}: {v}" for k, v in errors["by_type"].items())
        lines.append(f"errors      {errors['total']} ({by_stage}; {by_type})")
    else:
        lines.append("errors      none")
    return "\n".join(lines)
