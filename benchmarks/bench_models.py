"""Benchmark of amondask.models (issue 8, items 2-4): accuracy and cost of AmonKRR on QM9.

Data: the QM9 molecules with <= ``--max-heavy`` heavy atoms among the first ``--records`` QM9
records (QM9 numbers molecules by size, so these are all of them up to 6 heavy atoms and most 7s),
target U0 (hartree, B3LYP/6-31G(2df,p)); a seeded random test set of ``--n-test`` molecules and
nested training sets of the sizes ``--train-sizes`` from the rest. Everything uses the authors'
settings (aSLATM dgrid 0.04, per-element sigma_Z, lambda 1e-4, per-element baseline).

Reported:

* learning curve: per training size, fit and predict wall time, MAE / median / max absolute
  error (kcal/mol) of the model and of its baseline alone over the test molecules it predicts
  (not those with an element absent from training: energy NaN, counted), the share covered,
  and how the uncertainty ranks the errors (Spearman rank correlation; share of the errors
  > 2 kcal/mol among the 10% most uncertain);
* cross-validation at ``--cv-size``: 5-fold over sigma scales x lambdas, its wall time, the
  chosen point and the test MAE of the refitted model beside the default's;
* protocols: per-query models (each query trained on ``--amons-per-query`` random training
  molecules, sliced from one precomputed kernel) for all test molecules, wall time with the
  synchronous scheduler, threads and a 2-process LocalCluster, and the global model's time.

Machine: 2 cores, shared (timings are noisy; compare within one run).

    python3 benchmarks/bench_models.py --json benchmarks/results/bench_models.json
    python3 benchmarks/bench_models.py --quick
"""

from __future__ import annotations

