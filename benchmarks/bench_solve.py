"""Benchmark of amondask.solve (issue 8, item 1): solve time and peak memory vs n.

For each n, one kernel-like SPD problem is written once to a Zarr directory store (K uncompressed,
chunks 1024 x 1024; K is a Gaussian kernel on n uniform points in [0, 1]^dim, width ``--width``;
lambda = n * mean(K) / condition, n * mean(K) being the Rayleigh quotient of the constant vector,
close to lambda_max(K), so cond(K + lambda I) ~ ``--condition``; y has ``--rhs`` standard normal
columns). Every (method, n) then runs in a fresh subprocess that reads K from that store, so
times include reading K and the peak RSS (ru_maxrss) is the method's own. The solving process
uses ``--blas-threads`` (1) BLAS threads, except scipy-2threads: with other jobs on the cores,
OpenBLAS's spinning threads slow down by up to 6x (measured: a 2000 x 2000 SVD took 42 s with
2 threads and 6.5 s with 1 at load average 9), and ratios within one run stay meaningful.

  scipy             load K into memory, in-place LAPACK Cholesky (amondask.solve.cholesky_solve)
  scipy-2threads    the same with 2 BLAS threads and the one-thread guard (above n = 12000)
                    switched off: the OpenBLAS segfault risk the guard protects against
  tiled-threads     our tiled right-looking Cholesky, dask threaded scheduler (2 threads)
  tiled-processes   the same on LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
  dask-threads      dask.array.linalg.cholesky + solve_triangular, threaded scheduler
  dask-processes    the same on the 2-process LocalCluster
  pcg               Nystrom-preconditioned CG streaming K's lower block triangle from the store,
                    relative residual tolerance ``--tolerance``, ``--landmarks`` columns

The relative error of each solution against the scipy solution of the same run is reported
(when scipy ran for that n). Peak memory of the process-cluster runs is the client's plus the sum
of the workers' ru_maxrss.

Memory guard: before each (method, n) its peak memory is estimated (:func:`estimate_peak_gib`,
calibrated on the measured peaks at n = 16000 and 24000); a run whose estimate exceeds
``--memory-limit-gib`` (20) or the memory available now (MemAvailable) minus ``--min-free-gib``
(1.5) is not started but recorded as "does not fit, needs ~X GiB". While a run goes, a watchdog
sums the RSS of the run's process tree (the solving process and its dask workers, in a process
group of their own) and kills the group when that sum exceeds the limit or MemAvailable drops
below ``--min-free-gib``: a wrong estimate costs one run, never the other jobs on the machine
(the kernel's OOM killer picks the largest process, which need not be ours). ``--skip
method[@n]`` leaves a method out (at one n), recorded as skipped. The load average is recorded
before and after each run, and the JSON is rewritten after each run, so a run killed half-way
keeps what finished.

The tolerance study (``--tolerance-study N``): what PCG's tolerance means for predictions on a
real amon kernel. N training molecules are drawn from the QM9 molecules with <= 7 heavy atoms
(amon-sized; target U0, per-element baseline subtracted), the queries are ``--n-test`` other
such molecules and ``--n-test`` QM9 molecules with 9 heavy atoms; aSLATM and the Gaussian local
kernel with AmonKRR's defaults (sigma_Z from the training atoms), lambda ``--lam`` (1e-4).
The system is solved by scipy's Cholesky and by PCG at each of ``--study-tolerances`` with each
of ``--study-landmarks``; reported per run: iterations, true residual, stagnation, the relative
difference of alpha and of the predictions from the Cholesky ones, and the largest difference in
kcal/mol, beside the model's own error (MAE against DFT). The same system with a standard normal
right-hand side shows the rounding floor.

The out-of-core case (``--out-of-core N``): K (8 N^2 bytes; N = 60000 is 28.8 GB, more than
this machine's 24 GiB of RAM, so each PCG pass reads it from disk) is written to the store and
solved by PCG streaming its lower block triangle with ``--block-mib`` MiB row blocks;
``--memory-cap-gib`` enforces an address-space limit (RLIMIT_AS) on the solving process.

Examples (2 cores, 24 GiB):

    python3 benchmarks/bench_solve.py --max-n 16000 --json benchmarks/results/bench_solve.json
    python3 benchmarks/bench_solve.py --sizes 24000 --methods scipy,pcg \\
        --json benchmarks/results/bench_solve_24k.json
    python3 benchmarks/bench_solve.py --out-of-core 60000 --memory-cap-gib 6 \\
        --json benchmarks/results/bench_solve_out_of_core.json
    python3 benchmarks/bench_solve.py --tolerance-study 3500 \\
        --json benchmarks/results/bench_solve_qm9_tolerance.json
    python3 benchmarks/bench_solve.py --sizes 32000,40000 \\
        --methods scipy,pcg,tiled-threads,dask-threads,tiled-processes,dask-processes \\
        --skip dask-processes@40000 --json benchmarks/results/bench_solve_32k_40k.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_SIZES = (1000, 2000, 4000, 8000, 16000, 24000, 32000, 40000)
DEFAULT_METHODS = (
    "scipy",
    "scipy-2threads",
    "tiled-threads",
    "tiled-processes",
    "dask-threads",
    "dask-processes",
    "pcg",
)
CHUNK = 1024
GIB = 2**30


# ----------------------------------------------------------------------------- problem
def problem_path(workdir: Path, n: int, args) -> Path:
    return workdir / f"K_n{n}_d{args.dim}_w{args.width}_s{args.seed}.zarr"


def external_problem(workdir: Path, args) -> tuple[Path, dict]:
    """A problem around an existing stored K (``--kernel-zarr``): y and lambda are ours."""
    import zarr

    kernel = zarr.open_array(args.kernel_zarr, mode="r")
    n = int(kernel.shape[0])
    path = workdir / f"external_n{n}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    group = zarr.open_group(str(path), mode="w")
    targets = np.random.default_rng(args.seed).standard_normal((n, args.rhs))
    group.create_array("y", data=targets, chunks=(n, args.rhs))
    attrs = {
        "n": n,
        "kernel_path": str(Path(args.kernel_zarr).resolve()),
        "lambda": args.lam,
        "rhs": args.rhs,
        "seed": args.seed,
        "write_time_s": 0.0,
        "bytes": 8 * n * n,
    }
    (path / "complete.json").write_text(json.dumps(attrs))
    return path, attrs


def write_qm9_kernel(workdir: Path, n_molecules: int) -> str:
    """A real kernel: the Gaussian local kernel on aSLATM of ``n_molecules`` random QM9
    molecules (per-element sigma from amondask.kernels.element_sigmas), stored as a Zarr array;
    returns its path (reused when present)."""
    import zarr

    path = workdir / f"qm9_K{n_molecules}.zarr"
    if (path / "zarr.json").exists():
        return str(path)
    sys.path.insert(0, str(Path(__file__).parent))
    from qm9_sample import qm9_molecules

    from amondask.kernels import element_sigmas, local_kernel
    from amondask.represent import element_blocks, slatm_mbtypes

    started = time.perf_counter()
    molecules = qm9_molecules(n_molecules, seed=0)
    blocks = element_blocks(molecules, slatm_mbtypes([numbers for numbers, _ in molecules]))
    kernel = local_kernel(blocks, sigma=element_sigmas(blocks))
    stored = zarr.create_array(
        str(path) + ".tmp", shape=kernel.shape, chunks=(CHUNK, CHUNK), dtype="f8",
        compressors=None, overwrite=True,
    )  # fmt: skip
    stored[...] = kernel
    os.replace(str(path) + ".tmp", path)
    print(f"QM9 kernel ({n_molecules} molecules) in {time.perf_counter() - started:.0f} s")
    return str(path)


def write_problem(path: Path, n: int, args) -> dict:
    """Write K (n, n) and y (n, rhs) to ``path`` unless they are there; return the attrs."""
    import zarr

    marker = path / "complete.json"
    if marker.exists():
        return json.loads(marker.read_text())
    needed = 8 * n * n
    free = shutil.disk_usage(path.parent).free
    if needed > 0.9 * free:
        raise SystemExit(
            f"K for n={n} needs {needed / GIB:.1f} GiB on disk but {path.parent} has "
            f"{free / GIB:.1f} GiB free: pass --workdir on a larger disk or a smaller n"
        )
    rng = np.random.default_rng(args.seed)
    points = rng.uniform(size=(n, args.dim))
    targets = rng.standard_normal((n, args.rhs))
    progress_file = path / "progress.json"
    if progress_file.exists():  # resume a killed write: rows before rows_done are in place
        progress = json.loads(progress_file.read_text())
        group = zarr.open_group(str(path), mode="r+")
        kernel = group["K"]
    else:
        shutil.rmtree(path, ignore_errors=True)
        progress = {"rows_done": 0, "total": 0.0, "seconds": 0.0}
        group = zarr.open_group(str(path), mode="w")
        kernel = group.create_array(
            "K", shape=(n, n), chunks=(CHUNK, CHUNK), dtype="f8", compressors=None
        )
    started = time.perf_counter() - progress["seconds"]
    total = progress["total"]
    squared = (points**2).sum(1)
    for start in range(progress["rows_done"], n, CHUNK):
        stop = min(start + CHUNK, n)
        block = squared[start:stop, None] + squared[None, :] - 2 * points[start:stop] @ points.T
        np.maximum(block, 0.0, out=block)
        block *= -1.0 / (2 * args.width**2)
        np.exp(block, out=block)
        total += block.sum()
        kernel[start:stop] = block  # whole chunk rows: one writer per chunk
        elapsed = time.perf_counter() - started
        progress_file.write_text(
            json.dumps({"rows_done": stop, "total": total, "seconds": elapsed})
        )
        if (start // CHUNK) % 10 == 9:
            print(f"  writing K: {stop} / {n} rows, {elapsed:.0f} s", flush=True)
    group.create_array("y", data=targets, chunks=(n, args.rhs), overwrite=True)
    mean = total / n**2
    attrs = {
        "n": n,
        "dim": args.dim,
        "width": args.width,
        "seed": args.seed,
        "rhs": args.rhs,
        "mean_K": mean,
        "lambda": n * mean / args.condition,
        "condition_target": args.condition,
        "write_time_s": time.perf_counter() - started,
        "bytes": needed,
    }
    marker.write_text(json.dumps(attrs))
    return attrs


# ----------------------------------------------------------------------------- one run
def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def _worker_peak_rss() -> float:
    import resource as worker_resource

    return worker_resource.getrusage(worker_resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm_up() -> None:
    import scipy.linalg  # noqa: F401

    import amondask.solve  # noqa: F401


def run_one(method: str, path: Path, args) -> dict:
    """Run ``method`` on the problem at ``path`` in this process; return its record."""
    import dask
    import dask.array as da
    import zarr
    from threadpoolctl import threadpool_limits

    from amondask.solve import ArrayBlockProvider, cholesky_solve, dask_cholesky_solve, pcg_solve
    from amondask.solve.result import relative_residual

    if args.memory_cap_gib:
        cap = int(args.memory_cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    threadpool_limits(limits=2 if method == "scipy-2threads" else args.blas_threads)
    attrs = json.loads((path / "complete.json").read_text())
    regularization = attrs["lambda"]
    group = zarr.open_group(str(path), mode="r")
    stored = group["K"] if "kernel_path" not in attrs else zarr.open_array(attrs["kernel_path"])
    targets = group["y"][...]
    record: dict = {"method": method, "n": attrs["n"], "lambda": regularization}
    started = time.perf_counter()
    cluster = client = None
    try:
        if method.startswith("scipy"):
            loaded = np.empty(stored.shape)
            for start in range(0, stored.shape[0], CHUNK):
                loaded[start : start + CHUNK] = stored[start : start + CHUNK]
            record["load_s"] = time.perf_counter() - started
            threshold = 10**9 if method == "scipy-2threads" else None
            result = cholesky_solve(
                loaded,
                targets,
                regularization,
                overwrite_kernel=True,
                single_thread_above=threshold,
            )
            del loaded
            check_started = time.perf_counter()
            product = ArrayBlockProvider(stored, block_mib=args.block_mib).matvec(result.x)
            result.residual = relative_residual(product, result.x, targets, regularization)
            record["residual_check_s"] = time.perf_counter() - check_started
            record["solve_s"] = result.wall_time_s
        elif method in ("tiled-threads", "dask-threads", "tiled-processes", "dask-processes"):
            algorithm = "tiled" if method.startswith("tiled") else "dask"
            if method.endswith("processes"):
                from distributed import Client, LocalCluster

                cluster = LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
                client = Client(cluster)
                client.run(_warm_up)  # imports in the workers are not the solver's time
                started = time.perf_counter()
            with dask.config.set(scheduler="threads" if client is None else "dask.distributed"):
                result = dask_cholesky_solve(
                    da.from_zarr(stored),
                    targets,
                    regularization,
                    tile_size=args.tile_size,
                    algorithm=algorithm,
                )
            record["solve_s"] = result.wall_time_s
            if client is not None:
                worker_peaks = client.run(_worker_peak_rss)
                record["workers_peak_rss_gib"] = sum(worker_peaks.values()) / GIB
        elif method == "pcg":
            provider = ArrayBlockProvider(stored, block_mib=args.block_mib)
            result = pcg_solve(
                provider,
                targets,
                regularization,
                tolerance=args.tolerance,
                landmarks=max(args.landmarks, 1),
                preconditioner="nystrom" if args.landmarks > 0 else None,  # 0: plain CG
                max_iterations=args.max_iterations,
                callback=(lambda i, r: print(f"  iteration {i}: {r:.3e}", flush=True))
                if args.verbose
                else None,
            )
            record["solve_s"] = result.wall_time_s
            record["setup_s"] = result.info["setup_time_s"]
            record["block_rows"] = result.info["block_rows"]
            record["landmarks"] = result.info["landmarks"]
            record["rank"] = result.info["rank"]
            record["tolerance"] = args.tolerance
            record["converged"] = result.converged
            record["residual_history"] = result.residual_history
        else:
            raise SystemExit(f"unknown method {method!r}; known: {', '.join(DEFAULT_METHODS)}")
    finally:
        if client is not None:
            client.close()
            cluster.close()
    record["wall_s"] = time.perf_counter() - started
    record["iterations"] = result.iterations
    record["residual"] = result.residual
    record["info"] = {key: value for key, value in result.info.items() if np.isscalar(value)}
    record["peak_rss_gib"] = _peak_rss_gib()
    record["total_peak_rss_gib"] = record["peak_rss_gib"] + record.get("workers_peak_rss_gib", 0)
    solution_path = path.parent / f"x_{method}_n{attrs['n']}.npy"
    np.save(solution_path, result.x)
    record["solution"] = str(solution_path)
    return record


# ----------------------------------------------------------------------------- memory guard
def estimate_peak_gib(method: str, n: int, args) -> float:
    """Estimated peak RSS (GiB, all processes of the run) of ``method`` at size n.

    Models (tile = 8 t^2 bytes with t the balanced tile edge, T tiles per side; + GiB for the
    interpreter and libraries), against the measured peaks of benchmarks/results/bench_solve*.json
    at n = 16000 / 24000 / 32000 / 40000 (GiB, measured vs estimate):

    scipy            K loaded once, factored in place: 8 n^2 + 0.8
                     2.23 / 4.72 / 8.12 / 12.57 vs 2.7 / 5.1 / 8.4 / 12.7
    tiled-threads    L's lower triangle is held until the triangular solves, plus about eight
                     tiles in flight: T(T+1)/2 + 8 tiles + 0.4
                     2.14 / 3.38 / 5.27 / 7.45 vs 2.5 / 3.9 / 5.6 / 7.9
    tiled-processes  a tile of L may be held by both workers: T(T+1) + 8 tiles + 1.1
                     3.21 / - / 9.09 / 13.82 vs 4.4 / - / 10.6 / 15.2 (the first model, without
                     the copies, said 7.7 and 10.0 at 32000 and 40000: the watchdog is there
                     for such misses)
    dask-threads     L as T^2 tiles (zero upper tiles included) + 8 tiles + 0.5
                     2.47 / 4.52 / 7.14 / 10.37 vs 3.4 / 5.7 / 9.1 / 13.4
    dask-processes   likewise with copies: 2 T^2 + 8 tiles + 1.0; 3.83 at 16000 vs 5.8
    pcg              three n x m arrays in the Nystrom set-up, two row blocks, 0.6
                     1.25 / 1.68 / 2.07 / 2.37 vs 1.8 / 2.2 / 2.5 / 2.9
    """
    from amondask.solve.blocked import balanced_tile_size

    gib = float(GIB)
    edge = balanced_tile_size(n, args.tile_size)
    tiles = -(-n // edge)
    tile = 8.0 * edge * edge / gib
    if method.startswith("scipy"):
        return 8.0 * n * n / gib + 0.8
    if method == "tiled-threads":
        return (tiles * (tiles + 1) / 2 + 8) * tile + 0.4
    if method == "tiled-processes":
        return (tiles * (tiles + 1) + 8) * tile + 1.1
    if method == "dask-threads":
        return (tiles * tiles + 8) * tile + 0.5
    if method == "dask-processes":
        return (2 * tiles * tiles + 8) * tile + 1.0
    if method == "pcg":
        landmarks = min(max(args.landmarks, 1), n)
        block_mib = args.block_mib if args.block_mib is not None else 256.0
        return 3 * 8.0 * n * landmarks / gib + 2 * block_mib / 1024 + 0.6
    return 8.0 * n * n / gib  # an unknown method: assume it holds K


def _available_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / GIB


def _tree_rss_gib(pid: int) -> float:
    """Summed RSS of process ``pid`` and all its descendants, GiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / GIB


