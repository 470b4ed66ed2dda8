"""The QM9 learning-curve benchmark (issue #10, items 1, 2 and 5): unseen 9-heavy-atom QM9
molecules predicted from their amons only, N_I = 1..7, both protocols.

A seeded random sample of QM9 molecules with 9 heavy atoms (``--n``, default 100; ``--quick``
20; ``--n 10000`` the authors' size) is run through the real system: ``amondask.run`` (read,
extract 3D amons with conformers, GFN2-xTB relaxation labels, aSLATM, kernels, global model)
and ``amondask.evaluate`` for the global and the per-query protocol (the queries labeled at the
same level: GFN2-xTB relaxation from their QM9 geometry; the learning curve over N_I). For each
N_I and protocol it reports MAE, median, RMSE and max |error| (kcal/mol) and the amons used
(graphs and conformers: of the whole store for the global protocol, per query for the
per-query protocol); the wall time of every stage; and per query its errors, uncertainties and
coverage flags per N_I (so the outlier flags can be scored from the JSON). With ``--cv`` the
kernel hyperparameters are also chosen by 5-fold cross-validation on the amons (sigma scale x
lambda, :func:`amondask.models.cross_validate`) and the N_I = max point is re-predicted with
them (both protocols, from molecules): the authors' widths and lambda stay the default.

    nice -n 10 python3 benchmarks/qm9_amons.py --quick
    nice -n 10 python3 benchmarks/qm9_amons.py --n 100 --cv

Cost of the sizes (distinct amon conformers of the seed-0 sample, counted in the whole-QM9
store; GFN2-xTB labels at the mean 0.22 s of the whole-QM9 amons, 18,845 in 1.16 core-hours):
100 queries 2,437 conformers (~9 core-minutes), 1,000 19,737 (~1.2 core-hours), ``--large``
(10,000, the authors' size) 155,134 (~9.5 core-hours, ~5 h on 2 cores, plus the queries); its
global protocol's 155,134^2 kernel is 180 GiB, out of core, hours more. Not run on this
machine; the whole-QM9 global model of ``qm9_global.py`` (one conformer per graph, 1,000
test queries; ``--test 10000`` the authors' size) is the large run here.

Writes ``benchmarks/results/qm9_amons_<n>.json`` and ``.md`` and the learning-curve PNG
``qm9_amons_<n>_learning_curve.png``; the workspace (``--workdir``) makes a re-run resume.
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

from qm9_sample import (  # noqa: E402
    machine_record,
    qm9_query_table,
    run_and_evaluate,
    write_query_extxyz,
)

KCAL = 627.509474
RESULTS = Path(__file__).resolve().parent / "results"
AUTHORS = {
    "level_of_theory": "B3LYP/cc-pVDZ (three QM9 molecules, per-query protocol)",
    "n_heavy": [1, 2, 3, 4, 5, 6, 7],
    "description": "curves fall from ~1000 kcal/mol at N_I = 1 to ~40 at N_I = 5 and below 1 "
    "from N_I = 6; errors at N_I = 7 of 0.23, 0.14 and 0.28 kcal/mol with 16, 19 and 30 amons",
    "errors_at_7_kcal_mol": [0.23, 0.14, 0.28],
}
PROTOTYPE = {
    "level_of_theory": "GFN2-xTB relaxed (tblite), 20 random QM9 queries, authors' amons",
    "n_heavy": [3, 4, 5, 6, 7],
    "per_query_mae": [27, 18, 13, 9.0, 7.3],
    "per_query_median": [23, 14, 4.6, 1.9, 0.71],
    "global_mae_7": 4.6,
    "global_median_7": 0.91,
}


def statistics_per_level(errors_kcal: np.ndarray) -> list[dict[str, float]]:
    """Per row of ``errors_kcal`` (n_levels, n_queries; NaN = not predicted): MAE, median,
    RMSE and max of |error| over the finite entries, and their number."""
    out = []
    for row in np.atleast_2d(np.asarray(errors_kcal, dtype=np.float64)):
        finite = np.abs(row[np.isfinite(row)])
        if not len(finite):
            out.append({"mae": None, "median": None, "rmse": None, "max": None, "n": 0})
            continue
        out.append(
            {
                "mae": float(finite.mean()),
                "median": float(np.median(finite)),
                "rmse": float(np.sqrt(np.mean(finite**2))),
                "max": float(finite.max()),
                "n": int(len(finite)),
            }
        )
    return out


def amons_used(
    graph_of_row: np.ndarray,
    heavy_of_row: np.ndarray,
    query_of_pair: np.ndarray,
    row_of_pair: np.ndarray,
    n_queries: int,
    levels: np.ndarray,
) -> dict[str, list]:
    """Amons used per N_I in ``levels``: distinct graphs and conformers of the whole store
    (global protocol) and per query (per-query protocol: mean, min, max over queries).

    ``graph_of_row``, ``heavy_of_row``: (n_rows,) amon graph id and N_I of each training
    conformer (rows with an ``ok`` label); ``query_of_pair``, ``row_of_pair``: the query-conformer
    pairs, with rows indexing the training conformers (pairs of other conformers left out).
    """
    out: dict[str, list] = {
        key: []
        for key in (
            "global_graphs",
            "global_conformers",
            "per_query_graphs_mean",
            "per_query_conformers_mean",
            "per_query_conformers_min",
            "per_query_conformers_max",
        )
    }
    for n_heavy in levels:
        small = heavy_of_row <= n_heavy
        out["global_graphs"].append(int(len(np.unique(graph_of_row[small]))))
        out["global_conformers"].append(int(small.sum()))
        keep = small[row_of_pair]
        queries, rows = query_of_pair[keep], row_of_pair[keep]
        conformers = np.bincount(queries, minlength=n_queries)
        pairs = np.unique(np.stack([queries, graph_of_row[rows]]), axis=1)
        graphs = np.bincount(pairs[0], minlength=n_queries)
        out["per_query_graphs_mean"].append(float(graphs.mean()))
        out["per_query_conformers_mean"].append(float(conformers.mean()))
        out["per_query_conformers_min"].append(int(conformers.min()))
        out["per_query_conformers_max"].append(int(conformers.max()))
    return out


def _workspace_amons(workspace: Any, level: str) -> dict[str, np.ndarray]:
    """Training rows (ok labels), their graphs and N_I, and the query-conformer pairs."""
    from amondask.pipeline.train import conformer_heavy_atoms, training_rows

    rows, _, _ = training_rows(workspace, level)
    amons = workspace.amons
    position = np.full(amons.conformers.n_rows, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    pair_query = amons.query_conformers.read("query").astype(np.int64)
    pair_row = position[amons.query_conformers.read("conformer").astype(np.int64)]
    kept = pair_row >= 0
    return {
        "rows": rows,
        "graph": amons.conformers.read("amon").astype(np.int64)[rows],
        "heavy": conformer_heavy_atoms(workspace, rows),
        "pair_query": pair_query[kept],
        "pair_row": pair_row[kept],
    }


def _curve_record(evaluation: Any) -> dict[str, Any]:
    stats = statistics_per_level(evaluation["curve_error"].values)
    return {
        "n_heavy": [int(v) for v in evaluation["n_heavy"].values],
        "mae": [s["mae"] for s in stats],
        "median": [s["median"] for s in stats],
        "rmse": [s["rmse"] for s in stats],
        "max": [s["max"] for s in stats],
        "n_predicted": [s["n"] for s in stats],
        "n_train_mean": [float(v) for v in evaluation["curve_n_train"].values],
        "baseline_determined": [bool(v) for v in evaluation["curve_baseline_determined"].values],
        "baseline_mae_at_max": _finite(evaluation.attrs["baseline_mae_kcal_mol"]),
        "seconds": float(evaluation.attrs["seconds"]),
    }


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _per_query_record(table: Any, evaluations: dict[str, Any]) -> list[dict[str, Any]]:
    first = next(iter(evaluations.values()))
    records = []
    for q, (index, smiles) in enumerate(zip(table.Index, table.SMILES, strict=True)):
        record = {
            "qm9_index": int(index),
            "id": str(first["query_id"].values[q]),
            "smiles": str(smiles),
            "label_status": str(first["label_status"].values[q]),
            "reference_hartree": _finite(first["reference_energy"].values[q]),
        }
        for protocol, evaluation in evaluations.items():
            key = protocol.replace("-", "_")
            record[f"{key}_error_kcal_mol"] = [
                _finite(v) for v in evaluation["curve_error"].values[:, q]
            ]
            record[f"{key}_uncertainty_kcal_mol"] = [
                _finite(v * KCAL) for v in evaluation["curve_uncertainty"].values[:, q]
            ]
            record[f"{key}_covered"] = [bool(v) for v in evaluation["curve_covered"].values[:, q]]
        records.append(record)
    return records


def _by_source_row(table: Any) -> list[Any]:
    """A label table's molecules (at the labeled geometries) in source-row order."""
    molecules = table.molecules()
    order = np.argsort(table.read("source_row"), kind="stable")
    return [molecules[i] for i in order]


