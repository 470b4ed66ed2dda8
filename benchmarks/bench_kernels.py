"""Benchmark of the local kernels (issue 7).

Section ``in-memory`` (one process, one BLAS/OpenMP thread, side by side in one run; CPU time of
the process, so that other jobs on a shared machine do not skew the ratios):
  * this machine's dense GEMM GFLOP/s (float64, shapes of the kernel's GEMMs);
  * the Gaussian local kernel K(A, A) on 1000 QM9 molecules in GFLOP/s (useful flops:
    sum over elements of 2 n_Z^2 d_Z for the full matrix), as a fraction of GEMM; the symmetric
    path (half the flops) and the Laplacian (numba L1) for reference;
  * qmllib's get_local_kernel on a random subsample, extrapolated to 1000 x 1000 by the number of
    molecule pairs (qmllib is a quadruple Fortran loop over padded full-width vectors; its run
    time is proportional to the number of molecule pairs at fixed size distribution).

Section ``out-of-core`` (2 worker processes, 1 thread each):
  * a 20,000 x 20,000 symmetric Gaussian kernel written block by block into a Zarr directory
    store from per-element aSLATM arrays in the same store; wall time and peak memory (RSS of
    every process of the run, sampled every 0.2 s). Stand-in for amons: the first 20,000 QM9
    molecules (by index) with <= 8 heavy atoms (QM9 has only 3,921 with <= 7), aSLATM with the
    authors' dgrid (0.04, 0.04); per-element sigma from 2,000 of them.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_kernels.py \
        --section in-memory --out benchmarks/results/bench_kernels.json
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 benchmarks/bench_kernels.py \
        --section out-of-core --out benchmarks/results/bench_kernels_out_of_core.json
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from qm9_sample import qm9_molecules, qm9_table  # noqa: E402

from amondask.kernels import (  # noqa: E402
    append_element_blocks,
    element_sigmas,
    kernel_progress,
    local_kernel,
    write_kernel,
)
from amondask.represent import element_blocks, slatm, slatm_mbtypes  # noqa: E402


def best_of(function, repeat: int = 3) -> float:
    """Smallest CPU time (this process, one BLAS thread) of ``repeat`` calls: robust to other
    jobs on a shared machine, unlike wall time."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def gemm_gflops(n: int, d: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    seconds = best_of(lambda: a @ b.T)
    return 2.0 * n * n * d / seconds / 1e9


def in_memory(n_molecules: int, n_qmllib: int) -> dict:
    molecules = qm9_molecules(n_molecules, seed=0)
    mbtypes = slatm_mbtypes([n for n, _ in molecules])
    blocks = element_blocks(molecules, mbtypes)
    sigma = element_sigmas(blocks)
    widths = {z: b.x.shape[1] for z, b in blocks.items()}
    counts = {z: b.x.shape[0] for z, b in blocks.items()}
    full_flops = sum(2.0 * counts[z] ** 2 * widths[z] for z in blocks)
    d_typical = int(np.average(list(widths.values()), weights=list(counts.values())))

    gemm = gemm_gflops(4096, d_typical)
    local_kernel(blocks, blocks, sigma=sigma)  # warm up
    rectangular_s = best_of(lambda: local_kernel(blocks, blocks, sigma=sigma), repeat=2)
    symmetric_s = best_of(lambda: local_kernel(blocks, sigma=sigma), repeat=2)
    laplacian_sigma = element_sigmas(blocks, kernel="laplacian")
    laplacian_s = best_of(
        lambda: local_kernel(blocks, sigma=laplacian_sigma, kernel="laplacian"), repeat=1
    )

    # qmllib on a random subsample, same sigma for all elements (qmllib has one sigma)
    from qmllib.kernels import get_local_kernel

    rng = np.random.default_rng(1)
    subset = sorted(rng.choice(n_molecules, size=n_qmllib, replace=False).tolist())
    representations = [slatm(*molecules[i], mbtypes) for i in subset]
    n_max = max(len(r) for r in representations)
    padded = np.zeros((n_qmllib, n_max, representations[0].shape[1]))
    for row, r in enumerate(representations):
        padded[row, : len(r)] = r
    charges = [molecules[i][0] for i in subset]
    one_sigma = float(np.median(list(sigma.values())))
    start = time.process_time()
    reference = get_local_kernel(padded, padded, charges, charges, one_sigma)
    qmllib_subset_s = time.process_time() - start
    sub_blocks = element_blocks([molecules[i] for i in subset], mbtypes)
    ours_subset_s = best_of(lambda: local_kernel(sub_blocks, sub_blocks, sigma=one_sigma))
    ours_subset = local_kernel(sub_blocks, sub_blocks, sigma=one_sigma)
    max_relative_difference = float(np.max(np.abs(ours_subset - reference.T) / reference.T))
    qmllib_extrapolated_s = qmllib_subset_s * (n_molecules / n_qmllib) ** 2

    kernel_gflops = full_flops / rectangular_s / 1e9
    return {
        "n_molecules": n_molecules,
        "atoms_per_element": counts,
        "features_per_element": widths,
        "gemm_shape": [4096, 4096, d_typical],
        "gemm_gflops": gemm,
        "gaussian_full_seconds": rectangular_s,
        "gaussian_full_gflops": kernel_gflops,
        "gaussian_fraction_of_gemm": kernel_gflops / gemm,
        "gaussian_symmetric_seconds": symmetric_s,
        "laplacian_symmetric_seconds": laplacian_s,
        "qmllib_subsample_molecules": n_qmllib,
        "qmllib_subsample_seconds": qmllib_subset_s,
        "ours_subsample_seconds": ours_subset_s,
        "ours_vs_qmllib_max_relative_difference": max_relative_difference,
        "qmllib_extrapolated_seconds": qmllib_extrapolated_s,
        "speedup_vs_qmllib_full": qmllib_extrapolated_s / rectangular_s,
        "speedup_vs_qmllib_symmetric": qmllib_extrapolated_s / symmetric_s,
        "speedup_vs_qmllib_same_subsample": qmllib_subset_s / ours_subset_s,
    }


