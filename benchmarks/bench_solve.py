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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
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
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        for line in process.stdout:  # streamed, so long runs show their progress
            if line.startswith("RESULT "):
                lines.append(line)
            elif args.verbose:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
        watchdog.cancel()
        errors.seek(0)
        tail = errors.read().strip().splitlines()[-3:]
    elapsed = time.perf_counter() - started
    if returncode != 0 or not lines:
        reason = f"timeout after {timeout:.0f} s" if elapsed >= timeout else "failed"
        return {
            "method": method,
            "failed": f"{reason}, exit code {returncode} after {elapsed:.0f} s: {' | '.join(tail)}",
        }
    return json.loads(lines[-1][len("RESULT ") :])


# ----------------------------------------------------------------------------- driver
def print_table(records: list[dict]) -> None:
    header = (
        f"{'n':>7} {'method':<16} {'wall s':>9} {'solve s':>9} {'iters':>6} {'residual':>9} "
        f"{'err vs scipy':>12} {'peak GiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for record in records:
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
    parser.add_argument("--tolerance", type=float, default=1e-8)
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
    records = []
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
            record = run_in_subprocess(method, path, args, args.timeout)
            record.setdefault("n", n)
            if "failed" not in record:
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
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)  # (an external K is left alone)

    print()
    print_table(records)
    if args.json:
        import dask
        import scipy

        output = {
            "benchmark": "amondask.solve",
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
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
            "records": records,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(output, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