def cross_validated_point(
    workspace: Any, level: str, *, max_cv_amons: int, seed: int, client: Any
) -> dict[str, Any]:
    """5-fold CV of (sigma scale, lambda) on (a seeded subset of) the labeled amons, and the
    queries predicted at the labeled geometries with the chosen and the default
    hyperparameters, both protocols, from molecules (all amons up to the workspace's N_I)."""
    from amondask.models import AmonKRR, cross_validate, per_query_molecules
    from amondask.pipeline.kernel import amon_sigmas
    from amondask.store.labels import label_table, labels_frame

    started = time.perf_counter()
    amons = _by_source_row(label_table(workspace, level, "amons"))
    frame = labels_frame(workspace, level, "amons")  # sorted by source row, as ``amons``
    ok = np.flatnonzero(frame["status"].to_numpy() == "ok")
    source = frame["source_row"].to_numpy()
    energies = frame["energy_hartree"].to_numpy()
    query_frame = labels_frame(workspace, level, "queries")
    query_molecules = _by_source_row(label_table(workspace, level, "queries"))
    query_ok = query_frame["status"].to_numpy() == "ok"
    reference = np.full(workspace.queries.n_rows, np.nan)
    reference[query_frame["source_row"].to_numpy()[query_ok]] = query_frame[
        "energy_hartree"
    ].to_numpy()[query_ok]
    if len(query_molecules) != workspace.queries.n_rows:
        raise RuntimeError("every query needs a label row (run the evaluation first)")
    queries = query_molecules

    rng = np.random.default_rng(seed)
    subset = ok if len(ok) <= max_cv_amons else np.sort(rng.choice(ok, max_cv_amons, False))
    sigma = amon_sigmas(workspace, "gaussian")
    base = AmonKRR(sigma=sigma, alpha=1e-4)
    cv_started = time.perf_counter()
    cv = cross_validate(
        base,
        [amons[i] for i in subset],
        energies[subset],
        sigma_scales=(0.5, 0.75, 1.0, 1.5, 2.0),
        alphas=(1e-8, 1e-6, 1e-4, 1e-2),
        refit=False,
    )
    cv_seconds = time.perf_counter() - cv_started

    # The per-query training sets: each query's own conformers with an ok label.
    amon_store = workspace.amons
    position = {int(source[i]): j for j, i in enumerate(ok)}
    own: list[list[int]] = [[] for _ in range(len(queries))]
    for q, row in zip(
        amon_store.query_conformers.read("query").tolist(),
        amon_store.query_conformers.read("conformer").tolist(),
        strict=True,
    ):
        if row in position:
            own[q].append(position[row])
    training = [amons[i] for i in ok]
    points = {}
    for name, scale, alpha in (
        ("default", 1.0, 1e-4),
        ("per_query_widths", None, 1e-4),
        ("cross_validated", cv.best_sigma_scale, cv.best_alpha),
    ):
        # None: the authors' per-query widths (sigma_Z from each query's own amons).
        widths = "auto" if scale is None else {z: scale * s for z, s in sigma.items()}
        point = {"sigma_scale": scale, "alpha": float(alpha), "global": None}
        if scale is not None:
            model = AmonKRR(sigma=widths, alpha=alpha)
            global_energy = np.asarray(model.fit(training, energies[ok]).predict(queries))
            point["global"] = statistics_per_level((global_energy - reference) * KCAL)[0]
        per_query = per_query_molecules(
            AmonKRR(sigma=widths, alpha=alpha),
            training,
            energies[ok],
            queries,
            [sorted(o) for o in own],
            scheduler=client,
        )
        errors = (per_query["energy"].values - reference) * KCAL
        point["per_query"] = statistics_per_level(errors)[0]
        point["per_query_errors_kcal_mol"] = [_finite(v) for v in errors]
        points[name] = point
    return {
        "n_cv_amons": int(len(subset)),
        "n_folds": 5,
        "sigma_z_default": {str(z): float(s) for z, s in sigma.items()},
        "best_sigma_scale": float(cv.best_sigma_scale),
        "best_alpha": float(cv.best_alpha),
        "cv_table": cv.table[
            ["sigma_scale", "alpha", "mae_kcal_per_mol", "mae_std_kcal_per_mol"]
        ].to_dict("records"),
        "cv_seconds": cv_seconds,
        "points": points,
        "seconds": time.perf_counter() - started,
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table (one row per N_I, both protocols)."""
    curves = result["learning_curve"]
    used = result["amons_used"]
    lines = [
        f"# QM9 learning curve: {result['n_queries']} random 9-heavy-atom queries "
        f"(seed {result['seed']})",
        "",
        f"Level of theory: {result['level_of_theory']} (amons and queries relaxed). "
        f"Errors in kcal/mol over the {curves['per-query']['n_predicted'][-1]} queries "
        "labeled ok; amons: distinct graphs / conformers (global: the whole store; per-query: "
        "mean per query).",
        "",
        "| N_I | per-query MAE | median | RMSE | max | global MAE | median | RMSE | max "
        "| amons (global) | amons per query |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    pq, gl = curves["per-query"], curves["global"]
    for k, n_heavy in enumerate(pq["n_heavy"]):
        lines.append(
            f"| {n_heavy} | {cell(pq['mae'][k])} | {cell(pq['median'][k])} | "
            f"{cell(pq['rmse'][k])} | {cell(pq['max'][k])} | {cell(gl['mae'][k])} | "
            f"{cell(gl['median'][k])} | {cell(gl['rmse'][k])} | {cell(gl['max'][k])} | "
            f"{used['global_graphs'][k]} / {used['global_conformers'][k]} | "
            f"{used['per_query_graphs_mean'][k]:.1f} / {used['per_query_conformers_mean'][k]:.1f}"
            " |"
        )
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result["stage_seconds"].items())
    lines += ["", f"Wall time per stage: {seconds}."]
    if result.get("hyperparameters"):
        h = result["hyperparameters"]
        lines += [
            "",
            f"Hyperparameters at N_I = {result['max_heavy_atoms']} (5-fold CV on "
            f"{h['n_cv_amons']} amons; sigma = scale x the authors' sigma_Z):",
            "",
            "| choice | sigma scale | lambda | per-query MAE | median | global MAE | median |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, p in h["points"].items():
            scale = "per query" if p["sigma_scale"] is None else f"{p['sigma_scale']:g}"
            glob = p["global"] or {"mae": None, "median": None}
            lines.append(
                f"| {name} | {scale} | {p['alpha']:g} | "
                f"{cell(p['per_query']['mae'])} | {cell(p['per_query']['median'])} | "
                f"{cell(glob['mae'])} | {cell(glob['median'])} |"
            )
    return "\n".join(lines) + "\n"


def plot_curves(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    for protocol, marker in (("per-query", "o"), ("global", "s")):
        curve = result["learning_curve"][protocol]
        n = np.array(curve["n_heavy"])
        for stat, style in (("mae", "-"), ("median", "--")):
            values = np.array([np.nan if v is None else v for v in curve[stat]])
            axis.plot(n, values, style, marker=marker, label=f"{protocol} {stat}")
    axis.plot(
        PROTOTYPE["n_heavy"],
        PROTOTYPE["per_query_median"],
        ":",
        color="grey",
        marker="x",
        label="prototype per-query median (20 queries)",
    )
    axis.scatter(
        [7] * 3,
        AUTHORS["errors_at_7_kcal_mol"],
        color="k",
        marker="*",
        zorder=5,
        label="authors, 3 molecules (B3LYP)",
    )
    axis.axhline(1.0, color="grey", lw=0.8)
    axis.set_yscale("log")
    axis.set_xlabel("N_I (heavy atoms per amon)")
    axis.set_ylabel("|error| (kcal/mol)")
    axis.set_title(f"{result['n_queries']} QM9 queries (9 heavy atoms), GFN2-xTB", fontsize=10)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from amondask.cluster import get_client
    from amondask.label import get_labeler
    from amondask.store.workspace import Workspace

    n = 20 if args.quick else 10000 if args.large else args.n
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    started = time.perf_counter()
    table = qm9_query_table(n, n_heavy=9, seed=args.seed)
    sample_seconds = time.perf_counter() - started
    queries = write_query_extxyz(table, workdir / f"qm9_{n}_seed{args.seed}.xyz")
    path = workdir / f"qm9_{n}_seed{args.seed}_n{args.max_heavy_atoms}.zarr"
    labeler = get_labeler("xtb")
    with get_client(None, n_workers=args.workers, quiet=True) as client:
        evaluations, stage_seconds = run_and_evaluate(
            str(queries),
            path,
            labeler,
            max_heavy_atoms=args.max_heavy_atoms,
            client=client,
            quiet=args.quiet,
            plots_prefix=str(workdir / f"qm9_{n}") if args.plots else None,
        )
        stage_seconds = {"sample": sample_seconds, **stage_seconds}
        workspace = Workspace(str(path))
        level = labeler.level_of_theory
        hyper = None
        if args.cv:
            clock = time.perf_counter()
            hyper = cross_validated_point(
                workspace, level, max_cv_amons=args.cv_max_amons, seed=args.seed, client=client
            )
            stage_seconds["cross-validation"] = time.perf_counter() - clock
    found = _workspace_amons(workspace, level)
    levels = evaluations["per-query"]["n_heavy"].values
    used = amons_used(
        found["graph"], found["heavy"], found["pair_query"], found["pair_row"], n, levels
    )
    label_query_times = {
        protocol: e.attrs.get("queries_labeled_now") for protocol, e in evaluations.items()
    }
    return {
        "benchmark": "qm9_amons",
        "command": " ".join(["python3", *sys.argv]),
        "n_queries": n,
        "seed": args.seed,
        "qm9_indices": [int(i) for i in table.Index],
        "max_heavy_atoms": args.max_heavy_atoms,
        "level_of_theory": level,
        "workspace": str(path),
        "learning_curve": {p: _curve_record(e) for p, e in evaluations.items()},
        "amons_used": used,
        "stage_seconds": stage_seconds,
        "queries_labeled": label_query_times,
        "hyperparameters": hyper,
        "queries": _per_query_record(table, evaluations),
        "authors": AUTHORS,
        "prototype": PROTOTYPE,
        "machine": machine_record(args.workers, load_start),
        "wall_seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="queries (default 100)")
    parser.add_argument("--quick", action="store_true", help="20 queries")
    parser.add_argument(
        "--large", action="store_true", help="10,000 queries, the authors' size (hours: see above)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-heavy-atoms", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--workdir", default="/tmp/amondask-qm9-amons")
    parser.add_argument("--cv", action="store_true", help="also cross-validate sigma and lambda")
    parser.add_argument("--cv-max-amons", type=int, default=1500)
    parser.add_argument("--plots", action="store_true", help="also the evaluation's own PNGs")
    parser.add_argument("--output", default=str(RESULTS), help="directory of the results")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    result = run_benchmark(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    stem = output / f"qm9_amons_{result['n_queries']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    stem.with_suffix(".md").write_text(text)
    plot_curves(result, output / f"qm9_amons_{result['n_queries']}_learning_curve.png")
    print(text)


if __name__ == "__main__":  # the LocalCluster starts worker processes: keep this guard
    main()
