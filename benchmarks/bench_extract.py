"""Benchmark of distributed amon extraction (issue 5): QM9 into one workspace.

Reads QM9 (from the `qm9pack` package) as an extended-XYZ file with QM9's geometries, then runs
`amondask.extract` (ingest + amons + merge) on a LocalCluster with 1 and with 2 worker processes,
each into a fresh workspace. Reports wall time per stage, the 1/2-worker ratio, distinct amons by
N_I, the store's size on disk, and the peak memory of the client and the workers. Checks that both
runs give the same store. Prints a table and writes JSON.

    python benchmarks/bench_extract.py --limit 5000 --workers 1 2 \
        --out benchmarks/results/bench_extract_5000.json
    python benchmarks/bench_extract.py --workers 2 --out benchmarks/results/bench_extract_qm9.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def write_qm9_extxyz(path: Path, limit: int | None) -> int:
    """QM9 molecules (in QM9 index order) as extended XYZ; returns how many were written."""
    import pandas as pd
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    frames = [
        pd.read_csv(directory / f"qm9_part{k}.csv", usecols=["Index", "Elements", "XYZ_Ang"])
        for k in (1, 2, 3)
    ]
    table = pd.concat(frames, ignore_index=True).sort_values("Index", ignore_index=True)
    if limit:  # a random sample, in QM9 order (the first molecules of QM9 are the smallest)
        table = table.sample(n=limit, random_state=0).sort_values("Index", ignore_index=True)
    with open(path, "w") as handle:
        for index, elements, xyz in zip(table.Index, table.Elements, table.XYZ_Ang, strict=True):
            symbols = ast.literal_eval(elements)
            # A few QM9 XYZ strings hold a bare "0." (not a Python literal before "]").
            coords = ast.literal_eval(xyz.replace("0.]", "0.0]").replace("0.,", "0.0,"))
            handle.write(f"{len(symbols)}\nid=qm9_{index:06d}\n")
            for symbol, (x, y, z) in zip(symbols, coords, strict=True):
                handle.write(f"{symbol} {x:.8f} {y:.8f} {z:.8f}\n")
    return len(table)


def directory_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


class MemorySampler:
    """Peak RSS (MiB) of this process and of given worker processes, sampled every 0.2 s."""

    def __init__(self, worker_pids: list[int]):
        import psutil

        self.client = psutil.Process()
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.client_peak = self.worker_peak = 0.0
        self.baseline = self.client.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.client_peak = max(self.client_peak, self.client.memory_info().rss / 2**20)
            for worker in self.workers:
                try:
                    self.worker_peak = max(self.worker_peak, worker.memory_info().rss / 2**20)
                except Exception:  # a restarted worker has a new pid
                    pass
            time.sleep(0.2)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_once(source: Path, workspace: Path, n_workers: int, max_heavy_atoms: int) -> dict:
    from distributed import Client, LocalCluster

    from amondask.cluster import PINNED_THREADS_ENV
    from amondask.pipeline.extract import extract_workspace
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    shutil.rmtree(workspace, ignore_errors=True)
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            env=PINNED_THREADS_ENV,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        ws = Workspace(workspace)
        pids = list(client.run(os.getpid).values())
        with MemorySampler(pids) as memory:
            start = time.perf_counter()
            reading = read_into_workspace(
                source, ws, client=client, progress=False, batch_size=2000
            )
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            report = extract_workspace(
                ws, max_heavy_atoms=max_heavy_atoms, client=client, progress=False
            )
            extract_s = time.perf_counter() - start
    return {
        "workers": n_workers,
        "records": reading.n_records,
        "read_errors": reading.n_errors,
        "read_error_reasons": dict(reading.most_common_reasons(5)),
        "queries_extracted": report.queries_extracted,
        "extract_errors": report.errors,
        "read_s": round(read_s, 1),
        "extract_s": round(extract_s, 1),
        "total_s": round(read_s + extract_s, 1),
        "extract_step_s": {k: round(v, 1) for k, v in report.seconds.items()},
        "store": report.store,
        "store_size_mb": round(directory_size_mb(workspace), 1),
        "worker_peak_rss_mb": round(memory.worker_peak, 1),
        "client_peak_rss_mb": round(memory.client_peak, 1),
        "client_rss_before_mb": round(memory.baseline, 1),
    }


def same_store(a: Path, b: Path) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from extract_helpers import store_content

    from amondask.store import Workspace

    first, second = store_content(Workspace(a, mode="r")), store_content(Workspace(b, mode="r"))
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="N random QM9 molecules (default: all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-heavy-atoms", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="where to put the workspaces")
    parser.add_argument("--out", type=Path, help="JSON output")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="amondask-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "qm9.extxyz"
    n = write_qm9_extxyz(source, args.limit)
    runs = []
    for n_workers in args.workers:
        runs.append(
            run_once(source, workdir / f"ws{n_workers}.zarr", n_workers, args.max_heavy_atoms)
        )
        print(json.dumps(runs[-1], indent=1), flush=True)
    result = {
        "benchmark": "extract",
        "molecules": n,
        "max_heavy_atoms": args.max_heavy_atoms,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_end": list(os.getloadavg()),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": runs,
    }
    if len(runs) >= 2:
        result["speedup_2_over_1"] = round(runs[0]["total_s"] / runs[1]["total_s"], 2)
        result["same_store"] = same_store(
            workdir / f"ws{args.workers[0]}.zarr", workdir / f"ws{args.workers[1]}.zarr"
        )
    print()
    print(f"QM9 molecules: {n}, N_I <= {args.max_heavy_atoms}")
    print(
        f"{'workers':>8} {'read s':>8} {'extract s':>10} {'total s':>8} {'amons':>7} "
        f"{'conformers':>10} {'store MB':>9} {'client MB':>9} {'worker MB':>9}"
    )
    for run in runs:
        print(
            f"{run['workers']:>8} {run['read_s']:>8} {run['extract_s']:>10} {run['total_s']:>8} "
            f"{run['store']['amons']:>7} {run['store']['conformers']:>10} "
            f"{run['store_size_mb']:>9} {run['client_peak_rss_mb']:>9} "
            f"{run['worker_peak_rss_mb']:>9}"
        )
    if "speedup_2_over_1" in result:
        print(
            f"speed-up 2 workers / 1 worker: {result['speedup_2_over_1']}x; "
            f"same store: {result['same_store']}"
        )
    print("amons by N_I:", runs[-1]["store"]["amons_by_n_heavy"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