class MemoryWatchdog(threading.Thread):
    """Kill the process group of ``process`` when its tree's RSS exceeds ``limit_gib`` or the
    machine's available memory falls below ``min_free_gib``; remembers why and the largest
    tree RSS it saw."""

    def __init__(self, process: subprocess.Popen, limit_gib: float, min_free_gib: float):
        super().__init__(daemon=True)
        self.process = process
        self.limit_gib = limit_gib
        self.min_free_gib = min_free_gib
        self.reason: str | None = None
        self.largest_rss_gib = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5) and self.process.poll() is None:
            rss = _tree_rss_gib(self.process.pid)
            self.largest_rss_gib = max(self.largest_rss_gib, rss)
            available = _available_gib()
            if rss > self.limit_gib:
                self.reason = f"killed: its processes reached {rss:.2f} GiB > {self.limit_gib} GiB"
            elif available < self.min_free_gib:
                self.reason = (
                    f"killed: the machine's available memory fell to {available:.1f} GiB "
                    f"(< {self.min_free_gib} GiB) at {rss:.1f} GiB for this run"
                )
            if self.reason:
                _kill_group(self.process)
                return


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group the run was started in (its own: start_new_session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def skipped_methods(spec: str | None) -> list[tuple[str, int | None]]:
    """``"a,b@40000"`` -> [("a", None), ("b", 40000)]."""
    result = []
    for item in (spec or "").split(","):
        if item.strip():
            method, _, size = item.strip().partition("@")
            result.append((method, int(size) if size else None))
    return result


def run_in_subprocess(method: str, path: Path, args, timeout: float) -> dict:
    command = [sys.executable, __file__, "--run-one", method, "--problem", str(path)]
    for name in (
        "tile_size",
        "tolerance",
        "landmarks",
        "max_iterations",
        "block_mib",
        "memory_cap_gib",
        "blas_threads",
    ):
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    if args.verbose:
        command.append("--verbose")
    started = time.perf_counter()
    lines = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
        )
        watchdog = threading.Timer(timeout, _kill_group, args=(process,))
        watchdog.start()
        memory_watchdog = MemoryWatchdog(process, args.memory_limit_gib, args.min_free_gib)
        memory_watchdog.start()
        for line in process.stdout:  # streamed, so long runs show their progress
            if line.startswith("RESULT "):
                lines.append(line)
            elif args.verbose:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
        watchdog.cancel()
        memory_watchdog.stopped.set()
        memory_watchdog.join()
        _kill_group(process)  # dask workers a crashed run may have left behind
        errors.seek(0)
        tail = errors.read().strip().splitlines()[-3:]
    elapsed = time.perf_counter() - started
    if returncode != 0 or not lines:
        reason = f"timeout after {timeout:.0f} s" if elapsed >= timeout else "failed"
        if memory_watchdog.reason:
            reason = memory_watchdog.reason
        return {
            "method": method,
            "failed": f"{reason}, exit code {returncode} after {elapsed:.0f} s: {' | '.join(tail)}",
        }
    record = json.loads(lines[-1][len("RESULT ") :])
    record["watchdog_largest_tree_rss_gib"] = memory_watchdog.largest_rss_gib
    return record


