"""DFT check of the QM9 learning curve (issue #10, item 3): the same queries and amons labeled
at GFN2-xTB and at B3LYP/6-31G(d)//GFN2-xTB, the prediction errors side by side.

The first ``--queries`` molecules of the seeded QM9 sample of ``qm9_amons.py`` (``--n``,
``--seed``) and their amons up to ``--max-heavy-atoms`` (default 5) go through the real system
twice, in two workspaces: once labeled by GFN2-xTB relaxation (as the learning-curve benchmark),
once by PySCF single points at the GFN2-xTB-relaxed geometries (the pyscf labeler's
``prerelax_xtb``: the same tblite relaxation from the same start, then B3LYP). The queries are
labeled the same way by the evaluation. So both workspaces hold the same geometries, the same
aSLATM and kernels; only the labels differ, and the per-N_I errors (both protocols) show
whether the learning curve measured at xTB holds at DFT. The script checks that the geometries
agree and reports the largest deviation.

    nice -n 10 python3 benchmarks/qm9_dft_check.py --queries 3

Writes ``benchmarks/results/qm9_dft_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qm9_amons import RESULTS, _by_source_row, _curve_record  # noqa: E402
from qm9_sample import machine_record, qm9_query_table, write_query_extxyz  # noqa: E402


def _run_level(queries: Path, path: Path, labeler: Any, args: Any, client: Any) -> dict:
    import amondask

    clock = time.perf_counter()
    predictions = amondask.run(
        str(queries),
        str(path),
        max_heavy_atoms=args.max_heavy_atoms,
        labeler=labeler,
        client=client,
        progress=False,
        echo=True,
    )
    seconds = dict(predictions.attrs["stage_seconds"])
    curves, per_query = {}, {}
    for protocol in ("per-query", "global"):
        started = time.perf_counter()
        evaluation = amondask.evaluate(
            str(path), labeler, protocol=protocol, client=client, progress=False
        )
        seconds[f"evaluate {protocol}"] = time.perf_counter() - started
        curves[protocol] = _curve_record(evaluation)
        per_query[protocol] = evaluation["curve_error"].values.T.tolist()
    return {
        "level_of_theory": labeler.level_of_theory,
        "workspace": str(path),
        "learning_curve": curves,
        "query_errors_kcal_mol": per_query,
        "stage_seconds": seconds,
        "wall_seconds": time.perf_counter() - clock,
    }


def _geometry_deviation(xtb_path: Path, dft_path: Path, xtb: str, dft: str) -> dict[str, float]:
    """Largest |position difference| (angstrom) between the two workspaces' labeled geometries,
    amons and queries (the same rows in both: same inputs, same extraction)."""
    from amondask.store.labels import label_table
    from amondask.store.workspace import Workspace

    out = {}
    for target in ("amons", "queries"):
        a = _by_source_row(label_table(Workspace(str(xtb_path)), xtb, target))
        b = _by_source_row(label_table(Workspace(str(dft_path)), dft, target))
        if len(a) != len(b):
            out[target] = float("nan")
            continue
        out[target] = max(
            float(np.abs(np.asarray(m.positions) - np.asarray(n.positions)).max())
            for m, n in zip(a, b, strict=True)
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    xtb, dft = result["xtb"], result["dft"]
    lines = [
        f"# DFT check: {len(result['qm9_indices'])} QM9 queries, amons N_I <= "
        f"{result['max_heavy_atoms']}",
        "",
        f"QM9 indices {result['qm9_indices']} (the first of the seed-{result['seed']} sample of "
        f"{result['n_sample']}). DFT: {dft['level_of_theory']}. xTB: {xtb['level_of_theory']}. "
        f"Largest geometry difference between the two label sets: "
        f"{result['geometry_deviation_angstrom']['amons']:.1e} A (amons), "
        f"{result['geometry_deviation_angstrom']['queries']:.1e} A (queries).",
        "",
        "| N_I | per-query MAE xTB | DFT | median xTB | DFT | global MAE xTB | DFT "
        "| amons per query |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pq_x, pq_d = xtb["learning_curve"]["per-query"], dft["learning_curve"]["per-query"]
    gl_x, gl_d = xtb["learning_curve"]["global"], dft["learning_curve"]["global"]
    for k, n_heavy in enumerate(pq_d["n_heavy"]):
        lines.append(
            f"| {n_heavy} | {cell(pq_x['mae'][k])} | {cell(pq_d['mae'][k])} | "
            f"{cell(pq_x['median'][k])} | {cell(pq_d['median'][k])} | {cell(gl_x['mae'][k])} | "
            f"{cell(gl_d['mae'][k])} | {pq_d['n_train_mean'][k]:.1f} |"
        )
    lines += ["", "Per-query errors (kcal/mol) at N_I = max, xTB / DFT:", ""]
    for index, ex, ed in zip(
        result["qm9_indices"],
        xtb["query_errors_kcal_mol"]["per-query"],
        dft["query_errors_kcal_mol"]["per-query"],
        strict=True,
    ):
        lines.append(f"- QM9 {index}: {cell(ex[-1])} / {cell(ed[-1])}")
    lines += [
        "",
        f"Wall time: xTB {xtb['wall_seconds']:.0f} s, DFT {dft['wall_seconds']:.0f} s "
        f"(DFT labels {dft['stage_seconds'].get('label', 0):.0f} s for the amons).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="size of the QM9 sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=3, help="first queries of the sample")
    parser.add_argument("--max-heavy-atoms", type=int, default=5)
    parser.add_argument("--method", default="B3LYP")
    parser.add_argument("--basis", default="6-31G(d)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/amondask-qm9-dft")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()

    from amondask.cluster import get_client
    from amondask.label import get_labeler

    started = time.perf_counter()
    load_start = os.getloadavg()
    table = qm9_query_table(args.n, n_heavy=9, seed=args.seed).iloc[: args.queries]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    queries = write_query_extxyz(table, workdir / f"qm9_dft_{args.queries}.xyz")
    xtb = get_labeler("xtb")
    dft = get_labeler("pyscf", method=args.method, basis=args.basis, prerelax_xtb=True)
    stem = f"qm9_{args.n}_seed{args.seed}_{args.queries}q_n{args.max_heavy_atoms}"
    paths = {"xtb": workdir / f"{stem}_xtb.zarr", "dft": workdir / f"{stem}_dft.zarr"}
    with get_client(None, n_workers=args.workers, quiet=True) as client:
        levels = {
            name: _run_level(queries, paths[name], labeler, args, client)
            for name, labeler in (("xtb", xtb), ("dft", dft))
        }
    result = {
        "benchmark": "qm9_dft_check",
        "command": " ".join(["python3", *sys.argv]),
        "n_sample": args.n,
        "seed": args.seed,
        "qm9_indices": [int(i) for i in table.Index],
        "smiles": list(table.SMILES),
        "max_heavy_atoms": args.max_heavy_atoms,
        **levels,
        "geometry_deviation_angstrom": _geometry_deviation(
            paths["xtb"], paths["dft"], xtb.level_of_theory, dft.level_of_theory
        ),
        "machine": machine_record(args.workers, load_start),
        "wall_seconds": time.perf_counter() - started,
    }
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "qm9_dft_check.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (output / "qm9_dft_check.md").write_text(text)
    print(text)


if __name__ == "__main__":  # the LocalCluster starts worker processes: keep this guard
    main()
