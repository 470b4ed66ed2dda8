"""The whole-QM9 global model (issue #10, item 4): every amon (N_I <= 7) of QM9 in one store,
every amon labeled with GFN2-xTB, one global model trained on all of them, and a seeded random
sample of 9-heavy-atom queries predicted with it.

The store keeps at most ``--max-conformers-per-amon`` conformers per amon graph (default 1): with
the authors' criterion alone all of QM9 holds 1.38M conformers (73 per graph; ~35 h of GFN2-xTB
on 2 cores), with one per graph 18,845 (~35 min). A query whose geometry of an amon is not the
kept conformer is linked to the nearest kept one (``amondask.amons.max-conformers-per-amon``).

Stages (each resumable: re-running the command continues in the same workspace):
1. extract: QM9 (``--queries all``: 130,831 molecules; ``nine-heavy``: the 110k+ with 9 heavy
   atoms, the authors' set) into the workspace (``amondask.extract``);
2. label: every amon conformer relaxed with GFN2-xTB (tblite);
3. represent, kernel, train: aSLATM, the amon-amon kernel (blocked, on the cluster), the global
   KRR model (the authors' widths, lambda 1e-4) on every labeled conformer;
4. test: ``--test`` random 9-heavy QM9 molecules (seeded; 10,000 is the authors' size), relaxed
   with GFN2-xTB from their QM9 geometries, predicted at those geometries with the stored model
   (:func:`amondask.pipeline.train.predict_molecules`): MAE, median, RMSE, max |error| (kcal/mol),
   and how the outlier flags separate errors > 2 kcal/mol.

    OPENBLAS_NUM_THREADS=1 python3 benchmarks/qm9_global.py --queries all --test 1000

Writes ``benchmarks/results/qm9_global.json`` and ``.md``.
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

from qm9_remedy import BAD_KCAL, SD_SWEEP_KCAL, separation  # noqa: E402
from qm9_sample import machine_record, qm9_query_table, write_query_extxyz  # noqa: E402

KCAL = 627.509474
RESULTS = Path(__file__).resolve().parent / "results"
AUTHORS = {
    "n_queries_run": 10994,
    "level_of_theory": "B3LYP/6-31G(d)",
    "amon_graphs": 25245,
    "note": "the authors ran 10,994 random 9-heavy QM9 molecules with their amons",
}


def _label_chunk(labeler: Any, molecules: list) -> list:
    from amondask.label import label_many

    return label_many(labeler, molecules)[0]


def label_test_queries(labeler: Any, molecules: list, client: Any, chunk: int = 20) -> list:
    """GFN2-xTB relaxation of the test molecules on the cluster, in their order."""
    from distributed import as_completed

    futures = [
        client.submit(_label_chunk, labeler, molecules[k : k + chunk], pure=False)
        for k in range(0, len(molecules), chunk)
    ]
    index = {future.key: k for k, future in enumerate(futures)}
    results: list = [None] * len(futures)
    done = 0
    for future in as_completed(futures):
        results[index[future.key]] = future.result()
        done += 1
        if done % max(1, len(futures) // 10) == 0:
            print(f"  test labels: {done}/{len(futures)} tasks", flush=True)
    return [label for part in results for label in part]


def cached_test_labels(path: Path, labeler: Any, molecules: list, client: Any) -> list:
    """The test molecules' labels, from ``path`` (.npz) when an earlier run saved them."""
    from amondask.label import Label

    ids = [m.id for m in molecules]
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        if saved["ids"].tolist() == ids:
            offsets = saved["offsets"]
            return [
                Label(
                    energy_hartree=float(saved["energy"][k]),
                    positions=saved["positions"][offsets[k] : offsets[k + 1]],
                    converged=bool(saved["converged"][k]),
                    n_steps=int(saved["n_steps"][k]),
                    wall_time_s=float(saved["wall_time_s"][k]),
                    status=str(saved["status"][k]),
                    message=str(saved["message"][k]),
                    level_of_theory=str(saved["level"]),
                    molecule_id=ids[k],
                )
                for k in range(len(ids))
            ]
    labels = label_test_queries(labeler, molecules, client)
    positions = [
        np.asarray(label.positions if label.positions is not None else m.positions)
        for label, m in zip(labels, molecules, strict=True)
    ]
    np.savez(
        path,
        ids=np.array(ids),
        energy=np.array([label.energy_hartree for label in labels]),
        offsets=np.cumsum([0] + [len(x) for x in positions]),
        positions=np.concatenate(positions),
        converged=np.array([label.converged for label in labels]),
        n_steps=np.array([label.n_steps for label in labels]),
        wall_time_s=np.array([label.wall_time_s for label in labels]),
        status=np.array([label.status for label in labels]),
        message=np.array([label.message for label in labels]),
        level=np.array(labeler.level_of_theory),
    )
    return labels


