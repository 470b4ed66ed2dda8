"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_workspace_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--workspace",
        "-w",
        required=required,
        metavar="W",
        help="the workspace: a directory (created if missing) or an fsspec URL",
    )


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="attach to a running Dask scheduler (tcp://host:8786) or a scheduler file",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the embedded LocalCluster (default: one per core; "
        "0 runs in this process without Dask)",
    )
