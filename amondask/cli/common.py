"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose error messages also name the options it does not know.

    argparse reports a missing required argument before unknown options, so a typo such as
    ``amondask run q.smi --workspce W`` would only say that --workspace is required. The
    subcommand parsers are of this class too (``add_parser`` uses the parent's class).
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the chosen command's parser, with its usage line
            self._command_parser(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest, None), self)
        return self

    def error(self, message: str):  # type: ignore[override]
        unknown = self._unknown_options()
        if unknown and "unrecognized arguments" not in message:
            message = f"{message}; unrecognized arguments: {' '.join(unknown)}"
        super().error(f"{message}\n(see `{self.prog} --help`)")

    def _unknown_options(self) -> list[str]:
        known = self._option_string_actions
        unknown = []
        for token in getattr(self, "_given", []):
            if token == "--":
                break
            if not token.startswith("-") or token == "-" or _NUMBER.match(token):
                continue
            name = token.split("=", 1)[0]
            if name in known or (not name.startswith("--") and name[:2] in known):
                continue  # an option, or a short option with its value attached (-k3)
            if name.startswith("--") and any(option.startswith(name) for option in known):
                continue  # an abbreviation argparse accepts
            unknown.append(token)
        return unknown


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, not {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None


def check_input_files(paths: list[str]) -> None:
    """Refuse missing or directory QUERIES before a workspace is created for them."""
    from pathlib import Path

    from amondask.errors import InputError

    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"input file {path} does not exist; check the path")
        if path.is_dir():
            raise InputError(f"{path} is a directory; give a molecule file")


def existing_workspace(location: str) -> Any:
    """The workspace at ``location`` opened for writing; a WorkspaceError (with the command that
    creates one) when there is none, instead of creating an empty one."""
    from amondask.store import Workspace

    Workspace(location, mode="r")
    return Workspace(location)


def check_defining_parameters(workspace: Any, **given: Any) -> None:
    """Refuse, before anything is written, values that contradict the workspace's defining
    parameters (e.g. ``max_heavy_atoms``); records nothing."""
    recorded = workspace.parameters
    workspace.require_parameters(
        {name: value for name, value in given.items() if value is not None and name in recorded}
    )


def add_workspace_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--workspace",
        "-w",
        required=required,
        metavar="W",
        help="the workspace: a directory (created if missing) or an fsspec URL",
    )


def add_existing_workspace_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The workspace of a command that reads one: ``W`` as a positional argument, or
    ``--workspace/-w W`` as `run` and `extract` take it (:func:`resolve_workspace_argument`)."""
    parser.add_argument("workspace", metavar="W", nargs="?", help=help_text)
    parser.add_argument(
        "--workspace", "-w", dest="workspace_option", metavar="W", help="the same as W"
    )


def resolve_workspace_argument(args: argparse.Namespace) -> str | None:
    """Set ``args.workspace`` from W or ``--workspace``; returns an error message (None: fine)."""
    option = getattr(args, "workspace_option", None)
    if args.workspace and option and args.workspace != option:
        return f"two workspaces given, {args.workspace} and --workspace {option}; give one"
    args.workspace = args.workspace or option
    if not args.workspace:
        return f"give the workspace: amondask {args.command} W (or --workspace W)"
    return None


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cluster``, ``--scheduler``, ``--scheduler-file``, ``--workers`` and ``--max-workers``
    (see :mod:`amondask.cluster`); :func:`cluster_settings` turns them into dask config."""
    from amondask.cluster import CLUSTER_TYPES

    parser.add_argument(
        "--cluster",
        choices=CLUSTER_TYPES,
        help="where the stages run: local (embedded LocalCluster, default), address / "
        "scheduler-file (a running scheduler), slurm (dask-jobqueue; jobqueue.slurm.* in the "
        "dask config) or kubernetes (dask-kubernetes operator)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="attach to a running Dask scheduler (tcp://host:8786) or a scheduler file",
    )
    group.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="attach to the scheduler that wrote FILE (dask scheduler --scheduler-file FILE)",
    )
    group.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="worker processes of the embedded LocalCluster (default: one per core; "
        "0 runs in this process without Dask); with --cluster slurm/kubernetes, the minimum",
    )
    parser.add_argument(
        "--max-workers",
        type=positive_int,
        metavar="M",
        help="with --cluster slurm/kubernetes: scale adaptively up to M worker processes",
    )


def cluster_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The dask config that the cluster options given on the command line set (the stages read
    ``amondask.cluster.*`` when they start their client); empty for commands without them."""
    names = {
        "cluster": "amondask.cluster.type",
        "scheduler_file": "amondask.cluster.scheduler-file",
        "max_workers": "amondask.cluster.max-workers",
    }
    settings = {key: getattr(args, name, None) for name, key in names.items()}
    if getattr(args, "cluster", None) in ("slurm", "kubernetes") and args.workers is not None:
        settings["amondask.cluster.min-workers"] = args.workers
    return {key: value for key, value in settings.items() if value is not None}


def add_amon_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-heavy-atoms/-k`` and ``--rules``, the defining parameters of the amons."""
    parser.add_argument(
        "--max-heavy-atoms", "-k", type=positive_int, help="amon size N_I (default: 7)"
    )
    parser.add_argument(
        "--rules", choices=["paper", "plain"], help="amon rule set (default: paper)"
    )
    parser.add_argument(
        "--max-conformers-per-amon",
        type=positive_int,
        metavar="C",
        help="keep at most C conformers per amon in the store; a query's further ones are "
        "linked to the nearest kept one (default: all distinct conformers, as the authors)",
    )


def add_model_arguments(parser: argparse.ArgumentParser, *, protocol_help: str) -> None:
    """``--labeler`` (the level the amons are labeled at) and ``--protocol``."""
    parser.add_argument(
        "--labeler", default=None, help="xtb (default), pyscf, table (see `amondask label`)"
    )
    parser.add_argument(
        "--protocol",
        choices=["global", "per-query"],
        default=None,
        help=protocol_help,
    )
