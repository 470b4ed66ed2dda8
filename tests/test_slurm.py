"""`amondask run` on a real SLURM cluster: through dask-jobqueue's SLURMCluster (`--cluster slurm`)
and through the sbatch scheduler-file script of deploy/slurm, each predicting what an embedded
LocalCluster predicts.

SLURM is the one-node cluster of deploy/slurm/local-test-cluster.sh (Debian's slurm-wlm, started
by .ci/run as root); where it is not running, these tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import distributed  # noqa: F401  (config defaults present before --config files are applied)
import pytest
from cluster_reference import (
    TINY_MAX_HEAVY_ATOMS,
    assert_same_predictions,
    write_tiny_queries,
)

from amondask.cli import main

dask_jobqueue = pytest.importorskip("dask_jobqueue")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _slurm_status() -> str | None:
    """None when a SLURM node takes jobs, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM commands (sbatch, sinfo) on PATH"
    try:
        states = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s (slurmctld not running?)"
    if states.returncode != 0:
        return f"sinfo failed: {states.stderr.strip()[:200]}"
    if not any(s.startswith(("idle", "mix", "alloc")) for s in states.stdout.split()):
        return f"no SLURM node is up (sinfo: {states.stdout.strip()[:100]!r})"
    return None


_REASON = _slurm_status()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        _REASON is not None,
        reason=f"SLURM is not running here ({_REASON}); as root, "
        "`bash deploy/slurm/local-test-cluster.sh` starts a one-node cluster",
    ),
]


def _our_jobs(name: str, settle_seconds: float = 0) -> list[str]:
    """Ids of the pending or running jobs called ``name``; with ``settle_seconds``, asked again
    until none is left or the time is up (a cancelled job leaves the queue within seconds)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        queue = subprocess.run(
            ["squeue", "--noheader", "--name", name, "--states=PD,R", "--format=%i"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        jobs = queue.stdout.split()
        if not jobs or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def _wait_for_job(job_id: str, timeout_seconds: float) -> tuple[str, str]:
    """(JobState, ExitCode) of a job once it has ended (scontrol keeps ended jobs for
    MinJobAge, 300 s by default); polled each second (sbatch --wait polls up to 32 s apart)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["scontrol", "show", "job", job_id, "--oneliner"],
            capture_output=True,
            text=True,
            timeout=15,
        ).stdout
        fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
        state = fields.get("JobState", "")
        if state and state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return state, fields.get("ExitCode", "")
        time.sleep(1)
    raise AssertionError(f"SLURM job {job_id} did not end within {timeout_seconds} s")


def test_run_through_slurmcluster_matches_local_cluster(tmp_path):
    """`amondask run --cluster slurm --max-workers 2` with the job options in a --config file:
    workers are SLURM jobs (their logs prove it), cancelled when the run ends."""
    job_name = f"amondask-test-{os.getpid()}"
    settings = tmp_path / "site.yaml"
    settings.write_text(
        "amondask:\n"
        "  cluster: {wait-timeout-s: 180}\n"
        "jobqueue:\n"
        "  slurm:\n"
        f"    name: {job_name}\n"
        "    cores: 1\n"
        "    processes: 1\n"
        "    memory: 2GB\n"
        "    walltime: '00:15:00'\n"
        f"    log-directory: {tmp_path / 'logs'}\n"
    )
    queries = write_tiny_queries(tmp_path)
    workspace = tmp_path / "slurm.zarr"
    try:
        code = main(
            [
                "run",
                str(queries),
                "-w",
                str(workspace),
                "-k",
                str(TINY_MAX_HEAVY_ATOMS),
                "--cluster",
                "slurm",
                "--max-workers",
                "2",
                "--no-progress",
                "--config",
                str(settings),
            ]
        )
        assert code == 0
        worker_logs = sorted((tmp_path / "logs").glob(f"{job_name}-*.err"))
        assert worker_logs, "no SLURM worker job wrote a log"
        assert any("Registered to" in log.read_text() for log in worker_logs)
        assert _our_jobs(job_name, settle_seconds=60) == []  # cancelled on exit
    finally:
        leftover = _our_jobs(job_name)
        if leftover:
            subprocess.run(["scancel", *leftover], timeout=30)
    assert_same_predictions(workspace)


def test_sbatch_scheduler_file_script_matches_local_cluster(tmp_path):
    """deploy/slurm/amondask-run.sbatch as a user submits it: one job with the scheduler, two
    srun workers and `amondask run --scheduler-file`."""
    queries = write_tiny_queries(tmp_path)
    workspace = tmp_path / "sbatch.zarr"
    environment = dict(os.environ)
    # the job runs `dask` and `amondask` of this Python (sbatch exports the environment)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    job_output = tmp_path / "job.out"
    command = [
        "sbatch",
        "--parsable",
        "--job-name",
        f"amondask-sbatch-test-{os.getpid()}",
        "--ntasks=2",
        "--mem-per-cpu=1500",
        "--time=00:15:00",
        f"--output={job_output}",
        str(DEPLOY / "slurm" / "amondask-run.sbatch"),
        str(queries),
        str(workspace),
        "--max-heavy-atoms",
        str(TINY_MAX_HEAVY_ATOMS),
    ]
    submitted = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        state = _wait_for_job(job_id, timeout_seconds=600)
        log = job_output.read_text() if job_output.exists() else ""
        assert state == ("COMPLETED", "0:0"), log[-3000:]
    finally:
        subprocess.run(["scancel", job_id], timeout=30)
    assert "predicted 4 queries" in log
    assert not list(tmp_path.glob("amondask-scheduler-*.json"))  # the script cleans up
    assert_same_predictions(workspace)