def test_molecules(table: Any) -> list:
    """The QM9 rows as Molecules (ids ``qm9_<Index>``, QM9's geometries), through the reader."""
    import tempfile

    from amondask.chem import read_molecules

    with tempfile.TemporaryDirectory() as directory:
        path = write_query_extxyz(table, Path(directory) / "test.xyz")
        return read_molecules(path).molecules


def statistics(errors_kcal: np.ndarray) -> dict[str, Any]:
    finite = np.abs(errors_kcal[np.isfinite(errors_kcal)])
    if not len(finite):
        return {"n": 0}
    return {
        "n": int(len(finite)),
        "mae": float(finite.mean()),
        "median": float(np.median(finite)),
        "rmse": float(np.sqrt((finite**2).mean())),
        "max": float(finite.max()),
        "share_below_1": float((finite < 1.0).mean()),
        "share_below_2": float((finite < 2.0).mean()),
    }


def flag_scores(errors_kcal: np.ndarray, flagged: np.ndarray, bad: float = 2.0) -> dict[str, Any]:
    finite = np.isfinite(errors_kcal)
    is_bad = finite & (np.abs(errors_kcal) > bad)
    caught = int((is_bad & flagged).sum())
    return {
        "bad_threshold_kcal_mol": bad,
        "n_bad": int(is_bad.sum()),
        "n_flagged": int((flagged & finite).sum()),
        "bad_flagged": caught,
        "recall": caught / int(is_bad.sum()) if is_bad.any() else None,
        "precision": caught / int((flagged & finite).sum()) if (flagged & finite).any() else None,
        "mae_unflagged": float(np.abs(errors_kcal[finite & ~flagged]).mean())
        if (finite & ~flagged).any()
        else None,
    }


def per_molecule_records(dataset: Any, errors_kcal: np.ndarray, flagged: np.ndarray) -> list:
    """Per predicted test molecule: id, error and uncertainty (kcal/mol), flag and its reason,
    the smallest atom similarity to the training atoms, and the training amons used."""
    uncertainty = dataset["uncertainty"].values * KCAL
    similarity = dataset["atom_similarity"].values
    return [
        {
            "id": str(query_id),
            "error_kcal_mol": round(float(errors_kcal[k]), 4),
            "uncertainty_kcal_mol": round(float(uncertainty[k]), 4),
            "flagged": bool(flagged[k]),
            "flag_reason": str(dataset["flag_reason"].values[k]),
            "atom_similarity": None if np.isnan(similarity[k]) else round(float(similarity[k]), 4),
            "n_train": int(dataset["n_train"].values[k]),
        }
        for k, query_id in enumerate(dataset["query_id"].values)
    ]


