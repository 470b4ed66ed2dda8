"""The ``amondask`` command.

Each subcommand lives in its own module of this package with a ``register(subparsers)`` function
that adds its parser and sets ``handler`` (a function ``(args) -> int`` exit code). To add a
command, write the module and list it in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from amondask.errors import AmondaskError

COMMAND_MODULES = [
    "amondask.cli.read",
    "amondask.cli.info",
    "amondask.cli.extract",
    "amondask.cli.label",
    "amondask.cli.run",
    "amondask.cli.export",
    "amondask.cli.evaluate",
    "amondask.cli.amons",
    "amondask.cli.verify",
]


def build_parser() -> argparse.ArgumentParser:
    from amondask import __version__
    from amondask.cli.common import CommandParser

    parser = CommandParser(
        prog="amondask",
        description=(
            "Predict quantum-chemical energies of large molecules from their amons "
            "(small H-capped fragments), at cluster scale on Dask."
        ),
        epilog="Run `amondask COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"amondask {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in subparsers.choices.values():
        command.add_argument(
            "--config",
            metavar="FILE",
            help="YAML file of amondask options (the layout of examples/amondask.yaml); "
            "command-line flags override it, it overrides AMONDASK_* variables",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if hasattr(args, "workspace_option"):
        from amondask.cli.common import resolve_workspace_argument

        problem = resolve_workspace_argument(args)
        if problem:
            print(f"amondask {args.command}: error: {problem}", file=sys.stderr)
            return 2
    try:
        from contextlib import nullcontext

        import dask.config

        from amondask import config
        from amondask.cli.common import cluster_settings

        settings = config.load_file(args.config) if args.config else nullcontext()
        # for this command only (main may be called again in one process)
        with settings, dask.config.set(cluster_settings(args)):
            return int(args.handler(args) or 0)
    except AmondaskError as exc:
        print(f"amondask {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file that cannot be written, a scheduler that does not answer
        print(f"amondask {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"amondask {args.command}: interrupted; finished work is kept in the workspace, "
            "re-run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
