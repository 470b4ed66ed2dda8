"""deploy/kubernetes and deploy/docker without Kubernetes or containers (neither runs here).

The DaskCluster manifest is what the code builds from the configuration and holds what the
dask-kubernetes operator needs; the Job, the claim, the image names agree with it; and the
containers' very commands (compose's scheduler-file scheduler, worker and run, the DaskCluster's
worker and the Job's `amondask run`) run as local processes and predict what an embedded
LocalCluster predicts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import pytest
import yaml
from cluster_reference import TINY_MAX_HEAVY_ATOMS, assert_same_predictions, write_tiny_queries

import amondask
from amondask.cli import build_parser
from amondask.cluster import PINNED_THREADS_ENV, kubernetes_cluster_spec, kubernetes_manifest

pytest.importorskip("dask_kubernetes")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _container(pod_spec: dict) -> dict:
    (container,) = pod_spec["containers"]
    return container


def test_committed_daskcluster_manifest_is_what_the_code_builds():
    assert (KUBERNETES / "daskcluster.yaml").read_text() == kubernetes_manifest(), (
        "regenerate: python3 -m amondask.cluster > deploy/kubernetes/daskcluster.yaml"
    )


def test_daskcluster_spec_has_what_the_operator_needs():
    (cluster,) = _documents(KUBERNETES / "daskcluster.yaml")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["kind"] == "DaskCluster"
    name = cluster["metadata"]["name"]
    assert name == "amondask"
    scheduler, worker = cluster["spec"]["scheduler"], cluster["spec"]["worker"]
    service = scheduler["service"]
    assert service["selector"] == {
        "dask.org/cluster-name": name,
        "dask.org/component": "scheduler",
    }
    assert {p["name"]: p["port"] for p in service["ports"]} == {
        "tcp-comm": 8786,
        "http-dashboard": 8787,
    }
    scheduler_container = _container(scheduler["spec"])
    assert scheduler_container["args"][:2] == ["dask", "scheduler"]
    assert {p["name"] for p in scheduler_container["ports"]} == {"tcp-comm", "http-dashboard"}
    assert worker["replicas"] == 1  # amondask.cluster.min-workers
    worker_container = _container(worker["spec"])
    assert worker_container["args"][:4] == ["dask", "worker", "--nthreads", "1"]
    assert "$(DASK_WORKER_NAME)" in worker_container["args"]
    for container in (scheduler_container, worker_container):
        assert container["image"] == f"amondask:{amondask.__version__}"
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env.items() >= PINNED_THREADS_ENV.items()
        assert container["volumeMounts"] == [{"name": "workspace", "mountPath": "/workspace"}]
    for pod in (scheduler["spec"], worker["spec"]):
        assert pod["volumes"] == [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": "amondask-workspace"}}
        ]


def test_daskcluster_spec_follows_the_configuration():
    settings = {
        "amondask.cluster.kubernetes.image": "registry.example/amondask:7",
        "amondask.cluster.kubernetes.resources": {"limits": {"cpu": "1", "memory": "8Gi"}},
        "amondask.cluster.kubernetes.env": {"AMONDASK_MAX_HEAVY_ATOMS": 5},
        "amondask.cluster.kubernetes.workspace-claim": None,
        "amondask.cluster.min-workers": 4,
    }
    with dask.config.set(settings):
        spec = kubernetes_cluster_spec(name="big")
    assert spec["metadata"]["name"] == "big"
    assert spec["spec"]["worker"]["replicas"] == 4
    for pod in (spec["spec"]["scheduler"]["spec"], spec["spec"]["worker"]["spec"]):
        container = _container(pod)
        assert container["image"] == "registry.example/amondask:7"
        assert container["resources"] == {"limits": {"cpu": "1", "memory": "8Gi"}}
        env = {item["name"]: item["value"] for item in container["env"]}
        assert env["AMONDASK_MAX_HEAVY_ATOMS"] == "5" and env["OMP_NUM_THREADS"] == "1"
        assert "volumes" not in pod and "volumeMounts" not in container
    # a YAML round trip keeps the spec (no anchors or Python objects in it)
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec


def test_job_claim_and_images_agree_with_the_daskcluster():
    (cluster,) = _documents(KUBERNETES / "daskcluster.yaml")
    (job,) = _documents(KUBERNETES / "run-job.yaml")
    (claim,) = _documents(KUBERNETES / "workspace-pvc.yaml")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    container = _container(pod)
    env = {item["name"]: item["value"] for item in container["env"]}
    # the operator's scheduler Service is <cluster name>-scheduler, port tcp-comm
    service_port = cluster["spec"]["scheduler"]["service"]["ports"][0]["port"]
    name = cluster["metadata"]["name"]
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{name}-scheduler:{service_port}"
    args = _expand(container["args"], env)
    assert args[:2] == ["amondask", "run"]
    parsed = build_parser().parse_args(args[1:])
    assert parsed.scheduler == env["DASK_SCHEDULER_ADDRESS"]
    assert parsed.workspace.startswith(container["volumeMounts"][0]["mountPath"] + "/")
    claim_name = claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim_name
    cluster_pod = cluster["spec"]["worker"]["spec"]
    assert cluster_pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim_name
    image = f"amondask:{amondask.__version__}"
    assert container["image"] == image
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    assert {service["image"] for service in compose["services"].values()} == {image}
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert f"-t {image} ." in dockerfile
    assert "COPY amondask ./amondask" in dockerfile and "pip install" in dockerfile
    assert compose["services"]["scheduler"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args from the container's env."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg) for arg in args]


class _Processes:
    """Local stand-ins for containers; every one is stopped at the end, however the test ends."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            [_executable(argv[0]), *argv[1:]],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def _executable(name: str) -> str:
    """The command of this Python's environment (the image has one environment too)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def _run_to_completion(argv: list[str]) -> None:
    """Run a container's command here (BLAS pinned as in the image) and check it succeeded."""
    done = subprocess.run(
        [_executable(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **PINNED_THREADS_ENV},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _container_paths(argv: list[str], mapping: dict[str, Path]) -> list[str]:
    mapped = []
    for arg in argv:
        for inside, outside in mapping.items():
            if arg == inside or arg.startswith(inside + "/"):
                arg = str(outside) + arg[len(inside) :]
        mapped.append(arg)
    return mapped


def test_container_commands_as_local_processes_match_local_cluster(tmp_path):
    """compose's scheduler (scheduler file) and one compose worker, plus one worker started with
    the DaskCluster's worker args and env; then compose's `run` and the Job's `amondask run`,
    each with the tiny queries in place of the bundled example and N_I = 2 appended."""
    from distributed import Client

    shared = tmp_path / "shared"
    workspace = tmp_path / "workspace"
    shared.mkdir()
    workspace.mkdir()
    queries = write_tiny_queries(tmp_path)
    paths = {
        "/shared": shared,
        "/workspace": workspace,
        "/opt/amondask/examples/queries.smi": queries,
    }
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())["services"]
    (cluster,) = _documents(KUBERNETES / "daskcluster.yaml")
    (job,) = _documents(KUBERNETES / "run-job.yaml")
    pinned = dict(PINNED_THREADS_ENV)
    processes = _Processes(tmp_path)
    try:
        processes.start("scheduler", _container_paths(compose["scheduler"]["command"], paths), {})
        scheduler_file = shared / "scheduler.json"
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the scheduler wrote no scheduler file"
            time.sleep(0.5)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.start("worker", _container_paths(compose["worker"]["command"], paths), pinned)
        worker = _container(cluster["spec"]["worker"]["spec"])
        worker_env = {item["name"]: item["value"] for item in worker["env"]}
        # what the operator adds to every worker pod
        worker_env |= {"DASK_SCHEDULER_ADDRESS": address, "DASK_WORKER_NAME": "k8s-worker-0"}
        processes.start("k8s-worker", _expand(worker["args"], worker_env), worker_env)
        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=180)
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            assert "k8s-worker-0" in names
            threads = client.run(lambda: os.environ.get("OPENBLAS_NUM_THREADS"))
            assert set(threads.values()) == {"1"}

        override = ["--max-heavy-atoms", str(TINY_MAX_HEAVY_ATOMS)]
        run_compose = _container_paths(compose["run"]["command"], paths) + override
        _run_to_completion(run_compose)
        assert_same_predictions(shared / "example.zarr")

        job_container = _container(job["spec"]["template"]["spec"])
        job_env = {item["name"]: item["value"] for item in job_container["env"]}
        job_env["DASK_SCHEDULER_ADDRESS"] = address  # the Service's address, here
        run_job = _container_paths(_expand(job_container["args"], job_env), paths) + override
        _run_to_completion(run_job)
        assert_same_predictions(workspace / "example.zarr")
    finally:
        processes.stop()
