"""Benchmark of labeling (issue 6): xTB and PySCF cost by amon size, and the cost model fit.

Stand-ins for amons: QM9 molecules grouped by heavy-atom count N_I = 1..7 (QM9 holds 3, 5, 9,
31, 127, 608 and 3138 of them; up to --per-size are sampled per size). Real amons of that size
are the same kind of molecule (small, H-capped, neutral, closed shell); their geometries here
come from ETKDG + MMFF94, as for graph-only amons.

Measured, one thread per task (OMP/BLAS pinned to 1):
  * xTB (GFN2-xTB, tblite, ASE BFGS to 0.01 eV/A): seconds per label, steps, status; labels/s
    per core serially and with a 2-process Dask LocalCluster mapping label_many over partitions;
  * the energy change from tightening fmax 0.01 -> 0.001 eV/A (is the default tight enough?);
  * PySCF B3LYP/6-31G(2df,p) single points at QM9's own geometries, compared with QM9's
    U0 - ZPVE (same functional and basis in Gaussian 09);
  * the same on real amons (N_I = 7, paper rules) of a few QM9 queries with 9 heavy atoms,
    with the topology-changed count and how many of the amons QM9 itself holds;
  * fits seconds = a * size**p (size: atoms for xTB, basis functions for PySCF) and steps per
    atom, the coefficients of amondask.label.cost-model.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_label.py \
        --per-size 12 --pyscf-per-size 2 --amon-queries 10 \
        --out benchmarks/results/bench_label.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from amondask.chem import Molecule
from amondask.chem.geometry import embed_molecule
from amondask.label import label_many
from amondask.label.cost import n_basis_functions
from amondask.label.pyscf import PySCFLabeler
from amondask.label.table import QM9Labeler
from amondask.label.xtb import XTBLabeler

HARTREE_TO_KCAL = 627.5094740631


def sample_qm9(qm9: QM9Labeler, per_size: int, seed: int) -> dict[int, list[Molecule]]:
    """Up to ``per_size`` QM9 molecules (graph only) per heavy-atom count 1..7."""
    rng = np.random.default_rng(seed)
    out: dict[int, list[Molecule]] = {}
    for n_heavy in range(1, 8):
        rows = np.flatnonzero(qm9.qm9["n_heavy"].to_numpy() == n_heavy)
        rows = rng.permutation(rows)[:per_size]
        out[n_heavy] = [
            Molecule.from_smiles(qm9.qm9["SMILES"].iloc[r], f"qm9-{qm9.qm9['Index'].iloc[r]}")
            for r in sorted(rows)
        ]
    return out


def timed_label(labeler, molecule: Molecule):
    """(label, CPU seconds): CPU time, not wall time, is robust to other jobs on the machine."""
    start = time.process_time()
    try:
        label = labeler.label(molecule)
    except Exception as exc:  # a failed label is a result too
        label = label_many(labeler, [molecule])[0][0]
        label = type(label).failed(str(exc), level_of_theory=labeler.level_of_theory)
    return label, time.process_time() - start


def fit_power_law(sizes: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of log(seconds) = log(a) + p log(size); returns (a, p)."""
    exponent, log_prefactor = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(np.exp(log_prefactor)), float(exponent)


def real_amons(qm9_all, n_queries: int, seed: int) -> tuple[list[str], list[Molecule]]:
    """Unique amons (N_I = 7, paper rules, first conformer) of ``n_queries`` QM9 9-atom queries."""
    from amondask.amons import extract_amons

    queries = qm9_all[qm9_all["n_heavy"] == 9].sample(n_queries, random_state=seed)["SMILES"]
    amons: dict[str, Molecule] = {}
    for smiles in queries:
        for amon in extract_amons(smiles, 7):
            if amon.key not in amons and amon.conformers:
                amons[amon.key] = amon.conformers[0].molecule.with_id(amon.key)
    return list(queries), list(amons.values())