# ----------------------------------------------------------------------------- tolerance study
def qm9_with_energies():
    """All QM9 records: Index, Elements, XYZ_Ang, U0 (hartree) and the number of heavy atoms."""
    import ast

    import pandas as pd
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    columns = ["Index", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
    frames = [pd.read_csv(directory / f"qm9_part{part}.csv", usecols=columns) for part in (1, 2, 3)]
    table = pd.concat(frames, ignore_index=True).sort_values("Index", ignore_index=True)
    table["n_heavy"] = table.Elements.map(lambda s: sum(e != "H" for e in ast.literal_eval(s)))
    return table


def _molecules(rows) -> list[tuple[np.ndarray, np.ndarray]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from qm9_sample import _parse

    return [_parse(e, x) for e, x in zip(rows.Elements, rows.XYZ_Ang, strict=True)]


def _study_kernels(groups: dict, n_train: int, n_test: int, cache: Path) -> tuple[dict, float]:
    """K(train, train) and K(queries, train) with AmonKRR's aSLATM and kernel defaults."""
    if cache.exists():
        data = np.load(cache)
        return {name: data[name] for name in groups}, float(data["seconds"])
    from amondask.kernels import element_sigmas, local_kernel
    from amondask.models import AmonKRR
    from amondask.models.basis import Basis
    from amondask.represent import slatm_mbtypes

    started = time.perf_counter()
    defaults = AmonKRR()
    basis = Basis(
        slatm_mbtypes([numbers for rows in groups.values() for numbers, _ in rows]),
        rcut=defaults.rcut,
        sigmas=tuple(defaults.slatm_sigmas),
        dgrid=tuple(defaults.dgrid),
        rpower=defaults.rpower,
    )
    blocks = {}
    for name, molecules in groups.items():
        represented = basis.represent(molecules)[0]
        blocks[name] = {z: b for z, b in represented.items() if len(b.molecule_index)}
    sigma = element_sigmas(blocks["train"])
    kernels = {"train": local_kernel(blocks["train"], sigma=sigma, n_row_molecules=n_train)}
    for name in groups:
        if name != "train":
            kernels[name] = local_kernel(
                blocks[name],
                blocks["train"],
                sigma=sigma,
                n_row_molecules=n_test,
                n_col_molecules=n_train,
            )
    seconds = time.perf_counter() - started
    np.savez(cache, seconds=seconds, **kernels)
    return kernels, seconds


def tolerance_study(args) -> dict:
    """PCG at several tolerances against scipy's Cholesky on a real amon kernel (docstring)."""
    import warnings

    from threadpoolctl import threadpool_limits

    from amondask.models import KCAL_PER_MOL_PER_HARTREE
    from amondask.models.baseline import element_count_matrix, fit_element_baseline
    from amondask.solve import cholesky_solve, pcg_solve

    threadpool_limits(limits=args.blas_threads)
    n_train, n_test, lam = args.tolerance_study, args.n_test, args.lam
    table = qm9_with_energies()
    small = table[table.n_heavy <= 7].sample(n=n_train + n_test, random_state=args.seed)
    rows = {
        "train": small.iloc[:n_train],
        "test_le7": small.iloc[n_train:],
        "test_9": table[table.n_heavy == 9].sample(n=n_test, random_state=args.seed),
    }
    groups = {name: _molecules(part) for name, part in rows.items()}
    energies = {name: part.InternalEnergy_0K_au.to_numpy() for name, part in rows.items()}
    cache = Path(args.workdir) / f"qm9_tolerance_{n_train}_{n_test}_{args.seed}.npz"
    kernels, kernel_seconds = _study_kernels(groups, n_train, n_test, cache)
    print(f"kernels: {kernel_seconds:.0f} s", flush=True)
    elements = sorted({int(z) for numbers, _ in groups["train"] for z in numbers})
    counts = {
        name: element_count_matrix([numbers for numbers, _ in molecules], elements)
        for name, molecules in groups.items()
    }
    coefficients = fit_element_baseline(counts["train"], energies["train"])
    targets = energies["train"] - counts["train"] @ coefficients
    queries = [name for name in groups if name != "train"]
    k_train = kernels["train"]
    eigenvalues = np.linalg.eigvalsh(k_train)
    direct = cholesky_solve(k_train, targets, lam)
    reference = {name: kernels[name] @ direct.x for name in queries}

    def compare(solution: np.ndarray) -> dict:
        out = {}
        for name in queries:
            kernel_part = kernels[name] @ solution
            difference = (kernel_part - reference[name]) * KCAL_PER_MOL_PER_HARTREE
            error = kernel_part + counts[name] @ coefficients - energies[name]
            out[name] = {
                "relative_difference": float(
                    np.linalg.norm(kernel_part - reference[name]) / np.linalg.norm(reference[name])
                ),
                "max_abs_difference_kcal": float(np.abs(difference).max()),
                "mean_abs_difference_kcal": float(np.abs(difference).mean()),
                "mae_vs_dft_kcal": float(np.abs(error).mean() * KCAL_PER_MOL_PER_HARTREE),
            }
        return out

    def pcg_runs(rhs: np.ndarray, direct_solution: np.ndarray, tolerances, landmark_counts):
        runs = []
        for landmarks in landmark_counts:
            for tolerance in tolerances:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = pcg_solve(
                        k_train,
                        rhs,
                        lam,
                        tolerance=tolerance,
                        landmarks=landmarks,
                        max_iterations=args.max_iterations,
                    )
                run = {
                    "landmarks": landmarks,
                    "tolerance": tolerance,
                    "iterations": result.iterations,
                    "residual": result.residual,
                    "converged": result.converged,
                    "stagnated": bool(result.info["stagnated"]),
                    "restarts": result.info["restarts"],
                    "seconds": result.wall_time_s,
                    "warned": [str(w.message).split(":")[0] for w in caught],
                    "alpha_relative_difference": float(
                        np.linalg.norm(result.x - direct_solution) / np.linalg.norm(direct_solution)
                    ),
                }
                runs.append((run, result.x))
        return runs

    tolerances = [float(t) for t in args.study_tolerances.split(",")]
    landmark_counts = [int(m) for m in args.study_landmarks.split(",")]
    record = {
        "n_train": n_train,
        "n_test_per_set": n_test,
        "lambda": lam,
        "kernel_seconds": kernel_seconds,
        "condition": float((eigenvalues[-1] + lam) / (max(eigenvalues[0], 0.0) + lam)),
        "eigenvalue_range": [float(eigenvalues[0]), float(eigenvalues[-1])],
        "targets_rms_kcal": float(np.sqrt(np.mean(targets**2)) * KCAL_PER_MOL_PER_HARTREE),
        "cholesky": {
            "residual": direct.residual,
            "seconds": direct.wall_time_s,
            "predictions": compare(direct.x),
        },
        "pcg": [],
    }
    for run, solution in pcg_runs(targets, direct.x, tolerances, landmark_counts):
        run["predictions"] = compare(solution)
        record["pcg"].append(run)
    noise = np.random.default_rng(args.seed).standard_normal(n_train)
    noise_direct = cholesky_solve(k_train, noise, lam)
    record["standard_normal_rhs"] = {
        "cholesky_residual": noise_direct.residual,
        "pcg": [
            run
            for run, _ in pcg_runs(noise, noise_direct.x, (1e-6, 1e-7, 1e-8), landmark_counts[:1])
        ],
    }
    return record


def print_study(record: dict) -> None:
    print(
        f"n_train={record['n_train']}, lambda={record['lambda']:g}, cond(K + lambda I)="
        f"{record['condition']:.2g}, Cholesky residual {record['cholesky']['residual']:.1e}; "
        f"model MAE vs DFT (kcal/mol): "
        + ", ".join(
            f"{name} {values['mae_vs_dft_kcal']:.3f}"
            for name, values in record["cholesky"]["predictions"].items()
        )
    )
    header = (
        f"{'m':>5} {'tol':>6} {'iters':>5} {'residual':>9} {'stop':>9} {'alpha diff':>10} "
        f"{'pred rel diff (le7/9)':>21} {'max |diff| kcal/mol':>20}"
    )
    print(header)
    print("-" * len(header))
    for run in record["pcg"]:
        predictions = run["predictions"]
        stop = "converged" if run["converged"] else ("floor" if run["stagnated"] else "cap")
        print(
            f"{run['landmarks']:>5} {run['tolerance']:>6.0e} {run['iterations']:>5} "
            f"{run['residual']:>9.1e} {stop:>9} {run['alpha_relative_difference']:>10.1e} "
            f"{predictions['test_le7']['relative_difference']:>10.1e}/"
            f"{predictions['test_9']['relative_difference']:<10.1e} "
            f"{predictions['test_le7']['max_abs_difference_kcal']:>9.1e}/"
            f"{predictions['test_9']['max_abs_difference_kcal']:<10.1e}"
        )
    noise = record["standard_normal_rhs"]
    print(f"standard normal y: Cholesky residual {noise['cholesky_residual']:.1e}")
    for run in noise["pcg"]:
        stop = "converged" if run["converged"] else ("floor" if run["stagnated"] else "cap")
        print(
            f"{run['landmarks']:>5} {run['tolerance']:>6.0e} {run['iterations']:>5} "
            f"{run['residual']:>9.1e} {stop:>9} {run['alpha_relative_difference']:>10.1e}"
        )


# ----------------------------------------------------------------------------- driver
def print_table(records: list[dict]) -> None:
    header = (
        f"{'n':>7} {'method':<16} {'wall s':>9} {'solve s':>9} {'iters':>6} {'residual':>9} "
        f"{'err vs scipy':>12} {'peak GiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for record in records:
        if "skipped" in record:
            print(f"{record.get('n', ''):>7} {record['method']:<16} SKIPPED: {record['skipped']}")
            continue
        if "failed" in record:
            print(f"{record.get('n', ''):>7} {record['method']:<16} FAILED: {record['failed']}")
            continue
        error = record.get("error_vs_scipy")
        print(
            f"{record['n']:>7} {record['method']:<16} {record['wall_s']:>9.2f} "
            f"{record['solve_s']:>9.2f} {record['iterations']:>6} {record['residual']:>9.1e} "
            f"{'' if error is None else f'{error:.1e}':>12} {record['total_peak_rss_gib']:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--max-n", type=int, default=None, help="skip sizes above this n")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.7)
    parser.add_argument("--condition", type=float, default=1e6)
    parser.add_argument("--rhs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-size", type=int, default=4096)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-8,
        help="PCG's tolerance (1e-8, tighter than the library's default 1e-6, as in the "
        "scaling table's earlier rows)",
    )
    parser.add_argument("--landmarks", type=int, default=2000)
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--block-mib", type=float, default=None)
    parser.add_argument("--memory-cap-gib", type=float, default=None)
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads of the solving process (scipy-2threads: 2); 1 keeps timings stable "
        "when other jobs share the cores",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=20.0,
        help="do not start a run whose estimated peak exceeds this; kill one whose processes "
        "exceed it",
    )
    parser.add_argument(
        "--min-free-gib",
        type=float,
        default=1.5,
        help="keep at least this much of the machine's memory available (other jobs)",
    )
    parser.add_argument(
        "--skip", default=None, help="methods to leave out: 'method' or 'method@n', comma-separated"
    )
    parser.add_argument("--note", default=None, help="a note stored in the JSON")
    parser.add_argument("--workdir", default="/tmp/amondask-bench-solve")
    parser.add_argument("--keep", action="store_true", help="keep the K stores afterwards")
    parser.add_argument("--out-of-core", type=int, default=None, metavar="N")
    parser.add_argument(
        "--kernel-zarr",
        default=None,
        metavar="PATH",
        help="solve with an existing stored K (a Zarr array, e.g. the kernel benchmark's) "
        "instead of the synthetic one; lambda from --lam",
    )
    parser.add_argument("--lam", type=float, default=1e-4, help="lambda for --kernel-zarr")
    parser.add_argument(
        "--qm9",
        type=int,
        default=None,
        metavar="N",
        help="solve with the real aSLATM Gaussian local kernel of N random QM9 molecules "
        "(needs qm9pack), lambda from --lam",
    )
    parser.add_argument(
        "--tolerance-study",
        type=int,
        default=None,
        metavar="N",
        help="PCG tolerance vs prediction accuracy on the QM9 amon kernel of N training "
        "molecules (needs qm9pack); lambda from --lam",
    )
    parser.add_argument("--n-test", type=int, default=400, help="queries per set (study)")
    parser.add_argument("--study-tolerances", default="1e-4,1e-5,1e-6,1e-7,1e-8")
    parser.add_argument("--study-landmarks", default="2000,500,100")
    parser.add_argument("--json", default=None, help="write the records here")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--problem", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_one:
        print("RESULT " + json.dumps(run_one(args.run_one, Path(args.problem), args)), flush=True)
        return

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.tolerance_study:
        load_at_start = os.getloadavg()
        record = tolerance_study(args)
        print_study(record)
        if args.json:
            record = {
                "benchmark": "amondask.solve: PCG tolerance on a real amon kernel",
                "command": " ".join([Path(sys.executable).name] + sys.argv),
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "note": args.note,
                "load_average": {"start": load_at_start, "end": os.getloadavg()},
                **record,
            }
            Path(args.json).write_text(json.dumps(record, indent=1))
            print(f"wrote {args.json}")
        return
    if args.out_of_core:
        sizes = [args.out_of_core]
        methods = ["pcg"]
        if args.block_mib is None:
            args.block_mib = 8 * args.out_of_core * CHUNK / 2**20  # one chunk row per block
    else:
        sizes = [int(size) for size in args.sizes.split(",")]
        if args.max_n:
            sizes = [size for size in sizes if size <= args.max_n]
        methods = args.methods.split(",")
    if args.qm9:
        args.kernel_zarr = write_qm9_kernel(workdir, args.qm9)
    if args.kernel_zarr:
        sizes = [None]
    records: list[dict] = []
    skips = skipped_methods(args.skip)
    load_at_start = os.getloadavg()

    def write_json() -> None:
        if not args.json:
            return
        import dask
        import scipy

        output = {
            "benchmark": "amondask.solve",
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "note": args.note,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
                "load_average_at_start": load_at_start,
                "load_average_at_end": os.getloadavg(),
            },
            "versions": {
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "dask": dask.__version__,
            },
            "problem": {
                "kernel": args.kernel_zarr or "Gaussian on uniform points in [0,1]^dim",
                "lambda_external": args.lam if args.kernel_zarr else None,
                "dim": args.dim,
                "width": args.width,
                "condition_target": args.condition,
                "rhs": args.rhs,
                "seed": args.seed,
            },
            "memory_guard": {
                "limit_gib": args.memory_limit_gib,
                "min_free_gib": args.min_free_gib,
            },
            "records": records,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(output, indent=1))

    for n in sizes:
        started = time.perf_counter()
        if args.kernel_zarr:
            path, attrs = external_problem(workdir, args)
            n = attrs["n"]
        else:
            path = problem_path(workdir, n, args)
            attrs = write_problem(path, n, args)
        print(
            f"n={n}: K ({attrs['bytes'] / GIB:.2f} GiB) in {path} "
            f"(written in {attrs['write_time_s']:.1f} s, now {time.perf_counter() - started:.1f}"
            f" s), lambda={attrs['lambda']:.3g}",
            flush=True,
        )
        reference = None
        for method in methods:
            estimate = estimate_peak_gib(method, n, args)
            available = _available_gib()
            if (method, None) in skips or (method, n) in skips:
                record = {"method": method, "n": n, "skipped": "left out (--skip)"}
            elif estimate > args.memory_limit_gib:
                record = {
                    "method": method,
                    "n": n,
                    "skipped": f"does not fit: needs ~{estimate:.1f} GiB (estimate) > the "
                    f"{args.memory_limit_gib} GiB limit",
                }
            elif estimate > available - args.min_free_gib:
                record = {
                    "method": method,
                    "n": n,
                    "skipped": f"does not fit now: needs ~{estimate:.1f} GiB (estimate), "
                    f"{available:.1f} GiB available, {args.min_free_gib} GiB kept free",
                }
            else:
                load_before = os.getloadavg()
                record = run_in_subprocess(method, path, args, args.timeout)
                record["load_average_before"] = load_before
                record["load_average_after"] = os.getloadavg()
            record.setdefault("n", n)
            record["estimated_peak_gib"] = estimate
            record["available_gib_before"] = available
            if "failed" not in record and "skipped" not in record:
                solution = np.load(record["solution"])
                if method == "scipy":
                    reference = solution
                if reference is not None and method != "scipy":
                    record["error_vs_scipy"] = float(
                        np.linalg.norm(solution - reference) / np.linalg.norm(reference)
                    )
                os.remove(record["solution"])
            records.append(record)
            print_table([record])
            write_json()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)  # (an external K is left alone)

    print()
    print_table(records)
    write_json()
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
