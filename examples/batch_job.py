"""A batch job: predict the energies of a query set from its amons on a Dask cluster.

    python examples/batch_job.py QUERIES WORKSPACE [--max-heavy-atoms 5] [--scheduler ADDR]
                                 [--evaluate]

Without --scheduler it starts a LocalCluster on this machine; on SLURM, start a scheduler and
workers first (see deploy/) and pass the scheduler address or file. Re-running the same command
after an interruption resumes from the workspace.
"""

from __future__ import annotations

import argparse

import amondask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("queries")
    parser.add_argument("workspace")
    parser.add_argument("--max-heavy-atoms", type=int, default=5)
    parser.add_argument("--scheduler", help="address or scheduler file of a running cluster")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument(
        "--evaluate", action="store_true", help="also label the queries and print the errors"
    )
    args = parser.parse_args()

    predictions = amondask.run(
        args.queries,
        args.workspace,
        max_heavy_atoms=args.max_heavy_atoms,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=False,
    )
    print(predictions.attrs["summary"])
    table = predictions[["energy", "uncertainty", "covered", "n_amons"]].to_dataframe()
    table["uncertainty_kcal_per_mol"] = table["uncertainty"] * 627.509
    print(table.to_string(float_format=lambda v: f"{v:.6f}"))
    if args.evaluate:
        evaluation = amondask.evaluate(
            args.workspace, scheduler=args.scheduler, n_workers=args.workers, progress=False
        )
        print(
            f"MAE {evaluation.attrs['mae_kcal_mol']:.2f} kcal/mol over "
            f"{evaluation.attrs['n_evaluated']} queries (baseline alone "
            f"{evaluation.attrs['baseline_mae_kcal_mol']:.2f})"
        )


if __name__ == "__main__":  # the LocalCluster starts worker processes: keep this guard
    main()