def amon_section(qm9: QM9Labeler, n_queries: int, seed: int) -> dict:
    """xTB cost, status and QM9 coverage on real amons (MMFF-relaxed capped geometries)."""
    from amondask.label.table import read_qm9

    queries, amons = real_amons(read_qm9(), n_queries, seed)
    xtb = XTBLabeler(cache_size=0)
    timed = [timed_label(xtb, amon) for amon in amons]
    labels = [label for label, _ in timed]
    cpu_s = [seconds for _, seconds in timed]
    coverage = qm9.coverage(amons)
    missing = set(coverage.missing)
    rows = []
    for n_heavy in range(1, 8):
        members = [k for k, m in enumerate(amons) if m.n_heavy == n_heavy]
        if not members:
            continue
        times = np.array([cpu_s[k] for k in members])
        rows.append(
            {
                "n_heavy": n_heavy,
                "n_amons": len(members),
                "mean_atoms": float(np.mean([amons[k].n_atoms for k in members])),
                "mean_xtb_cpu_s": float(times.mean()),
                "max_xtb_cpu_s": float(times.max()),
                "mean_xtb_wall_s": float(np.mean([labels[k].wall_time_s for k in members])),
                "labels_per_s_per_core": float(1.0 / times.mean()),
                "mean_steps": float(np.mean([labels[k].n_steps for k in members])),
                "n_topology_changed": sum(labels[k].status == "topology-changed" for k in members),
                "n_not_converged": sum(labels[k].status == "not-converged" for k in members),
                "n_failed": sum(labels[k].status == "failed" for k in members),
                "qm9_coverage": float(np.mean([amons[k].key not in missing for k in members])),
            }
        )
    changed = [
        {"key": amons[k].key, "message": label.message}
        for k, label in enumerate(labels)
        if label.status == "topology-changed"
    ]
    return {
        "queries": queries,
        "n_amons": len(amons),
        "per_size": rows,
        "n_failed": sum(label.status == "failed" for label in labels),
        "topology_changed": changed,
        "qm9_coverage": coverage.fraction_found,
        "fit_rows": [
            {"n_atoms": m.n_atoms, "xtb_s": seconds, "steps": label.n_steps}
            for m, label, seconds in zip(amons, labels, cpu_s, strict=True)
            if label.status != "failed"
        ],
    }


def label_partition(molecules: list[Molecule]) -> list[dict]:
    """What a Dask task runs: label_many over a partition, rows back."""
    labels, _ = label_many(XTBLabeler(), molecules)
    return [label.to_dict() | {"positions": None} for label in labels]


