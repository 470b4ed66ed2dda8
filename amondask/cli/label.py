"""``amondask label``: reference energies for the workspace's amons (or queries)."""

from __future__ import annotations

import argparse
import sys

from amondask.cli.common import (
    add_cluster_arguments,
    add_progress_argument,
    add_workspace_argument,
    existing_workspace,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label",
        help="compute reference energies of the amons (or queries) on the cluster",
        description=(
            "Label every amon conformer of the workspace that has no label yet at the labeler's "
            "level of theory (with --queries: the queries, for validation), in parallel tasks "
            "sized by cost. Labels go to labels/<level>/ in the workspace; re-running resumes."
        ),
    )
    add_workspace_argument(parser)
    parser.add_argument(
        "--labeler",
        default=None,
        help="xtb (default: GFN2-xTB via tblite), pyscf (DFT), table (your CSV/Parquet), qm9",
    )
    parser.add_argument("--queries", action="store_true", help="label the queries instead")
    dft = parser.add_argument_group("pyscf")
    dft.add_argument("--method", help="pyscf method, e.g. B3LYP (default) or HF")
    dft.add_argument("--basis", help="pyscf basis, e.g. 6-31G(2df,p) (default)")
    dft.add_argument("--relax", action="store_true", help="relax geometries (geomeTRIC)")
    table = parser.add_argument_group("table")
    table.add_argument("--table", metavar="FILE", help="CSV or Parquet file of energies")
    table.add_argument(
        "--level-of-theory", help="what the table's energies are, e.g. 'CCSD(T)/cc-pVTZ'"
    )
    table.add_argument("--key-type", choices=["smiles", "inchikey"], default="smiles")
    table.add_argument("--key-column", help="column of the keys (default: by key type)")
    table.add_argument("--energy-column", default="energy")
    table.add_argument("--energy-unit", default="hartree", help="hartree, kcal/mol, eV, kJ/mol")
    add_cluster_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(handler=run)


def labeler_from_args(args: argparse.Namespace):
    """The labeler named by ``--labeler`` with its options (commands without the pyscf/table
    options get the configured defaults)."""
    from amondask import config
    from amondask.errors import InputError
    from amondask.label import get_labeler

    def option(name: str):
        return getattr(args, name, None)

    name = str(config.get("label.default", args.labeler)).lower()
    if name == "pyscf":
        options = {"method": option("method"), "basis": option("basis")}
        if option("relax"):
            options["relax"] = True
        return get_labeler("pyscf", **{k: v for k, v in options.items() if v is not None})
    if name == "table":
        if not option("table") or not option("level_of_theory"):
            raise InputError(
                "--labeler table needs --table FILE and --level-of-theory 'WHAT THE ENERGIES "
                "ARE': label with `amondask label` first, then run"
            )
        return get_labeler(
            "table",
            table=args.table,
            level_of_theory=args.level_of_theory,
            key_type=args.key_type,
            key_column=args.key_column,
            energy_column=args.energy_column,
            energy_unit=args.energy_unit,
        )
    return get_labeler(name)


def run(args: argparse.Namespace) -> int:
    from amondask.pipeline.label import label
    from amondask.pipeline.tasks import SERIAL

    labeler = labeler_from_args(args)
    workspace = existing_workspace(args.workspace)  # labels need amons (or queries) to label
    report = label(
        workspace,
        labeler,
        queries=args.queries,
        client=SERIAL if args.workers == 0 else None,
        scheduler=args.scheduler,
        n_workers=args.workers or None,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(report.format())
    return 0