def flag_sweep(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How each test separates the bad (|error| > 2 kcal/mol) from the good, from the
    :func:`per_molecule_records` alone: the ring-system test, the coverage test, the posterior sd
    above each threshold of ``SD_SWEEP_KCAL``, and the combined flag; each a :func:`separation`
    (recall, precision). Molecules without a finite error are left out."""
    kept = [r for r in records if np.isfinite(r["error_kcal_mol"])]
    bad = np.array([abs(r["error_kcal_mol"]) > BAD_KCAL for r in kept], dtype=bool)
    reasons = [set(r["flag_reason"].split(",")) for r in kept]
    sd = np.array([r["uncertainty_kcal_mol"] for r in kept], dtype=float)
    with np.errstate(invalid="ignore"):
        sweep = {str(t): separation(np.nan_to_num(sd, nan=-1.0) > t, bad) for t in SD_SWEEP_KCAL}
    return {
        "ring_system": separation(np.array(["ring-system" in r for r in reasons], bool), bad),
        "coverage": separation(np.array(["coverage" in r for r in reasons], bool), bad),
        "uncertainty_sweep": sweep,
        "combined": separation(np.array([r["flagged"] for r in kept], bool), bad),
    }


def build_store(args: argparse.Namespace, workspace: Any, client: Any) -> dict[str, Any]:
    import amondask
    from amondask.store.amons import AmonStore

    store = AmonStore(workspace)
    if (
        workspace.has("queries")
        and workspace.queries.n_rows
        and (store.extracted_queries == workspace.queries.n_rows)
    ):
        return {"extract_s": 0.0, "store_reused": True}
    source = None
    if not workspace.has("queries") or not workspace.queries.n_rows:
        source = Path(args.workdir) / f"qm9_{args.queries}.xyz"
        if args.queries == "all":
            from bench_extract import write_qm9_extxyz

            write_qm9_extxyz(source, args.limit)
        else:  # a --limit sample is for trying the script out
            write_query_extxyz(qm9_query_table(args.limit, n_heavy=9, seed=args.seed), source)
    started = time.perf_counter()
    amondask.extract(
        str(source) if source else None,
        workspace,
        max_heavy_atoms=args.max_heavy_atoms,
        max_conformers_per_amon=args.max_conformers_per_amon,
        client=client,
        progress=not args.quiet,
    )
    return {"extract_s": time.perf_counter() - started, "store_reused": False}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from amondask.cluster import get_client
    from amondask.label import get_labeler
    from amondask.pipeline.kernel import kernel_workspace
    from amondask.pipeline.label import label_workspace
    from amondask.pipeline.represent import represent_workspace
    from amondask.pipeline.train import predict_molecules, train_workspace
    from amondask.store import Workspace
    from amondask.store.labels import label_table

    load_start = os.getloadavg()
    started = time.perf_counter()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workspace = Workspace(args.workspace)
    labeler = get_labeler("xtb")
    level = labeler.level_of_theory
    seconds: dict[str, float] = {}
    with get_client(None, n_workers=args.workers, quiet=True) as client:
        built = build_store(args, workspace, client)
        seconds["extract_s"] = built["extract_s"]
        clock = time.perf_counter()
        print(label_workspace(workspace, labeler, client=client, progress=not args.quiet).format())
        seconds["label_s"] = time.perf_counter() - clock
        table = qm9_query_table(args.test, n_heavy=9, seed=args.seed)
        molecules = test_molecules(table)
        clock = time.perf_counter()
        cache = Path(args.workdir) / f"test_labels_n{args.test}_seed{args.seed}.npz"
        labels = cached_test_labels(cache, labeler, molecules, client)
        seconds["label_test_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        represent_workspace(
            workspace, target="amons", level=level, client=client, progress=not args.quiet
        )
        seconds["represent_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        report = kernel_workspace(workspace, cols="amons", client=client, progress=not args.quiet)
        print(report.format())
        seconds["kernel_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        report = train_workspace(workspace, level)
        print(report.format())
        seconds["train_s"] = time.perf_counter() - clock

    ok = [k for k, label in enumerate(labels) if label.status == "ok"]
    relaxed = [molecules[k].with_positions(labels[k].positions) for k in ok]
    reference = np.array([labels[k].energy_hartree for k in ok])
    clock = time.perf_counter()
    dataset = predict_molecules(workspace, relaxed)
    seconds["predict_test_s"] = time.perf_counter() - clock
    errors = (dataset["energy"].values - reference) * KCAL
    flagged = dataset["flagged"].values.astype(bool)
    store = workspace.amons
    n_heavy = store.amons.read("n_heavy")
    # what the amon labels cost when they were made, from the workspace (a resumed run's own
    # label_s is only what it labeled)
    label_seconds = label_table(workspace, level, "amons").read("wall_time_s")
    status_counts: dict[str, int] = {}
    for label in labels:
        status_counts[label.status] = status_counts.get(label.status, 0) + 1
    worst = np.argsort(-np.abs(errors))[:10]
    records = per_molecule_records(dataset, errors, flagged)
    return {
        "benchmark": "qm9_global",
        "command": " ".join(["python3", *sys.argv]),
        "level_of_theory": level,
        "queries": args.queries,
        "max_heavy_atoms": args.max_heavy_atoms,
        "max_conformers_per_amon": workspace.parameters.get("max_conformers_per_amon"),
        "store_reused": built["store_reused"],
        "store": {
            "queries": int(workspace.queries.n_rows),
            "amon_graphs": int(store.amons.n_rows),
            "amon_graphs_by_n_heavy": {
                int(k): int(v) for k, v in zip(*np.unique(n_heavy, return_counts=True), strict=True)
            },
            "conformers": int(store.conformers.n_rows),
        },
        "model": {
            "n_train": report.n_train,
            "n_left_out": report.n_left_out,
            "solver": report.solver,
        },
        "test": {
            "n": args.test,
            "seed": args.seed,
            "qm9_indices": [int(i) for i in table.Index],
            "label_status": status_counts,
            "errors": statistics(errors),
            "flags": flag_scores(errors, flagged),
            "worst": [
                {
                    "id": str(dataset["query_id"].values[k]),
                    "error_kcal_mol": float(errors[k]),
                    "flagged": bool(flagged[k]),
                    "flag_reason": str(dataset["flag_reason"].values[k]),
                }
                for k in worst
            ],
            # every test molecule, so that the flags can be analysed without predicting again
            "per_molecule": records,
            "flag_sweep": flag_sweep(records),
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "amon_labels_core_hours": round(float(label_seconds.sum()) / 3600.0, 3),
        "authors": AUTHORS,
        "machine": machine_record(args.workers, load_start),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    store, test = result["store"], result["test"]
    e = test["errors"]
    f = test["flags"]
    lines = [
        f"# Whole-QM9 global model ({result['level_of_theory']})",
        "",
        f"`{result['command']}`",
        "",
        f"- Store: {store['queries']} QM9 queries ({result['queries']}), "
        f"{store['amon_graphs']} amon graphs (N_I <= {result['max_heavy_atoms']}; by N_I "
        f"{store['amon_graphs_by_n_heavy']}), {store['conformers']} conformers (at most "
        f"{result['max_conformers_per_amon']} per graph).",
        f"- Model: one global KRR on {result['model']['n_train']} labeled conformers "
        f"({result['model']['n_left_out']} left out), solver {result['model']['solver']}.",
        f"- Test: {e['n']} random 9-heavy QM9 molecules (seed {test['seed']}), GFN2-xTB relaxed.",
        "",
        "| MAE | median | RMSE | max | < 1 kcal/mol | < 2 kcal/mol |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {e['mae']:.2f} | {e['median']:.2f} | {e['rmse']:.2f} | {e['max']:.1f} | "
        f"{100 * e['share_below_1']:.0f}% | {100 * e['share_below_2']:.0f}% |",
        "",
        f"Flags: {f['bad_flagged']} of {f['n_bad']} queries with |error| > 2 kcal/mol flagged; "
        f"{f['n_flagged']} flagged in all; MAE of the unflagged "
        + (f"{f['mae_unflagged']:.2f}." if f["mae_unflagged"] is not None else "-."),
        "",
        *flag_table(test.get("flag_sweep")),
        "Seconds per stage: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.0f}" for k, v in result["seconds"].items())
        + f" (the amon labels cost {result['amon_labels_core_hours']:.2f} core-hours when made).",
        "",
    ]
    if result.get("note"):  # how the run went, added by hand (resumed, contended, ...)
        lines += [result["note"], ""]
    return "\n".join(lines)


def flag_table(sweep: dict[str, Any] | None) -> list[str]:
    """Markdown lines: each flag test's recall and precision (nothing for a result without
    per-molecule records)."""
    if not sweep:
        return []
    rows = [("ring system > N_I", sweep["ring_system"]), ("not covered", sweep["coverage"])]
    rows += [(f"sd > {t} kcal/mol", s) for t, s in sweep["uncertainty_sweep"].items()]
    rows.append(("**combined flag**", sweep["combined"]))
    lines = [
        f"Flag tests (bad: |error| > {BAD_KCAL} kcal/mol; recall: of the bad, the share flagged; "
        "precision: of the flagged, the share bad):",
        "",
        "| test | bad | flagged | bad flagged | recall | precision |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['n_bad']} | {s['n_flagged']} | {s['n_bad_flagged']} | "
            f"{s['recall']:.2f} | {s['precision']:.2f} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/amondask-qm9-global")
    parser.add_argument("--workspace", help="default: <workdir>/ws.zarr")
    parser.add_argument("--queries", choices=["nine-heavy", "all"], default="nine-heavy")
    parser.add_argument(
        "--limit", type=int, help="a random sample of this many QM9 molecules (a smoke run)"
    )
    parser.add_argument("--max-heavy-atoms", type=int, default=7)
    parser.add_argument("--max-conformers-per-amon", type=int, default=1)
    parser.add_argument("--test", type=int, default=1000, help="test queries (10000: authors')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "qm9_global.json")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--markdown-from",
        type=Path,
        metavar="JSON",
        help="only rewrite the Markdown of a result JSON (adding its flag sweep)",
    )
    args = parser.parse_args()
    if args.markdown_from:
        result = json.loads(args.markdown_from.read_text())
        if result["test"].get("per_molecule"):
            result["test"]["flag_sweep"] = flag_sweep(result["test"]["per_molecule"])
            args.markdown_from.write_text(json.dumps(result, indent=1) + "\n")
        args.markdown_from.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
        return
    args.workspace = args.workspace or str(Path(args.workdir) / "ws.zarr")
    result = run_benchmark(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":  # the LocalCluster starts worker processes: keep this guard
    main()
