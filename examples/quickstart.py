"""Quickstart: amons of one molecule, then the whole job on the bundled queries, then the check.

    python examples/quickstart.py [WORKSPACE] [--max-heavy-atoms 3]

Reads examples/queries.smi (30 molecules), extracts their amons of at most N_I heavy atoms,
labels the amons with GFN2-xTB, trains kernel ridge regression and predicts every query on the
embedded LocalCluster (about a minute at N_I = 3 on 2 cores), then labels the queries too and
prints the errors. Re-running it resumes from WORKSPACE and recomputes nothing.
"""

import argparse
from pathlib import Path

import amondask
from amondask.pipeline.evaluate import format_evaluation

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", nargs="?", default="quickstart.zarr")
    parser.add_argument("--max-heavy-atoms", type=int, default=3)
    args = parser.parse_args()

    # One molecule, no cluster: the amons of aspirin with their counts (the molecule's "DNA").
    amons = amondask.extract_amons("CC(=O)Oc1ccccc1C(=O)O", max_heavy_atoms=args.max_heavy_atoms)
    print("aspirin:", ", ".join(f"{a.key} x{a.count}" for a in amons))

    # The whole job: queries in, predicted energies (hartree) out, as an xarray Dataset.
    predictions = amondask.run(
        HERE / "queries.smi", args.workspace, max_heavy_atoms=args.max_heavy_atoms, progress=False
    )
    print(f"predicted {predictions.sizes['query_id']} queries")
    print(predictions[["energy", "uncertainty", "n_amons"]].to_dataframe().head())

    # Validation: label the queries themselves and compare (MAE etc. in kcal/mol).
    evaluation = amondask.evaluate(args.workspace, "xtb", progress=False)
    print(format_evaluation(evaluation))


if __name__ == "__main__":  # the LocalCluster starts worker processes: keep this guard
    main()