import argparse
import ast
import faulthandler
import json
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def load_qm9(records: int, max_heavy: int) -> tuple[list, np.ndarray]:
    import pandas as pd
    import qm9pack

    path = Path(qm9pack.__file__).parent / "data" / "qm9_part1.csv"
    table = pd.read_csv(
        path, nrows=records, usecols=["Index", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
    ).sort_values("Index")
    molecules, energies = [], []
    for elements, xyz, energy in zip(
        table.Elements, table.XYZ_Ang, table.InternalEnergy_0K_au, strict=True
    ):
        numbers = np.array([SYMBOLS[s] for s in ast.literal_eval(elements)], dtype=np.int64)
        if int(np.sum(numbers > 1)) <= max_heavy:
            molecules.append((numbers, np.array(ast.literal_eval(xyz), dtype=np.float64)))
            energies.append(float(energy))
    return molecules, np.asarray(energies)


def error_summary(errors_kcal: np.ndarray) -> dict[str, float]:
    absolute = np.abs(errors_kcal)
    return {
        "mae": float(absolute.mean()),
        "median": float(np.median(absolute)),
        "max": float(absolute.max()),
    }


def learning_curve(molecules, energies, train_order, test, sizes) -> list[dict]:
    from scipy.stats import spearmanr

    from amondask.models import KCAL_PER_MOL_PER_HARTREE, AmonKRR

    test_molecules = [molecules[i] for i in test]
    rows = []
    for size in sizes:
        train = train_order[:size]
        started = time.perf_counter()
        model = AmonKRR().fit([molecules[i] for i in train], energies[train])
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        dataset = model.predict(test_molecules, return_dataset=True)
        predict_s = time.perf_counter() - started
        errors = (dataset.energy.values - energies[test]) * KCAL_PER_MOL_PER_HARTREE
        baseline = (dataset.baseline_energy.values - energies[test]) * KCAL_PER_MOL_PER_HARTREE
        # NaN: a test molecule with an element no training molecule has (no prediction)
        predicted = np.isfinite(errors)
        covered = dataset.covered.values
        errors, baseline = errors[predicted], baseline[predicted]
        uncertainty = dataset.uncertainty.values[predicted]
        top = uncertainty >= np.quantile(uncertainty, 0.9)
        bad = np.abs(errors) > 2.0
        flagged = ~covered[predicted]
        row = {
            "n_train": int(size),
            "fit_s": fit_s,
            "predict_s": predict_s,
            "n_not_predicted": int((~predicted).sum()),
            "model": error_summary(errors),
            "baseline_only": error_summary(baseline),
            "covered_share": float(covered.mean()),
            "mae_predicted_but_uncovered": float(np.abs(errors[flagged]).mean())
            if flagged.any()
            else None,
            "spearman_uncertainty_error": float(spearmanr(uncertainty, np.abs(errors))[0]),
            "bad_share_in_top10pct_uncertainty": float(bad[top].sum() / max(bad.sum(), 1)),
            "n_bad": int(bad.sum()),
            "solve": model.solve_info_["method"],
        }
        rows.append(row)
        print(
            f"{size:6d} fit {fit_s:7.1f}s predict {predict_s:6.1f}s | "
            f"MAE {row['model']['mae']:6.2f} median {row['model']['median']:5.2f} "
            f"max {row['model']['max']:6.1f} | baseline "
            f"{row['baseline_only']['mae']:6.2f} | covered {row['covered_share']:.3f} "
            f"(no prediction {row['n_not_predicted']}) | "
            f"rho(unc,|err|) {row['spearman_uncertainty_error']:.2f} | bad in top-10% unc "
            f"{row['bad_share_in_top10pct_uncertainty']:.2f} of {row['n_bad']}",
            flush=True,
        )
    return rows


def nan_mae(model, molecules, energies) -> float:
    """MAE (kcal/mol) over the molecules the model predicts (not NaN)."""
    from amondask.models import KCAL_PER_MOL_PER_HARTREE

    return float(np.nanmean(np.abs(model.predict(molecules) - energies)) * KCAL_PER_MOL_PER_HARTREE)


def cross_validation(molecules, energies, train, test) -> dict:
    from amondask.models import AmonKRR

    scales, alphas = (0.5, 1.0, 2.0, 4.0), (1e-8, 1e-6, 1e-4, 1e-2)
    train_molecules = [molecules[i] for i in train]
    test_molecules = [molecules[i] for i in test]
    started = time.perf_counter()
    result = AmonKRR().cv(
        train_molecules, energies[train], sigma_scales=scales, alphas=alphas, n_folds=5
    )
    cv_s = time.perf_counter() - started
    default = AmonKRR().fit(train_molecules, energies[train])
    out = {
        "n_train": len(train),
        "grid": {"sigma_scales": scales, "alphas": alphas, "n_folds": 5},
        "cv_s": cv_s,
        "best_sigma_scale": result.best_sigma_scale,
        "best_alpha": result.best_alpha,
        "cv_mae_best": float(result.table.mae_kcal_per_mol.min()),
        "cv_mae_default": float(
            result.table.query("sigma_scale == 1.0 and alpha == 1e-4").mae_kcal_per_mol.iloc[0]
        ),
        "test_mae_best": nan_mae(result.best_estimator, test_molecules, energies[test]),
        "test_mae_default": nan_mae(default, test_molecules, energies[test]),
        "table": result.table[["sigma_scale", "alpha", "mae_kcal_per_mol"]].to_dict("records"),
    }
    print(
        f"CV n={len(train)}: {cv_s:.1f}s for {len(scales) * len(alphas)} points x 5 folds; best "
        f"sigma x{out['best_sigma_scale']} lambda {out['best_alpha']:g} (CV MAE "
        f"{out['cv_mae_best']:.2f} vs default {out['cv_mae_default']:.2f}); test MAE "
        f"{out['test_mae_best']:.2f} vs default {out['test_mae_default']:.2f} kcal/mol",
        flush=True,
    )
    return out


def protocols(molecules, energies, pool, test, amons_per_query: int, seed: int) -> dict:
    import distributed

    from amondask.kernels import element_sigmas, local_kernel
    from amondask.models import (
        KCAL_PER_MOL_PER_HARTREE,
        element_count_matrix,
        global_protocol,
        per_query_protocol,
    )
    from amondask.represent import element_blocks, slatm_mbtypes

    amons = [molecules[i] for i in pool]
    queries = [molecules[i] for i in test]
    started = time.perf_counter()
    mbtypes = slatm_mbtypes([n for n, _ in amons + queries])
    amon_blocks = element_blocks(amons, mbtypes, dgrid=(0.04, 0.04))
    query_blocks = element_blocks(queries, mbtypes, dgrid=(0.04, 0.04))
    sigma = element_sigmas({z: b for z, b in amon_blocks.items() if len(b.molecule_index)})
    inputs = {
        "amon_kernel": local_kernel(amon_blocks, sigma=sigma),
        "amon_energies": energies[pool],
        "query_amon_kernel": local_kernel(
            query_blocks, amon_blocks, sigma=sigma, n_row_molecules=len(queries)
        ),
        "amon_element_counts": element_count_matrix([n for n, _ in amons], [1, 6, 7, 8, 9]),
        "query_element_counts": element_count_matrix([n for n, _ in queries], [1, 6, 7, 8, 9]),
        "query_self_kernel": np.diag(local_kernel(query_blocks, sigma=sigma)),
    }
    kernel_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    query_amons = [np.sort(rng.choice(len(pool), amons_per_query, replace=False)) for _ in queries]
    out = {"n_amons": len(pool), "n_queries": len(queries), "kernel_s": kernel_s}
    for label, scheduler in (("sync", "sync"), ("threads", "threads")):
        started = time.perf_counter()
        dataset = per_query_protocol(**inputs, query_amons=query_amons, scheduler=scheduler)
        out[f"per_query_{label}_s"] = time.perf_counter() - started
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(lambda: __import__("amondask.models"))  # imports are not the protocol
        started = time.perf_counter()
        parallel = per_query_protocol(**inputs, query_amons=query_amons, scheduler=client)
        out["per_query_2processes_s"] = time.perf_counter() - started
    out["per_query_processes_equal_sync"] = bool(
        np.allclose(parallel.energy.values, dataset.energy.values, rtol=1e-12)
    )
    started = time.perf_counter()
    global_dataset = global_protocol(**inputs)
    out["global_s"] = time.perf_counter() - started
    truth = energies[test]
    out["per_query_mae"] = float(
        np.nanmean(np.abs(dataset.energy.values - truth)) * KCAL_PER_MOL_PER_HARTREE
    )
    out["global_mae"] = float(
        np.nanmean(np.abs(global_dataset.energy.values - truth)) * KCAL_PER_MOL_PER_HARTREE
    )
    out["per_query_not_predicted"] = int(np.isnan(dataset.energy.values).sum())
    print(
        f"protocols: {len(queries)} queries x {amons_per_query} amons (of {len(pool)}): per-query "
        f"sync {out['per_query_sync_s']:.2f}s, threads {out['per_query_threads_s']:.2f}s, "
        f"2 processes {out['per_query_2processes_s']:.2f}s; global {out['global_s']:.2f}s | MAE "
        f"per-query {out['per_query_mae']:.2f}, global {out['global_mae']:.2f} kcal/mol "
        f"(kernels {kernel_s:.1f}s)",
        flush=True,
    )
    return out


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a slow run is
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--max-heavy", type=int, default=7)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--train-sizes", default="100,200,400,800,1600,2400")
    parser.add_argument("--cv-size", type=int, default=800)
    parser.add_argument("--amons-per-query", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.records, args.n_test, args.train_sizes, args.cv_size = 900, 100, "100,200", 150
    sizes = [int(s) for s in args.train_sizes.split(",")]

    molecules, energies = load_qm9(args.records, args.max_heavy)
    order = np.random.default_rng(args.seed).permutation(len(molecules))
    test, train_order = order[: args.n_test], order[args.n_test :]
    sizes = [s for s in sizes if s <= len(train_order)]
    print(
        f"{len(molecules)} QM9 molecules (<= {args.max_heavy} heavy atoms); test {len(test)}",
        flush=True,
    )
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "data": {
            "records": args.records,
            "max_heavy": args.max_heavy,
            "n_molecules": len(molecules),
            "n_test": len(test),
            "seed": args.seed,
            "target": "QM9 U0 (hartree)",
        },
        "learning_curve": learning_curve(molecules, energies, train_order, test, sizes),
        "cross_validation": cross_validation(
            molecules, energies, train_order[: args.cv_size], test
        ),
        "protocols": protocols(
            molecules,
            energies,
            train_order[: max(sizes)],
            test,
            min(args.amons_per_query, max(sizes)),
            args.seed,
        ),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
