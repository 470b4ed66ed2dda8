"""amondask.cluster without SLURM or Kubernetes: which cluster the options name, the adaptive
range, the CLI flags, the SLURM job script built from the deploy/ example configuration, and
the errors for a scheduler without workers or a missing scheduler file."""

from __future__ import annotations

import sys
from pathlib import Path

import dask.config
import distributed  # noqa: F401  (its config defaults must exist before config files are applied)
import pytest

from amondask import config
from amondask.cli import build_parser
from amondask.cli.common import cluster_settings
from amondask.cluster import (
    PINNED_THREADS_ENV,
    cluster_type,
    get_client,
    slurm_cluster,
    slurm_job_options,
    worker_range,
)
from amondask.errors import ClusterError, ConfigError

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_cluster_type_follows_arguments_then_configuration(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text("{}")
    assert cluster_type() == "local"
    assert cluster_type(scheduler="tcp://10.0.0.1:8786") == "address"
    assert cluster_type(scheduler=str(scheduler_file)) == "scheduler-file"
    assert cluster_type(scheduler_file="any.json") == "scheduler-file"
    assert cluster_type("slurm", scheduler="tcp://x:1") == "slurm"  # explicit type wins
    with dask.config.set({"amondask.cluster.type": "kubernetes"}):
        assert cluster_type() == "kubernetes"
        assert cluster_type(scheduler="tcp://x:1") == "address"  # an explicit scheduler wins
    with dask.config.set({"amondask.cluster.scheduler-file": str(scheduler_file)}):
        assert cluster_type() == "scheduler-file"
    with dask.config.set({"amondask.cluster.scheduler": "tcp://x:1"}):
        assert cluster_type() == "address"
    with pytest.raises(ConfigError, match="unknown cluster type 'pbs'"):
        cluster_type("pbs")


def test_worker_range_from_arguments_and_configuration():
    assert worker_range() == (1, 1)
    assert worker_range(max_workers=50) == (1, 50)
    assert worker_range(4, 8) == (4, 8)
    with dask.config.set({"amondask.cluster.min-workers": 2, "amondask.cluster.max-workers": 9}):
        assert worker_range() == (2, 9)
        assert worker_range(n_workers=3) == (3, 9)
    assert worker_range(0, 5) == (0, 5)
    for bad in [(5, 2), (0, None), (-1, 3)]:
        with pytest.raises(ConfigError, match="min-workers <= max-workers"):
            worker_range(*bad)


def test_cli_cluster_options_become_dask_config():
    parser = build_parser()
    args = parser.parse_args(
        ["run", "q.smi", "-w", "W", "--cluster", "slurm", "--workers", "2", "--max-workers", "50"]
    )
    assert cluster_settings(args) == {
        "amondask.cluster.type": "slurm",
        "amondask.cluster.max-workers": 50,
        "amondask.cluster.min-workers": 2,
    }
    args = parser.parse_args(["label", "-w", "W", "--scheduler-file", "/shared/s.json"])
    assert cluster_settings(args) == {"amondask.cluster.scheduler-file": "/shared/s.json"}
    with dask.config.set(cluster_settings(args)):
        assert cluster_type() == "scheduler-file"
    assert cluster_settings(parser.parse_args(["info", "W"])) == {}
    for clash in (["--scheduler", "tcp://x:1", "--scheduler-file", "f"], ["--cluster", "pbs"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "q.smi", "-w", "W", *clash])


def test_slurm_job_script_from_the_example_site_configuration(tmp_path):
    """The job script that deploy/slurm/jobqueue.yaml gives: its resources, BLAS pinned before
    the site's prologue, one thread per worker process, and this Python."""
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    settings = config.read_file(DEPLOY / "slurm" / "jobqueue.yaml")
    assert settings["amondask.cluster.type"] == "slurm"
    assert settings["jobqueue.slurm.cores"] == settings["jobqueue.slurm.processes"]
    settings["jobqueue.slurm.job-script-prologue"] = ["source /opt/site/env.sh"]
    settings["jobqueue.slurm.queue"] = "compute"
    with dask.config.set(settings):
        assert worker_range() == (1, 50)
        with SLURMCluster(**slurm_job_options()) as cluster:
            script = cluster.job_script()
    lines = script.splitlines()
    assert "#SBATCH -p compute" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert any(line.startswith("#SBATCH --mem=") for line in lines)
    assert "#SBATCH -t 04:00:00" in lines
    pins = [f"export {name}={value}" for name, value in PINNED_THREADS_ENV.items()]
    positions = [lines.index(line) for line in [*pins, "source /opt/site/env.sh"]]
    assert positions == sorted(positions)  # the pins first, then the site's lines
    command = lines[-1]
    assert command.startswith(sys.executable + " -m distributed.cli.dask_worker")
    assert "--nthreads 1" in command and "--nworkers 8" in command


def test_slurm_without_cores_or_memory_says_what_to_configure():
    pytest.importorskip("dask_jobqueue")
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ConfigError, match="jobqueue.slurm.cores and jobqueue.slurm.memory"):
            slurm_cluster()


def test_attached_scheduler_without_workers_fails_after_the_wait(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, dashboard_address=":0") as empty:
        with dask.config.set({"amondask.cluster.wait-timeout-s": 1}):
            with pytest.raises(ClusterError, match="no Dask worker joined the address cluster"):
                with get_client(scheduler=empty.scheduler_address, quiet=True):
                    pass
    with pytest.raises(ClusterError, match="scheduler file .* does not exist"):
        with get_client(scheduler_file=str(tmp_path / "none.json"), quiet=True):
            pass
    with pytest.raises(ConfigError, match="needs a scheduler"):
        with get_client(cluster="address", quiet=True):
            pass


def test_scatter_to_all_tries_again_when_a_worker_leaves():
    """An adaptive cluster may retire a worker while a broadcast scatter targets it (seen on
    SLURM: CommClosedError, an OSError); the scatter is tried again, and a lasting failure
    still raises."""
    from distributed.comm.core import CommClosedError

    from amondask.cluster import scatter_to_all

    class Flaky:
        def __init__(self, failures: int):
            self.failures = failures
            self.calls = []

        def scatter(self, value, broadcast, hash):
            self.calls.append((value, broadcast, hash))
            if len(self.calls) <= self.failures:
                raise CommClosedError("in <TCP (closed) ConnectionPool.scatter>: Stream is closed")
            return "future"

    client = Flaky(failures=2)
    assert scatter_to_all(client, "labeler", hash=False) == "future"
    assert client.calls == [("labeler", True, False)] * 3
    with pytest.raises(CommClosedError):
        scatter_to_all(Flaky(failures=3), "labeler")
