"""run_tasks: results in order on a real cluster, and a clear error when the cluster loses
every worker instead of a stage that waits forever."""

from __future__ import annotations

import threading
import time

import dask
import pytest
from distributed import Client, LocalCluster

from amondask.errors import ClusterError
from amondask.pipeline.tasks import SERIAL, run_tasks


def _slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


@pytest.fixture
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def test_results_come_back_in_argument_order_on_worker_processes(cluster):
    arguments = [(x, 0.05 * (5 - x % 5)) for x in range(12)]  # later tasks finish first
    with Client(cluster) as client:
        results = run_tasks(client, _slow_square, arguments, description="squares", progress=False)
    assert results == [x * x for x in range(12)]
    assert run_tasks(SERIAL, _slow_square, arguments, description="squares", progress=False) == (
        results
    )


def test_a_cluster_that_loses_every_worker_fails_with_what_to_do(cluster):
    with Client(cluster) as client:
        client.wait_for_workers(2)
        threading.Timer(1.0, lambda: cluster.scale(0)).start()
        start = time.monotonic()
        with (
            dask.config.set({"amondask.cluster.lost-workers-timeout-s": 2}),
            pytest.raises(ClusterError, match="no workers for 2 s.*run the same command again"),
        ):
            run_tasks(
                client,
                _slow_square,
                [(x, 0.5) for x in range(40)],
                description="squares",
                progress=False,
            )
        assert time.monotonic() - start < 30


def test_with_the_timeout_off_a_short_gap_without_workers_is_waited_out(cluster):
    with Client(cluster) as client:
        client.wait_for_workers(2)

        def gap() -> None:
            cluster.scale(0)
            time.sleep(2.0)
            cluster.scale(1)

        threading.Timer(0.5, gap).start()
        with dask.config.set({"amondask.cluster.lost-workers-timeout-s": 0}):
            results = run_tasks(
                client,
                _slow_square,
                [(x, 0.2) for x in range(10)],
                description="squares",
                progress=False,
            )
    assert results == [x * x for x in range(10)]