def dask_throughput(molecules: list[Molecule], n_workers: int) -> dict:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: XTBLabeler().label(Molecule.from_smiles("O", "warm-up")))
        partitions = [molecules[k :: 4 * n_workers] for k in range(4 * n_workers)]
        start = time.perf_counter()
        rows = sum(client.gather(client.map(label_partition, partitions, pure=False)), [])
        wall = time.perf_counter() - start
    return {
        "n_workers": n_workers,
        "n_labels": len(rows),
        "wall_s": wall,
        "labels_per_s": len(rows) / wall,
        "labels_per_s_per_core": len(rows) / wall / n_workers,
        "n_ok": sum(row["status"] == "ok" for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-size", type=int, default=12)
    parser.add_argument("--pyscf-per-size", type=int, default=2)
    parser.add_argument("--pyscf-max-heavy", type=int, default=6)
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--dask-molecules", type=int, default=48)
    parser.add_argument("--amon-queries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_label.json"))
    args = parser.parse_args()

    qm9 = QM9Labeler(max_heavy_atoms=7)
    by_size = sample_qm9(qm9, args.per_size, args.seed)
    xtb = XTBLabeler(cache_size=0)
    tight = XTBLabeler(fmax_ev_per_angstrom=0.001, cache_size=0)
    xtb.label(Molecule.from_smiles("O", "warm-up"))  # library loading is not labeling
    xtb_rows = []
    for n_heavy, molecules in by_size.items():
        for molecule in molecules:
            start = time.perf_counter()
            embedded = embed_molecule(molecule)
            embed_s = time.perf_counter() - start
            label, cpu_seconds = timed_label(xtb, embedded)
            row = {
                "id": molecule.id,
                "smiles": molecule.smiles,
                "n_heavy": n_heavy,
                "n_atoms": molecule.n_atoms,
                "embed_s": embed_s,
                "xtb_s": cpu_seconds,
                "xtb_wall_s": label.wall_time_s,
                "steps": label.n_steps,
                "status": label.status,
                "energy_hartree": label.energy_hartree,
            }
            if n_heavy >= 5 and label.status == "ok":
                tight_label, tight_cpu_s = timed_label(tight, embedded)
                row["tight_delta_kcal"] = (
                    tight_label.energy_hartree - label.energy_hartree
                ) * HARTREE_TO_KCAL
                row["tight_steps"] = tight_label.n_steps
                row["tight_s"] = tight_cpu_s
            xtb_rows.append(row)

    per_size = []
    for n_heavy in by_size:
        rows = [r for r in xtb_rows if r["n_heavy"] == n_heavy]
        times = np.array([r["xtb_s"] for r in rows])
        per_size.append(
            {
                "n_heavy": n_heavy,
                "n_molecules": len(rows),
                "mean_atoms": float(np.mean([r["n_atoms"] for r in rows])),
                "mean_embed_s": float(np.mean([r["embed_s"] for r in rows])),
                "mean_xtb_s": float(times.mean()),
                "max_xtb_s": float(times.max()),
                "labels_per_s_per_core": float(1.0 / times.mean()),
                "mean_steps": float(np.mean([r["steps"] for r in rows])),
                "n_not_ok": sum(r["status"] != "ok" for r in rows),
            }
        )
    amon_result = amon_section(qm9, args.amon_queries, args.seed) if args.amon_queries else None
    # the cost model is fitted on real amons when there are some, else on the stand-ins
    fit_rows = amon_result["fit_rows"] if amon_result else xtb_rows
    sizes = np.array([r["n_atoms"] for r in fit_rows], dtype=float)
    xtb_a, xtb_p = fit_power_law(sizes, np.array([r["xtb_s"] for r in fit_rows]))
    steps_per_atom = float(sum(r["steps"] for r in fit_rows) / sizes.sum())
    deltas = np.array([abs(r["tight_delta_kcal"]) for r in xtb_rows if "tight_delta_kcal" in r])

    dask_result = None
    if args.dask_workers:
        dask_set = sample_qm9(qm9, args.dask_molecules, args.seed + 1)[7]
        dask_result = dask_throughput(dask_set, args.dask_workers)
    serial_size7 = sum(r["xtb_s"] for r in xtb_rows if r["n_heavy"] == 7)

    pyscf = PySCFLabeler(threads=1, max_memory_mb=4000, cache_size=0)
    qm9_geometry = QM9Labeler(max_heavy_atoms=args.pyscf_max_heavy)
    pyscf_rows = []
    for n_heavy in range(1, args.pyscf_max_heavy + 1):
        for molecule in by_size[n_heavy][: args.pyscf_per_size]:
            reference = qm9_geometry.label(molecule)
            if reference.positions is None:
                continue
            label, cpu_seconds = timed_label(pyscf, molecule.with_positions(reference.positions))
            pyscf_rows.append(
                {
                    "id": molecule.id,
                    "smiles": molecule.smiles,
                    "n_heavy": n_heavy,
                    "n_atoms": molecule.n_atoms,
                    "n_basis": n_basis_functions(molecule, pyscf.basis),
                    "pyscf_s": cpu_seconds,
                    "pyscf_wall_s": label.wall_time_s,
                    "energy_hartree": label.energy_hartree,
                    "qm9_energy_hartree": reference.energy_hartree,
                    "delta_vs_qm9_kcal": (label.energy_hartree - reference.energy_hartree)
                    * HARTREE_TO_KCAL,
                }
            )
    pyscf_a, pyscf_p = fit_power_law(
        np.array([r["n_basis"] for r in pyscf_rows], float),
        np.array([r["pyscf_s"] for r in pyscf_rows]),
    )

    print(f"xTB {xtb.level_of_theory}")
    print(
        f"{'N_I':>3} {'n':>3} {'atoms':>6} {'embed s':>8} {'CPU s':>7} {'max s':>7} "
        f"{'labels/s/core':>13} {'steps':>6} {'not ok':>6}"
    )
    for s in per_size:
        print(
            f"{s['n_heavy']:>3} {s['n_molecules']:>3} {s['mean_atoms']:>6.1f} "
            f"{s['mean_embed_s']:>8.3f} {s['mean_xtb_s']:>7.3f} {s['max_xtb_s']:>7.3f} "
            f"{s['labels_per_s_per_core']:>13.1f} {s['mean_steps']:>6.1f} {s['n_not_ok']:>6}"
        )
    if amon_result:
        print(
            f"\nReal amons (N_I = 7, paper rules, MMFF-relaxed caps) of {args.amon_queries} QM9 "
            f"queries with 9 heavy atoms: {amon_result['n_amons']} unique amons, QM9 has "
            f"{100 * amon_result['qm9_coverage']:.1f}% of them"
        )
        print(
            f"{'N_I':>3} {'n':>4} {'atoms':>6} {'CPU s':>7} {'max s':>7} {'labels/s/core':>13} "
            f"{'steps':>6} {'topo':>5} {'!conv':>5} {'fail':>5} {'in QM9':>7}"
        )
        for s in amon_result["per_size"]:
            print(
                f"{s['n_heavy']:>3} {s['n_amons']:>4} {s['mean_atoms']:>6.1f} "
                f"{s['mean_xtb_cpu_s']:>7.3f} {s['max_xtb_cpu_s']:>7.3f} "
                f"{s['labels_per_s_per_core']:>13.1f} {s['mean_steps']:>6.1f} "
                f"{s['n_topology_changed']:>5} {s['n_not_converged']:>5} {s['n_failed']:>5} "
                f"{100 * s['qm9_coverage']:>6.1f}%"
            )
        for changed in amon_result["topology_changed"]:
            print(f"  topology changed: {changed['key']}: {changed['message']}")
    fitted_on = "real amons" if amon_result else "QM9 stand-ins"
    print(
        f"fit ({fitted_on}): xTB seconds = {xtb_a:.3g} * n_atoms^{xtb_p:.2f}; "
        f"steps/atom {steps_per_atom:.2f}"
    )
    if len(deltas):
        print(
            f"fmax 0.01 -> 0.001 eV/A: |dE| median {np.median(deltas):.4f}, mean "
            f"{deltas.mean():.4f}, max {deltas.max():.4f} kcal/mol over {len(deltas)} molecules "
            f"(N_I 5-7); {int((deltas > 0.1).sum())} above 0.1 (another conformer)"
        )
    if dask_result:
        print(
            f"Dask {dask_result['n_workers']} worker processes, {dask_result['n_labels']} N_I=7 "
            f"molecules: {dask_result['labels_per_s']:.1f} "
            f"labels/s ({dask_result['labels_per_s_per_core']:.1f} per core); serial "
            f"{len(by_size[7]) / serial_size7:.1f} labels/s"
        )
    print(f"\nPySCF {pyscf.level_of_theory}, at QM9 geometries")
    print(
        f"{'N_I':>3} {'smiles':<14} {'atoms':>5} {'nbf':>5} {'CPU s':>7} {'E - E_QM9 kcal/mol':>19}"
    )
    for r in pyscf_rows:
        print(
            f"{r['n_heavy']:>3} {r['smiles']:<14} {r['n_atoms']:>5} {r['n_basis']:>5} "
            f"{r['pyscf_s']:>7.2f} {r['delta_vs_qm9_kcal']:>19.4f}"
        )
    print(f"fit: PySCF seconds = {pyscf_a:.3g} * n_basis^{pyscf_p:.2f}")

    result = {
        "benchmark": "bench_label",
        "command": "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_label.py "
        f"--per-size {args.per_size} --pyscf-per-size {args.pyscf_per_size} "
        f"--pyscf-max-heavy {args.pyscf_max_heavy} --dask-workers {args.dask_workers} "
        f"--dask-molecules {args.dask_molecules} --amon-queries {args.amon_queries}",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1_5_15_at_end": os.getloadavg(),
        },
        "timing": "CPU seconds of the labeling process (one thread), robust to other jobs; "
        "wall seconds are kept next to them; the Dask section is wall time",
        "stand_ins": "QM9 molecules grouped by heavy-atom count (not extracted amons), "
        "ETKDG+MMFF94 start geometries",
        "xtb_level": xtb.level_of_theory,
        "xtb_per_size": per_size,
        "xtb_fit": {"prefactor-s": xtb_a, "exponent": xtb_p, "steps-per-atom": steps_per_atom},
        "xtb_fit_on": fitted_on,
        "amons": amon_result,
        "fmax_tightening_abs_delta_kcal": {
            "median": float(np.median(deltas)) if len(deltas) else None,
            "mean": float(deltas.mean()) if len(deltas) else None,
            "n_above_0.1": int((deltas > 0.1).sum()),
            "max": float(deltas.max()) if len(deltas) else None,
            "n": len(deltas),
        },
        "dask": dask_result,
        "pyscf_level": pyscf.level_of_theory,
        "pyscf_fit": {"prefactor-s": pyscf_a, "exponent": pyscf_p},
        "pyscf_rows": pyscf_rows,
        "xtb_rows": xtb_rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
