"""Benchmark of aSLATM (issue 7): ms per molecule against qmllib on the same molecules.

1000 QM9 molecules (random sample, seed 0), mbtypes from those molecules, one core (qmllib's
OpenMP pinned to one thread). Times are CPU seconds of this process (time.process_time), so
that other jobs on a shared machine do not skew the ratio; wall times are in the JSON too.
Both local (atomic) vectors, qmllib's default grid (0.03) and the authors' aSLATM grid (0.04).
Also checks that the timed outputs agree, and reports the memory of the compact per-element
form against full-width atomic vectors.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_represent.py \
        --out benchmarks/results/bench_represent.json
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from qm9_sample import qm9_molecules  # noqa: E402

from amondask.represent import (  # noqa: E402
    compact_memory_report,
    element_blocks,
    slatm,
    slatm_mbtypes,
)


def run(n_molecules: int, n_qmllib: int) -> dict:
    from qmllib.representations import generate_slatm

    molecules = qm9_molecules(n_molecules, seed=0)
    mbtypes = slatm_mbtypes([n for n, _ in molecules])
    slatm(*molecules[0], mbtypes)  # compile
    results = {"n_molecules": n_molecules, "n_atoms": sum(len(n) for n, _ in molecules)}
    for dgrid in (0.03, 0.04):
        grid = (dgrid, dgrid)
        start, start_cpu = time.perf_counter(), time.process_time()
        ours = [slatm(n, p, mbtypes, dgrid=grid) for n, p in molecules]
        ours_wall, ours_s = time.perf_counter() - start, time.process_time() - start_cpu
        start, start_cpu = time.perf_counter(), time.process_time()
        reference = [
            np.asarray(generate_slatm(n, p, mbtypes, local=True, dgrids=list(grid)))
            for n, p in molecules[:n_qmllib]
        ]
        qmllib_wall, qmllib_s = time.perf_counter() - start, time.process_time() - start_cpu
        worst = max(
            float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
            for a, b in zip(ours, reference, strict=False)
        )
        ours_ms = 1e3 * ours_s / n_molecules
        qmllib_ms = 1e3 * qmllib_s / n_qmllib
        results[f"dgrid_{dgrid}"] = {
            "n_features": int(ours[0].shape[1]),
            "ours_ms_per_molecule": ours_ms,
            "qmllib_ms_per_molecule": qmllib_ms,
            "qmllib_molecules": n_qmllib,
            "speedup": qmllib_ms / ours_ms,
            "ours_wall_ms_per_molecule": 1e3 * ours_wall / n_molecules,
            "qmllib_wall_ms_per_molecule": 1e3 * qmllib_wall / n_qmllib,
            "max_relative_difference_above_1e-300": worst,
        }
    blocks = element_blocks(molecules, mbtypes, dgrid=(0.04, 0.04))
    results["compact_memory_dgrid_0.04"] = compact_memory_report(
        blocks, mbtypes, dgrid=(0.04, 0.04)
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-molecules", type=int, default=1000)
    parser.add_argument("--n-qmllib", type=int, default=1000, help="qmllib on the first N only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = run(args.n_molecules, min(args.n_qmllib, args.n_molecules))
    header = ["CPU time", "features", "ours ms/mol", "qmllib ms/mol", "speed-up"]
    print(f"{header[0]:<12} {header[1]:>9} {header[2]:>12} {header[3]:>14} {header[4]:>9}")
    for dgrid in (0.03, 0.04):
        r = results[f"dgrid_{dgrid}"]
        print(
            f"dgrid {dgrid:<6} {r['n_features']:>9} {r['ours_ms_per_molecule']:>12.3f} "
            f"{r['qmllib_ms_per_molecule']:>14.3f} {r['speedup']:>8.1f}x   "
            f"(max rel diff {r['max_relative_difference_above_1e-300']:.1e})"
        )
    memory = results["compact_memory_dgrid_0.04"]
    print(
        f"compact per-element storage (dgrid 0.04): {memory['compact_bytes'] / 2**20:.1f} MiB "
        f"vs {memory['full_bytes'] / 2**20:.1f} MiB full-width "
        f"({100 * memory['saved_fraction']:.0f}% saved); widths {memory['element_widths']} "
        f"of {memory['n_features']}"
    )
    results["environment"] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