class MemorySampler(threading.Thread):
    """Peak RSS of this process and all its children (workers, nannies), sampled."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_main = 0
        self.peak_children = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                processes = [self.process, *self.process.children(recursive=True)]
                sizes = []
                for p in processes:
                    try:
                        sizes.append(p.memory_info().rss)
                    except Exception:
                        pass
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes[1:], default=0))
                self.peak_main = max(self.peak_main, sizes[0])
                self.peak_children = max(self.peak_children, sum(sizes[1:]))
            except Exception:
                pass
            time.sleep(self.interval)

    def stop(self) -> None:
        self.running = False
        self.join()


def out_of_core(
    n_molecules: int, block_size: int, atom_chunk: int, directory: Path, resume: bool = False
) -> dict:
    import distributed
    import zarr

    dgrid = (0.04, 0.04)
    table = qm9_table()
    molecules = qm9_molecules(n_molecules, max_heavy=8, seed=None, table=table)
    mbtypes = slatm_mbtypes([n for n, _ in molecules])
    resuming = resume and directory.exists()
    if directory.exists() and not resuming:
        shutil.rmtree(directory)
    root = zarr.open_group(directory, mode="a" if resuming else "w")
    represent = root.require_group("represent/aslatm")

    start = time.perf_counter()
    partition = 2000
    for first in range(0, n_molecules if not resuming else 0, partition):
        part = element_blocks(
            molecules[first : first + partition], mbtypes, dgrid=dgrid, first_molecule_index=first
        )
        append_element_blocks(
            represent, part, n_molecules=min(first + partition, n_molecules),
            attributes={"mbtypes": mbtypes, "dgrid": list(dgrid)},
        )  # fmt: skip
    represent_seconds = time.perf_counter() - start
    sigma = element_sigmas(element_blocks(molecules[::40], mbtypes, dgrid=dgrid))
    n_atoms = {int(z): represent[str(z)].shape[0] for z in represent.attrs["elements"]}
    widths = {int(z): represent[str(z)].shape[1] for z in represent.attrs["elements"]}
    symmetric_flops = sum(n_atoms[z] ** 2 * widths[z] for z in n_atoms)  # half of 2 n^2 d
    representation_bytes = sum(8 * n_atoms[z] * widths[z] for z in n_atoms)

    del table
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed parse buffers back before measuring
    sampler = MemorySampler()
    sampler.start()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            memory_limit="6GiB",
        ) as cluster,
        distributed.Client(cluster),
    ):  # fmt: skip
        out = root.require_group("kernels/aslatm-gaussian")
        stop_progress = threading.Event()

        def report_progress() -> None:
            while not stop_progress.wait(30):
                try:
                    fraction = kernel_progress(out)
                except Exception:
                    continue
                print(
                    f"  {time.perf_counter() - start:7.0f} s  {100 * fraction:5.1f}% of blocks  "
                    f"peak RSS {sampler.peak_total / 2**30:.2f} GiB",
                    flush=True,
                )

        done_at_start = kernel_progress(out) if "K_done" in out else 0.0
        start = time.perf_counter()
        progress = threading.Thread(target=report_progress, daemon=True)
        progress.start()
        k_array = write_kernel(
            represent, None, out, sigma=sigma, block_size=block_size, atom_chunk=atom_chunk
        )
        kernel_seconds = time.perf_counter() - start
        stop_progress.set()
    sampler.stop()

    # check two blocks against the in-memory kernel of the same molecules
    rows = list(range(0, 150))
    cols = list(range(n_molecules - 150, n_molecules))
    expected = local_kernel(
        element_blocks([molecules[i] for i in rows], mbtypes, dgrid=dgrid),
        element_blocks([molecules[i] for i in cols], mbtypes, dgrid=dgrid),
        sigma=sigma,
    )
    stored = k_array[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    check = float(np.max(np.abs(stored - expected) / np.abs(expected)))
    mirror = float(np.max(np.abs(k_array[cols[0] : cols[-1] + 1, 0:150] - stored.T)))
    return {
        "n_molecules": n_molecules,
        "stand_in": "first QM9 molecules by index with <= 8 heavy atoms",
        "dgrid": list(dgrid),
        "atoms_per_element": n_atoms,
        "features_per_element": widths,
        "representation_gib": representation_bytes / 2**30,
        "kernel_gib": 8 * n_molecules**2 / 2**30,
        "represent_seconds": None if resuming else represent_seconds,
        "resumed": resuming,
        "fraction_of_blocks_done_at_start": done_at_start,
        "block_size": block_size,
        "atom_chunk": atom_chunk,
        "workers": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
        "kernel_wall_seconds": kernel_seconds,
        "kernel_gflops": symmetric_flops * 2 / 2 / kernel_seconds / 1e9,
        "peak_rss_all_processes_gib": sampler.peak_total / 2**30,
        "peak_rss_one_worker_gib": sampler.peak_single / 2**30,
        "peak_rss_client_process_gib": sampler.peak_main / 2**30,
        "peak_rss_cluster_processes_gib": sampler.peak_children / 2**30,
        "check_max_relative_difference": check,
        "check_mirror_max_abs_difference": mirror,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=["in-memory", "out-of-core"], default="in-memory")
    parser.add_argument("--n-molecules", type=int, default=None)
    parser.add_argument("--n-qmllib", type=int, default=100)
    parser.add_argument("--block-size", type=int, default=2000)
    parser.add_argument("--atom-chunk", type=int, default=4096)
    parser.add_argument("--directory", type=Path, default=Path("/tmp/amondask_bench_kernels"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--resume", action="store_true", help="out-of-core: reuse --directory, skip done blocks"
    )
    args = parser.parse_args()
    environment = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_at_end": os.getloadavg(),
    }
    if args.section == "in-memory":
        result = in_memory(args.n_molecules or 1000, args.n_qmllib)
        rows = [
            ("dense GEMM (1 thread)", f"{result['gemm_gflops']:.1f} GFLOP/s", ""),
            (
                "Gaussian local kernel, full",
                f"{result['gaussian_full_gflops']:.1f} GFLOP/s",
                f"{100 * result['gaussian_fraction_of_gemm']:.0f}% of GEMM (target >= 50%)",
            ),
            ("Gaussian full K, 1000 mol", f"{result['gaussian_full_seconds']:.2f} s", ""),
            ("Gaussian symmetric K", f"{result['gaussian_symmetric_seconds']:.2f} s", ""),
            ("Laplacian symmetric K", f"{result['laplacian_symmetric_seconds']:.2f} s", ""),
            (
                f"qmllib {result['qmllib_subsample_molecules']}^2 subsample",
                f"{result['qmllib_subsample_seconds']:.2f} s",
                f"ours {result['ours_subsample_seconds']:.3f} s",
            ),
            (
                "qmllib extrapolated 1000^2",
                f"{result['qmllib_extrapolated_seconds']:.0f} s",
                f"speed-up {result['speedup_vs_qmllib_full']:.0f}x full, "
                f"{result['speedup_vs_qmllib_symmetric']:.0f}x symmetric (target >= 100x)",
            ),
        ]
    else:
        result = out_of_core(
            args.n_molecules or 20000, args.block_size, args.atom_chunk, args.directory,
            resume=args.resume,
        )  # fmt: skip
        rows = [
            ("molecules", str(result["n_molecules"]), result["stand_in"]),
            ("representation on disk", f"{result['representation_gib']:.2f} GiB", ""),
            ("K on disk", f"{result['kernel_gib']:.2f} GiB", ""),
            (
                "aSLATM (1 process)",
                f"{result['represent_seconds'] or 0:.1f} s",
                "resumed: reused" if result["resumed"] else "",
            ),  # fmt: skip
            (
                "kernel wall time",
                f"{result['kernel_wall_seconds']:.0f} s",
                f"{result['kernel_gflops']:.1f} GFLOP/s, 2 workers",
            ),  # fmt: skip
            (
                "peak RSS, all processes",
                f"{result['peak_rss_all_processes_gib']:.2f} GiB",
                "target < 4 GB",
            ),  # fmt: skip
            ("peak RSS, one worker", f"{result['peak_rss_one_worker_gib']:.2f} GiB", ""),
            ("peak RSS, client", f"{result['peak_rss_client_process_gib']:.2f} GiB", ""),
            (
                "peak RSS, cluster",
                f"{result['peak_rss_cluster_processes_gib']:.2f} GiB",
                "2 workers + 2 nannies",
            ),  # fmt: skip
            ("check vs in-memory", f"{result['check_max_relative_difference']:.1e}", "max rel"),
        ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    result["environment"] = environment
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
