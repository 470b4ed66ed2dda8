"""Which Dask cluster a stage runs on.

One entry point, :func:`get_client`, for five kinds of cluster (``amondask.cluster.type`` in the
dask config, ``--cluster`` on the command line):

``local``
    An embedded :class:`distributed.LocalCluster` (the default): one single-threaded worker
    process per core, BLAS/OpenMP pinned to one thread (oversubscription collapses throughput).
``address`` / ``scheduler-file``
    Attach to a running scheduler by address (``tcp://host:8786``) or by the JSON file that
    ``dask scheduler --scheduler-file`` writes (the SLURM batch-script pattern).
``slurm``
    A dask-jobqueue ``SLURMCluster``: workers are SLURM jobs, scaled adaptively between
    ``min-workers`` and ``max-workers``. Job options (cores, memory, queue, account, walltime,
    interface, ...) come from ``jobqueue.slurm.*`` in the dask config, so a site admin ships one
    YAML file (deploy/slurm/jobqueue.yaml); every job pins BLAS threads and runs this Python.
``kubernetes``
    A dask-kubernetes operator ``KubeCluster`` from the ``DaskCluster`` spec that
    :func:`kubernetes_cluster_spec` builds from ``amondask.cluster.kubernetes.*``, scaled
    adaptively the same way.

Every keyword defaults to None, meaning "the configured value" (``amondask.cluster.*``).
TLS is the dask config's: with ``distributed.comm.require-encryption`` and the
``distributed.comm.tls.*`` certificates set, the LocalCluster, attached clients and the
SLURM/Kubernetes schedulers talk ``tls://`` (deploy/tls/README.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config

from amondask import config
from amondask.errors import ClusterError, ConfigError

PINNED_THREADS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
CLUSTER_TYPES = ("local", "address", "scheduler-file", "slurm", "kubernetes")
_STARTED_TYPES = ("local", "slurm", "kubernetes")


def cluster_type(
    cluster: str | None = None, *, scheduler: str | None = None, scheduler_file: str | None = None
) -> str:
    """The kind of cluster to use, one of :data:`CLUSTER_TYPES`.

    An explicit ``cluster`` wins; else an explicit ``scheduler_file`` or ``scheduler`` (an
    address, or the path of an existing scheduler file) says which; else the configured
    ``cluster.type``; else the configured scheduler file or address; else ``local``.
    """
    if cluster is None:
        if scheduler_file is not None:
            return "scheduler-file"
        if scheduler is not None:
            return "scheduler-file" if Path(str(scheduler)).is_file() else "address"
        cluster = config.get("cluster.type")
    if cluster is None:
        if config.get("cluster.scheduler-file"):
            return "scheduler-file"
        scheduler = config.get("cluster.scheduler")
        if scheduler:
            return "scheduler-file" if Path(str(scheduler)).is_file() else "address"
        return "local"
    if cluster not in CLUSTER_TYPES:
        raise ConfigError(
            f"unknown cluster type {cluster!r}; choose one of {', '.join(CLUSTER_TYPES)}"
        )
    return cluster


def worker_range(n_workers: int | None = None, max_workers: int | None = None) -> tuple[int, int]:
    """(minimum, maximum) worker processes of an adaptive SLURM or Kubernetes cluster.

    minimum: ``n_workers``, else ``cluster.min-workers``; maximum: ``max_workers``, else
    ``cluster.max-workers``, else the minimum (a fixed-size cluster).
    """
    minimum = int(config.get("cluster.min-workers", n_workers))
    maximum = config.get("cluster.max-workers", max_workers)
    maximum = minimum if maximum is None else int(maximum)
    if minimum < 0 or maximum < max(minimum, 1):
        raise ConfigError(
            f"an adaptive cluster needs 0 <= min-workers <= max-workers and max-workers >= 1, "
            f"not min {minimum}, max {maximum}; check --workers/--max-workers or "
            "amondask.cluster.min-workers/max-workers"
        )
    return minimum, maximum


@contextlib.contextmanager
def get_client(
    client: object | None = None,
    *,
    cluster: str | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    n_workers: int | None = None,
    max_workers: int | None = None,
    quiet: bool = False,
) -> Iterator[object]:
    """Yield a distributed Client on the cluster that the arguments and configuration name.

    ``client``: a Client, or :data:`amondask.pipeline.tasks.SERIAL` (run in this process, no
    Dask), yielded as it is. Otherwise ``cluster`` (see :func:`cluster_type`) decides: attach to
    ``scheduler`` / ``scheduler_file``, or start a LocalCluster of ``n_workers`` processes, or a
    SLURM/Kubernetes cluster scaling between ``n_workers`` (or ``min-workers``) and
    ``max_workers`` workers. Attached and remote clusters are waited for until one worker has
    joined (``cluster.wait-timeout-s``). Clusters started here are closed on exit (their SLURM
    jobs cancelled, their pods deleted); given clients and attached clusters are not.

    >>> with get_client(cluster="slurm", max_workers=50) as client:  # doctest: +SKIP
    ...     amondask.run("queries.smi", "run.zarr", client=client)
    """
    from distributed import Client

    if client is not None:  # a Client, or SERIAL
        yield client
        return
    kind = cluster_type(cluster, scheduler=scheduler, scheduler_file=scheduler_file)
    if kind in _STARTED_TYPES:
        with _started_cluster(kind, n_workers, max_workers) as started:
            own = Client(started)
            try:
                if kind != "local":
                    _wait_for_first_worker(own, kind)
                _announce(own, quiet)
                yield own
            finally:
                own.close()
        return
    attached = _attach(kind, scheduler, scheduler_file)
    try:
        _wait_for_first_worker(attached, kind)
        _announce(attached, quiet)
        yield attached
    finally:
        attached.close()


def _attach(kind: str, scheduler: str | None, scheduler_file: str | None) -> Any:
    from distributed import Client

    if kind == "scheduler-file":
        path = scheduler_file or config.get("cluster.scheduler-file")
        if path is None and scheduler is not None and Path(str(scheduler)).is_file():
            path = scheduler
        path = path or config.get("cluster.scheduler")
        if not path:
            raise ConfigError(
                "cluster type scheduler-file needs a file: pass --scheduler-file FILE or set "
                "amondask.cluster.scheduler-file"
            )
        if not Path(str(path)).is_file():
            raise ClusterError(
                f"scheduler file {path} does not exist; start the scheduler first "
                f"(dask scheduler --scheduler-file {path}) or check the path"
            )
        return Client(scheduler_file=str(path))
    address = config.get("cluster.scheduler", scheduler)
    if not address:
        raise ConfigError(
            "cluster type address needs a scheduler: pass --scheduler tcp://HOST:8786 or set "
            "amondask.cluster.scheduler"
        )
    return Client(str(address))


@contextlib.contextmanager
def _started_cluster(kind: str, n_workers: int | None, max_workers: int | None) -> Iterator[Any]:
    if kind == "local":
        cluster = local_cluster(n_workers)
    elif kind == "slurm":
        cluster = slurm_cluster(n_workers, max_workers)
    else:
        cluster = kubernetes_cluster(n_workers, max_workers)
    try:
        yield cluster
    finally:
        cluster.close()


def local_cluster(n_workers: int | None = None) -> Any:
    """A LocalCluster of ``n_workers`` (None: ``cluster.n-workers``, else one per core)
    single-threaded worker processes with BLAS/OpenMP pinned to one thread."""
    from distributed import LocalCluster

    n_workers = int(config.get("cluster.n-workers", n_workers) or os.cpu_count() or 1)
    if n_workers < 1:
        raise ConfigError(
            f"a LocalCluster needs at least 1 worker, not {n_workers} (None: one per core; "
            "pass SERIAL to run in this process without Dask)"
        )
    # Security (TLS) and the protocol come from the dask config (distributed.comm.*).
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=config.get("cluster.dashboard-address"),
        env=PINNED_THREADS_ENV,
    )


def pinned_threads_prologue() -> list[str]:
    """Shell lines that pin BLAS/OpenMP threads, for the top of a worker job script."""
    return [f"export {name}={value}" for name, value in PINNED_THREADS_ENV.items()]


def slurm_cluster(
    n_workers: int | None = None, max_workers: int | None = None, **job_options: Any
) -> Any:
    """A dask-jobqueue SLURMCluster, scaling adaptively within :func:`worker_range`.

    ``job_options`` are SLURMCluster keywords; those not given come from ``jobqueue.slurm.*``
    (cores, memory, processes, queue, account, walltime, interface, log-directory, ...). The
    configured ``job-script-prologue`` runs after the lines that pin BLAS threads; workers run
    this process's Python (``python``: ``sys.executable`` unless configured).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ConfigError(
            "cluster type slurm needs dask-jobqueue: pip install 'amondask[slurm]'"
        ) from exc
    minimum, maximum = worker_range(n_workers, max_workers)
    try:
        cluster = SLURMCluster(**slurm_job_options(**job_options))
    except ValueError as exc:  # e.g. no cores/memory configured
        raise ConfigError(
            f"SLURMCluster: {exc}; set jobqueue.slurm.cores and jobqueue.slurm.memory (and "
            "queue/account as your site needs) in the dask config, see deploy/slurm/jobqueue.yaml"
        ) from exc
    cluster.adapt(minimum=minimum, maximum=maximum)
    return cluster


