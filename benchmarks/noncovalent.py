"""Non-covalent queries (issue 13, item 2): water clusters and DNA base pairs from their amons.

The queries of ``examples/noncovalent/`` go through the real system (``amondask.run`` on a
LocalCluster, then ``amondask.evaluate`` for the global and the per-query protocol) with the
settings of ``examples/noncovalent/noncovalent.yaml``: several molecules per record, amons at
the query's geometry, GFN2-xTB single points for amons and queries alike. Four runs, each in a
workspace of its own:

- ``water_clusters``: (H2O)n, n = 11..21, from their *cluster* amons (per water, it and its
  s - 1 nearest waters for s = 2, 4, 5, 8, 9, 10: the authors' training sizes), as the authors
  trained on (H2O)n, n = 1, 2, 4, 5, 8, 9, 10 to predict n = 11..21;
- ``water_clusters_combinations``: the same queries from the authors' combinations of up to 3
  covalent amons in contact only (water dimers and trimers), for comparison;
- ``base_pairs``: Watson-Crick AT and GC from covalent amons (N_I <= 7) plus combinations of
  up to 3 covalent amons of the two bases in contact (3 A);
- ``base_pairs_covalent_only``: the same without non-covalent amons, to show what they add;
- ``base_pairs_whole_bases``: N_I <= 11 (the whole bases are amons) and combinations of 2 up
  to 18 heavy atoms;
- ``polyglycine_coil``: (Gly)8 folded by GFN2-xTB, one molecule: combinations of two parts of
  the chain at least 4 bonds apart in contact, up to 10 heavy atoms (intramolecular);
- ``polyglycine_coil_covalent_only``: the same from covalent amons only.

    python3 benchmarks/noncovalent.py --workdir /tmp/noncovalent

Writes ``benchmarks/results/noncovalent.json`` and ``.md``; the workspaces (``--workdir``)
make a re-run resume. Errors are predicted minus reference (kcal/mol).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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
EXAMPLES = ROOT / "examples" / "noncovalent"
WATER_TEST = [f"water_{n:02d}" for n in range(11, 22)]
CLUSTER_SIZES = [2, 4, 5, 8, 9, 10]

# name: (file, query ids (None: all), N_I, settings over noncovalent.yaml's, authors' error)
SYSTEMS: dict[str, tuple[str, list[str] | None, int, dict, str]] = {
    "water_clusters": (
        "water_clusters.xyz",
        WATER_TEST,
        7,
        {"max-components": 1, "cluster-sizes": CLUSTER_SIZES},
        "MAE 1.15 (B3LYP/6-31G(d))",
    ),
    "water_clusters_combinations": (
        "water_clusters.xyz",
        WATER_TEST,
        7,
        {"max-components": 3, "cluster-sizes": []},
        "",
    ),
    "base_pairs": (
        "base_pairs.xyz",
        None,
        7,
        {"max-components": 3, "cluster-sizes": []},
        "AT 1.41, GC 0.81 (B3LYP-D3)",
    ),
    "base_pairs_covalent_only": (
        "base_pairs.xyz",
        None,
        7,
        {"max-components": 1, "cluster-sizes": []},
        "",
    ),
    "polyglycine_coil": (
        "polyglycine_coil.xyz",
        None,
        7,
        {"max-components": 2, "max-heavy-atoms": 10, "intramolecular-min-bonds": 4},
        "",
    ),
    "polyglycine_coil_covalent_only": (
        "polyglycine_coil.xyz",
        None,
        7,
        {"max-components": 1},
        "",
    ),
    "base_pairs_whole_bases": (
        "base_pairs.xyz",
        None,
        11,
        {"max-components": 2, "cluster-sizes": [], "max-heavy-atoms": 18},
        "",
    ),
}


def settings(noncovalent: dict) -> dict[str, Any]:
    """The dask config of one run: examples/noncovalent/noncovalent.yaml, then ``noncovalent``
    over ``amondask.amons.noncovalent``."""
    base = yaml.safe_load((EXAMPLES / "noncovalent.yaml").read_text())["amondask"]
    flat = {
        "amondask.read.allow-fragments": base["read"]["allow-fragments"],
        "amondask.amons.relax": base["amons"]["relax"],
        "amondask.label.xtb.relax": base["label"]["xtb"]["relax"],
    }
    merged = {**base["amons"]["noncovalent"], **noncovalent}
    flat.update({f"amondask.amons.noncovalent.{k}": v for k, v in merged.items()})
    return flat


def run_system(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from amondask.chem import read_molecules
    from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE
    from amondask.store.workspace import Workspace

    file, ids, max_heavy_atoms, noncovalent, authors = SYSTEMS[name]
    config = settings(noncovalent)
    started = time.perf_counter()

    def load_queries() -> list:
        molecules = read_molecules(EXAMPLES / file, on_error="raise").molecules
        return [m for m in molecules if ids is None or m.id in ids]

    path = workdir / f"{name}.zarr"
    labeler, evaluations, stage_seconds = run_with_settings(
        config,
        load_queries,
        path,
        max_heavy_atoms=max_heavy_atoms,
        workers=args.workers,
        quiet=args.quiet,
    )
    workspace = Workspace(str(path), mode="r")
    store = workspace.amons
    summary = store.summary()
    keys = store.amons.read("key")
    conformer_amons = store.conformers.read("amon")
    noncovalent = np.array(["." in str(key) for key in keys], dtype=bool)
    queries = query_records(workspace, evaluations)
    for record, molecule in zip(queries, workspace.queries.molecules(), strict=True):
        record["kind"] = name
        record["molecules"] = int(molecule.key.count(".") + 1)
    return {
        "settings": config,
        "max_heavy_atoms": max_heavy_atoms,
        "authors": authors,
        "level_of_theory": labeler.level_of_theory,
        "workspace": str(path),
        "store": {
            "amons": summary["amons"],
            "conformers": summary["conformers"],
            "amons_by_n_heavy": summary["amons_by_n_heavy"],
            "noncovalent_amons": int(noncovalent.sum()),
            "noncovalent_conformers": int(noncovalent[conformer_amons].sum()),
        },
        "queries": queries,
        "kcal_per_mol_per_hartree": KCAL_PER_MOL_PER_HARTREE,
        **evaluation_record(evaluations, stage_seconds, started),
    }


def markdown(result: dict[str, Any]) -> str:
    cell = number_text
    lines = [
        f"# Non-covalent queries ({result['level_of_theory']}, single points at the queries' "
        "geometries)",
        "",
        "Errors are predicted minus reference (kcal/mol). Global: one model on every amon of "
        "the run's queries; per-query (the paper's): each query's own amons only.",
        "",
        "| run | N_I | non-covalent amons | queries | amon graphs (non-covalent) | "
        "conformers (non-covalent) | MAE global | MAE per-query | authors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, system in result["systems"].items():
        store = system["store"]
        lines.append(
            f"| {name} | {system['max_heavy_atoms']} | {_described(system['settings'])} | "
            f"{len(system['queries'])} | {store['amons']} "
            f"({store['noncovalent_amons']}) | {store['conformers']} "
            f"({store['noncovalent_conformers']}) | {cell(system['mae_kcal_mol']['global'])} | "
            f"{cell(system['mae_kcal_mol']['per-query'])} | {system['authors'] or '-'} |"
        )
    lines += [
        "",
        "| run | query | molecules | atoms | amon graphs | conformers | error global | "
        "error per-query | uncertainty |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, system in result["systems"].items():
        for q in system["queries"]:
            lines.append(
                f"| {name} | {q['id']} | {q['molecules']} | {q['n_atoms']} | {q['amon_graphs']} | "
                f"{q['amon_conformers']} | {cell(q['global']['error_kcal_mol'])} | "
                f"{cell(q['per-query']['error_kcal_mol'])} | "
                f"{cell(q['global']['uncertainty_kcal_mol'])} |"
            )
    seconds = ", ".join(f"{k} {v['wall_seconds']:.0f} s" for k, v in result["systems"].items())
    lines += ["", f"Wall time: {seconds}. Command: `{result['command']}`."]
    return "\n".join(lines) + "\n"


def _described(config: dict[str, Any]) -> str:
    """The non-covalent settings of a run in a few words."""
    prefix = "amondask.amons.noncovalent."
    components = config[prefix + "max-components"]
    sizes = config.get(prefix + "cluster-sizes") or []
    parts = []
    if components > 1:
        limit = config.get(prefix + "max-heavy-atoms")
        apart = config.get(prefix + "intramolecular-min-bonds")
        parts.append(
            f"combinations of <= {components} within {config[prefix + 'contact-angstrom']} A"
            + (f", <= {limit} heavy atoms" if limit else "")
            + (f", parts of one molecule >= {apart} bonds apart" if apart else "")
        )
    if sizes:
        parts.append("clusters of " + ", ".join(str(s) for s in sizes) + " molecules")
    return "; ".join(parts) or "none (covalent only)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="where the workspaces go (resumes)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--out", type=Path, default=RESULTS / "noncovalent.json")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    result = {
        "benchmark": "noncovalent",
        "command": " ".join(["python3", *sys.argv]),
        "systems": {name: run_system(name, workdir, args) for name in args.systems},
        "machine": machine_record(args.workers, load_start),
    }
    result["level_of_theory"] = next(iter(result["systems"].values()))["level_of_theory"]
    write_result(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
