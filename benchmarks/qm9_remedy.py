"""Outliers on QM9: do the flags catch the bad predictions, and does the remedy fix them?

    nice -n 10 python benchmarks/qm9_remedy.py [--n 100] [--seed 0] [--workers 2]
        [--workdir /tmp/qm9_remedy] [--strategies next-size ring-systems] [--extra 1]
        [--neighbours 150] [--remedy-workers 0]
        [--uncertainty-threshold KCAL] [--out benchmarks/results/qm9_remedy.json]

The seeded QM9 sample of ``benchmarks/qm9_sample.py`` (9 heavy atoms; n=100, seed=0 as the
learning-curve benchmark) is run through amondask at N_I = 7 with GFN2-xTB labels (amons and
queries relaxed; queries from their QM9 geometries), both protocols, and evaluated against the
queries' own labels. Then:

1. flags (amondask.models.flags): of the queries with |error| > 2 kcal/mol, the share flagged
   (recall), and of the flagged, the share really bad (precision), per test and combined, with
   a sweep of the posterior-sd threshold;
2. remedy (amondask.pipeline.remedy) of the flagged queries, per strategy: MAE / median / RMSE /
   max over all n queries before and after (outliers included; unflagged queries keep their
   prediction), and the cost: extra labeled conformers against the plain N_I = 7 labels.

Resumable: the workspace in --workdir is reused (labels are not recomputed). Writes JSON and a
Markdown table (same stem) with the command, the machine load and the wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

KCAL = 627.5094740631
BAD_KCAL = 2.0
SD_SWEEP_KCAL = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def statistics(error_kcal: np.ndarray) -> dict:
    """MAE, median |error|, RMSE, max |error| (kcal/mol) over the finite errors."""
    e = np.abs(np.asarray(error_kcal, dtype=float))
    e = e[np.isfinite(e)]
    if not len(e):
        return {"n": 0}
    return {
        "n": len(e),
        "mae": float(e.mean()),
        "median": float(np.median(e)),
        "rmse": float(np.sqrt(np.mean(e**2))),
        "max": float(e.max()),
        "within_1_kcal": int((e <= 1.0).sum()),
        "above_2_kcal": int((e > BAD_KCAL).sum()),
    }


def separation(flagged: np.ndarray, bad: np.ndarray) -> dict:
    """Recall (share of the bad that are flagged) and precision (share of the flagged that are
    bad)."""
    flagged = np.asarray(flagged, bool)
    bad = np.asarray(bad, bool)
    hit = int((flagged & bad).sum())
    return {
        "n_bad": int(bad.sum()),
        "n_flagged": int(flagged.sum()),
        "n_bad_flagged": hit,
        "recall": hit / bad.sum() if bad.sum() else float("nan"),
        "precision": hit / flagged.sum() if flagged.sum() else float("nan"),
    }


def build(args, workspace: Path) -> dict:
    """Run amondask (both protocols) and evaluate; returns wall times per stage."""
    from qm9_sample import qm9_query_table, write_query_extxyz

    import amondask

    table = qm9_query_table(args.n, seed=args.seed)
    queries = write_query_extxyz(table, workspace.parent / f"queries_{args.n}_{args.seed}.extxyz")
    seconds = {}
    started = time.perf_counter()
    common = {"n_workers": args.workers, "progress": False}
    amondask.run(str(queries), workspace, max_heavy_atoms=7, protocol="per-query", **common)
    seconds["run_per_query"] = time.perf_counter() - started
    started = time.perf_counter()
    amondask.run(None, workspace, max_heavy_atoms=7, protocol="global", **common)
    seconds["run_global"] = time.perf_counter() - started
    evaluations = {}
    for protocol in ("per-query", "global"):
        started = time.perf_counter()
        evaluations[protocol] = amondask.evaluate(
            workspace, "xtb", protocol=protocol, learning_curve=False, **common
        )
        seconds[f"evaluate_{protocol}"] = time.perf_counter() - started
    return {"seconds": seconds, "evaluations": evaluations, "indices": table.Index.tolist()}


def flag_study(workspace, evaluations: dict, threshold: float | None) -> tuple[dict, dict]:
    """Per protocol: the separation of each test, the sd sweep and the combined flags."""
    from amondask.models.flags import outlier_flags, ring_system_flags

    n_heavy = int(workspace.parameters["max_heavy_atoms"])
    molecules = workspace.queries.molecules()
    ring = ring_system_flags(molecules, n_heavy)
    study, flags = {}, {}
    for protocol, ev in evaluations.items():
        error = ev["error"].values
        bad = np.abs(np.nan_to_num(error, nan=np.inf)) > BAD_KCAL
        sd = ev["uncertainty"].values * KCAL
        covered = ev["covered"].values
        entry = {
            "ring_system": separation(ring, bad),
            "coverage": separation(~covered, bad),
            "uncertainty_sweep": {
                str(t): separation(np.nan_to_num(sd, nan=-1) > t, bad) for t in SD_SWEEP_KCAL
            },
        }
        flagged, reason = outlier_flags(
            ring_system=ring,
            uncertainty_hartree=ev["uncertainty"].values,
            covered=covered,
            uncertainty_threshold=threshold,
        )
        entry["combined"] = separation(flagged, bad)
        entry["uncertainty_threshold_kcal_mol"] = threshold
        entry["bad_queries"] = [
            {
                "id": str(ev["query_id"].values[k]),
                "error": float(error[k]),
                "sd": float(sd[k]),
                "reason": str(reason[k]),
            }
            for k in np.flatnonzero(bad)
        ]
        study[protocol] = entry
        flags[protocol] = (flagged, reason)
    return study, flags


def remedy_study(args, workspace, evaluations: dict, flags: dict) -> dict:
    """Per variant (strategy, neighbours): the remedied errors of the flagged queries and the
    totals over all queries. One labeler with a large cache in this process, so the variants
    label each extra conformer once (its time counts once, in the first variant)."""
    from amondask.label import get_labeler
    from amondask.pipeline import SERIAL
    from amondask.pipeline.remedy import remedy_workspace

    labeler = get_labeler("xtb", cache_size=100_000)
    out = {}
    flagged_any = np.zeros(workspace.queries.n_rows, dtype=bool)
    for flagged, _ in flags.values():
        flagged_any |= flagged
    rows = np.flatnonzero(flagged_any).tolist()
    variants = [(s, 0) for s in args.strategies]
    variants += [(args.strategies[0], n) for n in args.neighbours if n > 0]
    client = SERIAL
    if args.remedy_workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=args.remedy_workers, threads_per_worker=1, dashboard_address=":0"
        )
        client = Client(cluster)
    for strategy, neighbours in variants:
        protocols = ("per-query", "global") if neighbours == 0 else ("per-query",)
        started = time.perf_counter()
        result = remedy_workspace(
            workspace,
            labeler,
            queries=rows,
            protocols=protocols,
            strategy=strategy,
            extra_heavy_atoms=args.extra,
            neighbours=neighbours,
            client=client,
            progress=False,
        )
        seconds = time.perf_counter() - started
        entry = {
            "strategy": strategy,
            "neighbours": neighbours,
            "seconds": seconds,
            "n_remedied": len(rows),
            "n_extra_conformers": int(result.attrs["n_extra_conformers"]),
            "n_extra_ok": int(result["n_extra_ok"].sum()),
            "n_borrowed_mean": float(result["n_borrowed"].mean()) if rows else 0.0,
            "n_plain_amon_conformers": int(result.attrs["n_amon_conformers"]),
            "extra_label_seconds": float(result["extra_label_seconds"].sum()),
        }
        entry["label_ratio"] = (
            entry["n_plain_amon_conformers"] + entry["n_extra_conformers"]
        ) / entry["n_plain_amon_conformers"]
        for protocol in protocols:
            ev = evaluations[protocol]
            flagged, _ = flags[protocol]
            reference = ev["reference_energy"].values
            error = ev["error"].values.copy()
            part = result.sel(protocol=protocol)
            before = (part["energy_before"].values - reference[rows]) * KCAL
            after = (part["energy_after"].values - reference[rows]) * KCAL
            remedied = error.copy()
            mine = flagged[rows]
            chosen = np.asarray(rows, dtype=np.int64)[mine]
            remedied[chosen] = after[mine]
            entry[protocol] = {
                "before": statistics(error),
                "after": statistics(remedied),
                "flagged_before": statistics(error[chosen]),
                "flagged_after": statistics(after[mine]),
                # the refit without extras reproduces the workspace's prediction
                "max_before_mismatch_kcal": float(np.nanmax(np.abs(before - error[rows])))
                if rows
                else 0.0,
                "queries": [
                    {
                        "id": str(ev["query_id"].values[r]),
                        "before": float(error[r]),
                        "after": float(after[k]),
                        "n_extra": int(result["n_extra_ok"].values[k]),
                        "flagged": bool(flagged[r]),
                    }
                    for k, r in enumerate(rows)
                ],
            }
        name = strategy if neighbours == 0 else f"{strategy}+{neighbours} neighbours"
        out[name] = entry
    if client is not SERIAL:
        client.close()
        cluster.close()
    return out


def markdown(report: dict) -> str:
    lines = [
        f"# Outliers on QM9: flags and remedy (n = {report['n']}, seed {report['seed']})",
        "",
        f"Level of theory: {report['level_of_theory']} (amons and queries relaxed). N_I = 7, "
        f"'bad' means |error| > {BAD_KCAL} kcal/mol. Command: `{report['command']}`; load "
        f"{report['load_start']} -> {report['load_end']}.",
        "",
        "## Flags (of the bad, the share flagged; of the flagged, the share bad)",
        "",
        "| protocol | test | bad | flagged | bad flagged | recall | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol, study in report["flags"].items():
        rows = [("ring system > N_I", study["ring_system"]), ("not covered", study["coverage"])]
        rows += [(f"sd > {t} kcal/mol", s) for t, s in study["uncertainty_sweep"].items()]
        rows.append(("**combined flag**", study["combined"]))
        for name, s in rows:
            lines.append(
                f"| {protocol} | {name} | {s['n_bad']} | {s['n_flagged']} | {s['n_bad_flagged']} "
                f"| {s['recall']:.2f} | {s['precision']:.2f} |"
            )
    lines += [
        "",
        "## Remedy (all queries; flagged queries remedied, the others unchanged; kcal/mol)",
        "",
        "| strategy | protocol | MAE before | after | median before | after | RMSE after | "
        "max before | after | extra labels | labels vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, entry in report["remedy"].items():
        for protocol in ("per-query", "global"):
            if protocol not in entry:
                continue
            b, a = entry[protocol]["before"], entry[protocol]["after"]
            lines.append(
                f"| {strategy} | {protocol} | {b['mae']:.2f} | {a['mae']:.2f} | "
                f"{b['median']:.2f} | {a['median']:.2f} | {a['rmse']:.2f} | {b['max']:.1f} | "
                f"{a['max']:.1f} | {entry['n_extra_conformers']} | {entry['label_ratio']:.2f}x |"
            )
    lines += ["", "Wall times (s): " + json.dumps(report["seconds"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="/tmp/qm9_remedy")
    parser.add_argument("--strategies", nargs="+", default=["next-size", "ring-systems"])
    parser.add_argument("--extra", type=int, default=1, help="k of the remedy strategies")
    parser.add_argument(
        "--neighbours",
        type=int,
        nargs="*",
        default=[150],
        help="per-query variants of the first strategy that also borrow this many nearest "
        "labeled amon conformers of other queries",
    )
    parser.add_argument(
        "--uncertainty-threshold",
        type=float,
        default=None,
        help="posterior sd (kcal/mol) above which a prediction is flagged (default: config)",
    )
    parser.add_argument(
        "--remedy-workers",
        type=int,
        default=0,
        help="worker processes for the remedy (0: in this process, one labeler cache shared "
        "by the variants)",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "qm9_remedy.json"))
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from amondask import config
    from amondask.store.workspace import Workspace

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"qm9_{args.n}_seed{args.seed}.zarr"
    report = {
        "n": args.n,
        "seed": args.seed,
        "command": "python " + " ".join(sys.argv),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_start": _load(),
    }
    built = build(args, path)
    workspace = Workspace(path)
    evaluations = built["evaluations"]
    report["query_indices"] = built["indices"]
    report["level_of_theory"] = evaluations["per-query"].attrs["level_of_theory"]
    threshold = config.get(
        "models.flags.uncertainty-threshold-kcal-mol", args.uncertainty_threshold
    )
    report["flags"], flags = flag_study(workspace, evaluations, threshold)
    report["remedy"] = remedy_study(args, workspace, evaluations, flags)
    report["seconds"] = {
        **built["seconds"],
        **{f"remedy_{s}": e["seconds"] for s, e in report["remedy"].items()},
    }
    report["load_end"] = _load()
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":  # LocalClusters start worker processes
    main()