def slurm_job_options(**job_options: Any) -> dict[str, Any]:
    """SLURMCluster keywords: ``job_options`` with BLAS pinned first in the job script's
    prologue (before ``jobqueue.slurm.job-script-prologue``) and workers on this Python unless
    ``jobqueue.slurm.python`` says otherwise; the rest comes from ``jobqueue.slurm.*``."""
    options = dict(job_options)
    prologue = options.pop("job_script_prologue", None)
    if prologue is None:
        prologue = dask.config.get("jobqueue.slurm.job-script-prologue", None) or []
    options["job_script_prologue"] = [*pinned_threads_prologue(), *prologue]
    if not dask.config.get("jobqueue.slurm.python", None):
        options.setdefault("python", sys.executable)
    return options


def kubernetes_cluster_spec(
    *,
    name: str | None = None,
    image: str | None = None,
    n_workers: int | None = None,
    resources: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``DaskCluster`` resource (a dict, the dask-kubernetes operator's schema) for amondask.

    Built with dask-kubernetes' ``make_cluster_spec`` from ``amondask.cluster.kubernetes.*``
    (name, image, resources, env) and ``cluster.min-workers``; then the containers run the
    ``dask scheduler`` / ``dask worker --nthreads 1`` CLI with BLAS pinned, and, when
    ``workspace-claim`` is set, mount that PersistentVolumeClaim at ``workspace-mount`` (the
    workspace directory; with an object-store URL as workspace, set it to null).
    """
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError as exc:
        raise ConfigError(
            "cluster type kubernetes needs dask-kubernetes: pip install 'amondask[kubernetes]'"
        ) from exc
    settings = config.get("cluster.kubernetes")
    env = {**PINNED_THREADS_ENV, **(settings.get("env") or {}), **(env or {})}
    spec = make_cluster_spec(
        name=name or settings["name"],
        image=image or settings["image"],
        n_workers=n_workers if n_workers is not None else worker_range()[0],
        resources=resources if resources is not None else settings.get("resources"),
        env={key: str(value) for key, value in env.items()},
        worker_command=["dask", "worker", "--nthreads", "1"],
    )
    scheduler_pod = spec["spec"]["scheduler"]["spec"]
    worker_pod = spec["spec"]["worker"]["spec"]
    scheduler_pod["containers"][0]["args"] = ["dask", "scheduler", "--host", "0.0.0.0"]
    claim = settings.get("workspace-claim")
    if claim:
        for pod in (scheduler_pod, worker_pod):
            pod["volumes"] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": claim}}]
            pod["containers"][0]["volumeMounts"] = [
                {"name": "workspace", "mountPath": settings["workspace-mount"]}
            ]
    return _plain(spec)


def _plain(value: Any) -> Any:
    """A deep copy of nested dicts and lists (no shared objects, so YAML has no anchors)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


_MANIFEST_HEADER = """\
# The DaskCluster resource for the dask-kubernetes operator, as amondask builds it from its
# configuration (amondask.cluster.kubernetes_cluster_spec, amondask.cluster.kubernetes.* and
# min-workers). Made by `python3 -m amondask.cluster > deploy/kubernetes/daskcluster.yaml`;
# tests/test_deploy.py checks that the committed file is what the code builds. Scale it by hand
# (kubectl scale daskworkergroup amondask-default --replicas 8), or let
# `amondask run --cluster kubernetes --max-workers 50` create its own, adaptive, from the config.
"""


def kubernetes_manifest(**spec_options: Any) -> str:
    """:func:`kubernetes_cluster_spec` as commented YAML, for ``kubectl apply -f``."""
    import yaml

    body = yaml.safe_dump(kubernetes_cluster_spec(**spec_options), sort_keys=False)
    return _MANIFEST_HEADER + body


def kubernetes_cluster(n_workers: int | None = None, max_workers: int | None = None) -> Any:
    """A dask-kubernetes operator KubeCluster from :func:`kubernetes_cluster_spec`, scaling
    adaptively within :func:`worker_range` (needs the operator installed in the cluster)."""
    minimum, maximum = worker_range(n_workers, max_workers)
    spec = kubernetes_cluster_spec(n_workers=minimum)
    from dask_kubernetes.operator import KubeCluster

    cluster = KubeCluster(
        custom_cluster_spec=spec, namespace=config.get("cluster.kubernetes")["namespace"]
    )
    cluster.adapt(minimum=minimum, maximum=maximum)
    return cluster


def scatter_to_all(client: Any, value: Any, *, hash: bool = True, tries: int = 3) -> Any:
    """``client.scatter(value, broadcast=True)``, tried again when a worker goes away during
    it: an adaptive SLURM or Kubernetes cluster retires idle workers at any moment, and a
    broadcast that targeted one fails with CommClosedError (an OSError); the next try sends to
    the workers still there. Returns the future."""
    for attempt in range(tries):
        try:
            return client.scatter(value, broadcast=True, hash=hash)
        except OSError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _wait_for_first_worker(client: Any, kind: str) -> None:
    timeout = float(config.get("cluster.wait-timeout-s"))
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as exc:
        hint = {
            "slurm": "see `squeue --me` (a job waiting in the queue?) and the job logs",
            "kubernetes": "see `kubectl get pods` (an image pull, a pending pod?)",
        }.get(kind, "start workers (dask worker ...) against this scheduler")
        raise ClusterError(
            f"no Dask worker joined the {kind} cluster within {timeout:g} s; {hint}; or raise "
            "amondask.cluster.wait-timeout-s"
        ) from exc


def _announce(client: object, quiet: bool) -> None:
    if quiet:
        return
    link = getattr(client, "dashboard_link", None)
    workers = len(client.scheduler_info().get("workers", {}))  # type: ignore[attr-defined]
    print(f"dask: {workers} workers, dashboard {link}", file=sys.stderr)


if __name__ == "__main__":  # python3 -m amondask.cluster > deploy/kubernetes/daskcluster.yaml
    sys.stdout.write(kubernetes_manifest())
