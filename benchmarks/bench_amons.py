"""Benchmark of amon extraction (issue 4): ms per query and amons per query.

Queries: QM9 molecules with 9 heavy atoms (qm9pack), with QM9's own coordinates (atom order and
bonds from the XYZ field, bond orders from the SMILES). Cases: N_I = 5 and 7, "paper" rules,
graph only / 3D geometry without relaxation / 3D with MMFF94 relaxation; plus a 100-heavy-atom
peptide chain (graph only). Single core. Prints a table and writes JSON; CPU times (process
time) are the robust numbers on a shared machine, wall times follow the load.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_amons.py \
        --n-queries 1000 --out benchmarks/results/bench_amons.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdDetermineBonds
from rdkit.Geometry import Point3D

from amondask import config
from amondask.amons import extract_amons
from amondask.chem import Molecule

RDLogger.DisableLog("rdApp.*")
QM9_COLUMNS = ["Index", "SMILES", "XYZ_Ang", "Elements"]


def qm9_queries(n_queries: int, n_heavy: int = 9, seed: int = 0) -> list[Molecule]:
    """``n_queries`` QM9 molecules with ``n_heavy`` heavy atoms, with QM9 coordinates."""
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    frames = [
        pd.read_csv(
            directory / f"qm9_part{k}.csv", usecols=["Index", "SMILES", "XYZ_Ang", "Elements"]
        )
        for k in (1, 2, 3)
    ]
    qm9 = pd.concat(frames, ignore_index=True)
    order = np.random.default_rng(seed).permutation(len(qm9))
    out = []
    for row in order:
        smiles = qm9["SMILES"].iloc[row]
        template = Chem.MolFromSmiles(smiles)
        if template is None or template.GetNumAtoms() != n_heavy:
            continue
        molecule = _qm9_molecule(qm9.iloc[row], template)
        if molecule is not None:
            out.append(molecule)
        if len(out) == n_queries:
            break
    return out


def _qm9_molecule(row: pd.Series, template: Chem.Mol) -> Molecule | None:
    symbols = [s.strip(" '\"") for s in row["Elements"].strip("[]").split(",")]
    try:
        xyz = np.array(json.loads(row["XYZ_Ang"]), dtype=float)
    except (ValueError, TypeError):
        return None  # a few QM9 rows hold a bare "0." for a coordinate
    rw = Chem.RWMol()
    conf = Chem.Conformer(len(symbols))
    for index, (symbol, position) in enumerate(zip(symbols, xyz, strict=True)):
        rw.AddAtom(Chem.Atom(symbol))
        conf.SetAtomPosition(index, Point3D(*position))
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    try:
        rdDetermineBonds.DetermineConnectivity(mol)
        assigned = AllChem.AssignBondOrdersFromTemplate(Chem.AddHs(template), mol)
        Chem.SanitizeMol(assigned)
        if assigned.GetNumAtoms() != len(symbols):
            return None
        return Molecule.from_rdkit(assigned, f"qm9_{int(row['Index'])}")
    except Exception:
        return None


def peptide(n_residues: int) -> str:
    """A linear peptide of alternating Ala, Ser, Phe, Gly residues (SMILES)."""
    side_chains = ["C", "CO", "Cc1ccccc1", ""]
    parts = []
    for k in range(n_residues):
        side = side_chains[k % len(side_chains)]
        parts.append(f"NC({side})C(=O)" if side else "NCC(=O)")
    return "".join(parts) + "O"


def _time_queries(queries, max_heavy_atoms, geometry, relax):
    times, cpu_times, n_amons, n_occurrences, n_conformers = [], [], [], [], []
    for query in queries:
        start, cpu_start = time.perf_counter(), time.process_time()
        amons = extract_amons(query, max_heavy_atoms, geometry=geometry, relax=relax)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        n_amons.append(len(amons))
        n_occurrences.append(sum(a.count for a in amons))
        n_conformers.append(sum(len(a.conformers) for a in amons))
    times_ms = np.array(times) * 1e3
    cpu_ms = np.array(cpu_times) * 1e3
    return {
        "n_queries": len(queries),
        "median_ms": float(np.median(times_ms)),
        "p95_ms": float(np.percentile(times_ms, 95)),
        "mean_ms": float(times_ms.mean()),
        "cpu_median_ms": float(np.median(cpu_ms)),
        "cpu_p95_ms": float(np.percentile(cpu_ms, 95)),
        # process-wide caches (amon keys, MMFF94 parameters per amon graph) fill as queries
        # are seen: the first queries show the cold-cache cost
        "cpu_median_first_100_ms": float(np.median(cpu_ms[:100])),
        "load_average_1min_end": os.getloadavg()[0],
        "amons_per_query": float(np.mean(n_amons)),
        "occurrences_per_query": float(np.mean(n_occurrences)),
        "conformers_per_query": float(np.mean(n_conformers)) if geometry else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument(
        "--n-geometry-queries",
        type=int,
        default=None,
        help="queries for the relaxed-geometry cases (default: --n-queries)",
    )
    parser.add_argument("--out", default="benchmarks/results/bench_amons.json")
    args = parser.parse_args()
    n_geometry = args.n_geometry_queries or args.n_queries
    load_start = os.getloadavg()[0]
    queries = qm9_queries(args.n_queries)
    # warm-up: imports, RDKit caches
    extract_amons(queries[0], 7, geometry=True)
    results = []
    for max_heavy_atoms in (5, 7):
        for geometry, relax, label in (
            (False, False, "graph"),
            (True, False, "3D caps"),
            (True, True, "3D relaxed"),
        ):
            subset = queries if not relax else queries[:n_geometry]
            row = _time_queries(subset, max_heavy_atoms, geometry, relax)
            row.update(case=f"QM9 9 heavy, N_I={max_heavy_atoms}, {label}")
            results.append(row)
            print(_format(row), flush=True)
    smiles = peptide(16)
    big = Chem.MolFromSmiles(smiles)
    for rules in ("paper", "plain"):
        start, cpu_start = time.perf_counter(), time.process_time()
        amons = extract_amons(smiles, 7, rules=rules, geometry=False)
        elapsed = (time.perf_counter() - start) * 1e3
        cpu = (time.process_time() - cpu_start) * 1e3
        row = {
            "case": f"peptide {big.GetNumAtoms()} heavy, N_I=7, graph, {rules}",
            "n_queries": 1,
            "median_ms": elapsed,
            "p95_ms": elapsed,
            "mean_ms": elapsed,
            "cpu_median_ms": cpu,
            "cpu_p95_ms": cpu,
            "amons_per_query": len(amons),
            "occurrences": sum(a.count for a in amons),
            "conformers_per_query": None,
        }
        results.append(row)
        print(_format(row), flush=True)
    payload = {
        "benchmark": "amon extraction",
        "command": "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_amons.py "
        f"--n-queries {args.n_queries}"
        + (f" --n-geometry-queries {n_geometry}" if n_geometry != args.n_queries else ""),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # other jobs share the machine: wall times are noisy, CPU times less so
            "load_average_1min_start_end": [load_start, os.getloadavg()[0]],
        },
        "rules": "paper",
        "relaxation": "MMFF94, compiled engine (amondask.amons.mmff; RDKit typing and parameters)",
        "mmff_max_iterations": int(config.get("amons.mmff-max-iterations")),
        "conformer_criterion": "the authors': L1 distance of sorted per-atom inverse-distance "
        f"sums > {config.get('amons.conformer-threshold')} / angstrom from every kept conformer; "
        "1-2 heavy atoms: one conformer (amondask.amons.geometry.first_same_conformer)",
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


def _format(row) -> str:
    conformers = row.get("conformers_per_query")
    extra = f"  conformers/query {conformers:6.1f}" if conformers is not None else ""
    return (
        f"{row['case']:<45} n={row['n_queries']:5d}  median {row['median_ms']:8.2f} ms  "
        f"p95 {row['p95_ms']:8.2f} ms  cpu median {row['cpu_median_ms']:8.2f} ms  "
        f"cpu p95 {row['cpu_p95_ms']:8.2f} ms  "
        f"amons/query {row['amons_per_query']:6.1f}{extra}"
    )


if __name__ == "__main__":
    main()
