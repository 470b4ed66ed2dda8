"""Periodic queries (issue 13, item 3): diamond silicon and (C-doped) hBN from cluster amons.

The cells of ``examples/periodic/crystals.extxyz`` (Si64; a 4x4 hBN sheet, pristine and with
one B-N pair replaced by C=C) go through the real system with the settings of
``examples/periodic/periodic.yaml``: cluster amons cut from the crystal and capped with H
(:mod:`amondask.amons.periodic`), GFN2-xTB single points (tblite; the cells with periodic
boundary conditions at the Gamma point), periodic aSLATM for the cells, the global model and
the per-query one. One workspace per number of shells (1, 2, 3; 1 and 2 with ``--labeler
pbe``), so the table shows how the error changes as the clusters grow. Errors are
predicted minus reference, per cell and per atom (kcal/mol).

    python3 benchmarks/periodic.py --workdir /tmp/periodic

With ``--labeler pbe`` the labels are PBE with the GTH pseudopotential and minimal basis
(PySCF: molecular clusters, and the cell with PBC on a 3x3x3 k-point mesh), one model
chemistry for clusters and crystal as in the authors' PBE test (the settings of
``examples/periodic/periodic_pbe.yaml``); the query is then the 8-atom cubic diamond cell of
``examples/periodic/si8.extxyz``.

Writes ``benchmarks/results/periodic.json`` and ``.md`` (``periodic_pbe`` with ``--labeler
pbe``); the workspaces make a re-run resume.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from large_covalent import query_records  # noqa: E402
from qm9_sample import (  # noqa: E402
    evaluation_record,
    machine_record,
    number_text,
    run_with_settings,
    write_result,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples" / "periodic"
AUTHORS_SILICON = "0.46 (PBE; Si5H12, Si17H36, Si18H36)"
AUTHORS = {"si64": AUTHORS_SILICON, "si8": AUTHORS_SILICON}


def silicon_cell() -> list[Any]:
    """The 8-atom cubic diamond Si cell of ``examples/periodic/si8.extxyz`` (a = 5.431 A)."""
    from amondask.chem import read_molecules

    return read_molecules(EXAMPLES / "si8.extxyz", on_error="raise").molecules


def run_shells(shells: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from amondask.chem import read_molecules
    from amondask.config import read_file
    from amondask.store.workspace import Workspace

    if args.labeler == "pbe":
        config_file, labeler_name, queries = "periodic_pbe.yaml", "pyscf", silicon_cell
    else:
        config_file, labeler_name = "periodic.yaml", "xtb"

        def queries() -> list[Any]:
            return read_molecules(EXAMPLES / "crystals.extxyz", on_error="raise").molecules

    settings = read_file(EXAMPLES / config_file)
    settings["amondask.amons.periodic.shells"] = shells
    started = time.perf_counter()
    prefix = "" if args.labeler == "xtb" else f"{args.labeler}-"
    path = workdir / f"{prefix}shells{shells}.zarr"
    labeler, evaluations, stage_seconds = run_with_settings(
        settings,
        queries,
        path,
        max_heavy_atoms=7,
        workers=args.workers,
        quiet=args.quiet,
        labeler_name=labeler_name,
    )
    workspace = Workspace(str(path), mode="r")
    store = workspace.amons
    queries = query_records(workspace, evaluations)
    for record in queries:
        record["kind"] = "periodic"
        for protocol in ("global", "per-query"):
            error = record[protocol]["error_kcal_mol"]
            record[protocol]["error_per_atom_kcal_mol"] = (
                None if error is None else error / record["n_atoms"]
            )
    n_heavy = store.amons.read("n_heavy")
    keys = store.amons.read("key")
    return {
        "shells": shells,
        "settings": settings,
        "level_of_theory": labeler.level_of_theory,
        "workspace": str(path),
        "amons": [{"key": str(k), "n_heavy": int(n)} for k, n in zip(keys, n_heavy, strict=True)],
        "conformers": int(store.conformers.n_rows),
        "queries": queries,
        **evaluation_record(evaluations, stage_seconds, started),
    }


def markdown(result: dict[str, Any]) -> str:
    cell = number_text
    sampling = "cells at the Gamma point"
    if result["labeler"] == "pbe":
        sampling = "cell on the k-point mesh in the level of theory"
    lines = [
        f"# Periodic queries ({result['level_of_theory']}, single points; {sampling})",
        "",
        "Errors are predicted minus reference, per cell and per atom (kcal/mol). Global: one "
        "model on the cluster amons of all the cells; per-query: each cell's own.",
        "",
        "| shells | query | atoms | amon graphs (conformers) | error global per cell / per "
        "atom | error per-query per cell / per atom | uncertainty | authors (per atom?) |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for run in result["runs"]:
        for q in run["queries"]:
            g, p = q["global"], q["per-query"]
            lines.append(
                f"| {run['shells']} | {q['id']} | {q['n_atoms']} | {q['amon_graphs']} "
                f"({q['amon_conformers']}) | {cell(g['error_kcal_mol'])} / "
                f"{cell(g['error_per_atom_kcal_mol'], 3)} | {cell(p['error_kcal_mol'])} / "
                f"{cell(p['error_per_atom_kcal_mol'], 3)} | {cell(g['uncertainty_kcal_mol'])} | "
                f"{AUTHORS.get(q['id'], '-')} |"
            )
    seconds = ", ".join(f"shells {r['shells']} {r['wall_seconds']:.0f} s" for r in result["runs"])
    lines += ["", f"Wall time: {seconds}. Command: `{result['command']}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="where the workspaces go (resumes)")
    parser.add_argument(
        "--shells", type=int, nargs="*", default=None, help="default: 1 2 3 (xtb), 1 2 (pbe)"
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--labeler",
        choices=["xtb", "pbe"],
        default="xtb",
        help="xtb: GFN2-xTB (tblite), the three example cells; pbe: PBE/gth-szv (PySCF), Si8",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.shells is None:
        args.shells = [1, 2, 3] if args.labeler == "xtb" else [1, 2]
    if args.out is None:
        suffix = "" if args.labeler == "xtb" else f"_{args.labeler}"
        args.out = RESULTS / f"periodic{suffix}.json"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    runs = [run_shells(shells, workdir, args) for shells in args.shells]
    result = {
        "benchmark": "periodic",
        "command": " ".join(["python3", *sys.argv]),
        "labeler": args.labeler,
        "level_of_theory": runs[0]["level_of_theory"],
        "runs": runs,
        "machine": machine_record(args.workers, load_start),
    }
    write_result(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
