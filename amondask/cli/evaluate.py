"""``amondask evaluate``: the predictions against the queries' own labels, with plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amondask.cli.common import (
    add_cluster_arguments,
    add_existing_workspace_argument,
    add_model_arguments,
    add_progress_argument,
    print_json,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="label the queries too and report the prediction errors (validation)",
        description=(
            "Label the queries of workspace W at the level of the run (GFN2-xTB by default), "
            "predict them at those labeled geometries with the workspace's model, and report "
            "MAE, RMSE and max error in kcal/mol, the per-element baseline's MAE, and the "
            "learning curve of the MAE against the amon size N_I = 1..max (the paper's central "
            "figure). Writes a parity plot and the learning curve as PNG files and stores the "
            "per-query errors in the workspace (evaluations/). Resumable like every stage."
        ),
    )
    add_existing_workspace_argument(parser, "a workspace after `amondask run`")
    add_model_arguments(
        parser, protocol_help="which model to evaluate (default: the one whose predictions W has)"
    )
    parser.add_argument(
        "--plots",
        metavar="PREFIX",
        help="path prefix of the PNGs (default: W's name next to it, e.g. example for "
        "example.zarr gives example_parity.png and example_learning_curve.png)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG files")
    parser.add_argument(
        "--no-learning-curve", action="store_true", help="skip the learning curve (one model)"
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_cluster_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(handler=run)


def default_plot_prefix(workspace: str) -> str:
    """``example.zarr`` -> ``example`` (beside the workspace); a URL -> its last component
    without suffix, in the current directory."""
    if "://" in workspace:
        return Path(workspace.rstrip("/").rsplit("/", 1)[-1]).stem or "amondask"
    return str(Path(workspace.rstrip("/")).with_suffix(""))


def run(args: argparse.Namespace) -> int:
    from amondask.cli.label import labeler_from_args
    from amondask.pipeline.evaluate import evaluate, format_evaluation
    from amondask.pipeline.tasks import SERIAL
    from amondask.store import Workspace

    labeler = labeler_from_args(args)
    Workspace(args.workspace, mode="r")  # an existing workspace, or a clear error
    workspace = Workspace(args.workspace)
    dataset = evaluate(
        workspace,
        labeler,
        protocol=args.protocol,
        learning_curve=not args.no_learning_curve,
        plots=None if args.no_plots else args.plots or default_plot_prefix(args.workspace),
        client=SERIAL if args.workers == 0 else None,
        scheduler=args.scheduler,
        n_workers=args.workers or None,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if args.json:
        numbers = dict(dataset.attrs)
        if "n_heavy" in dataset.coords:
            numbers["learning_curve"] = {
                "n_heavy": dataset["n_heavy"].values.tolist(),
                "mae_kcal_mol": dataset["curve_mae"].values.tolist(),
                "n_train": dataset["curve_n_train"].values.tolist(),
            }
        numbers["errors_kcal_mol"] = dict(
            zip(dataset["query_id"].values.tolist(), dataset["error"].values.tolist(), strict=True)
        )
        print_json(numbers)
    else:
        print(format_evaluation(dataset))
        for path in dataset.attrs.get("plots", []):
            print(f"  wrote {path}")
    return 0
