"""The workspace lock: one writer at a time, the second fails (or waits) naming the holder, and a
dead holder never blocks. Holders are real processes (subprocesses), not threads, since the lock
is per process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask.config
import pytest

from amondask.store import Workspace
from amondask.store.lock import WorkspaceLockedError, holder_info, lock_path, workspace_lock

HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from amondask.store import Workspace
    from amondask.store.lock import workspace_lock

    workspace = Workspace(sys.argv[1])
    with workspace_lock(workspace, command="holder-under-test"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    print("released", flush=True)
    """
)


def _hold(workspace: Path, seconds: float) -> subprocess.Popen:
    """A process that holds the lock of ``workspace`` for ``seconds``; returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(workspace), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "locked"
    return process


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws.zarr")


def test_second_writer_fails_naming_the_holder(workspace):
    holder = _hold(Path(workspace.spec), 60)
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceLockedError) as info, workspace_lock(workspace, timeout_s=0):
            pass
        assert time.monotonic() - started < 5  # fails at once, no waiting
        message = str(info.value)
        assert f"pid {holder.pid}" in message
        assert socket.gethostname() in message
        assert "'holder-under-test'" in message and "since 20" in message
        assert "lock-timeout-s" in message  # says how to wait instead
    finally:
        holder.kill()
        holder.wait()


def test_second_writer_waits_with_a_timeout(workspace):
    holder = _hold(Path(workspace.spec), 1.5)
    try:
        started = time.monotonic()
        with workspace_lock(workspace, timeout_s=60) as record:
            waited = time.monotonic() - started
            assert record["pid"] == os.getpid()
            assert holder_info(lock_path(workspace))["pid"] == os.getpid()
        assert 0.5 < waited < 30, waited
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()


def test_timeout_expires_while_the_holder_keeps_the_lock(workspace):
    holder = _hold(Path(workspace.spec), 60)
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceLockedError, match=r"waited 1 s"):
            with workspace_lock(workspace, timeout_s=1):
                pass
        assert 0.9 < time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_lock(workspace):
    holder = _hold(Path(workspace.spec), 60)
    path = lock_path(workspace)
    assert holder_info(path)["pid"] == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    # The file still names the dead holder, yet it does not block anyone.
    assert holder_info(path)["pid"] == holder.pid
    with workspace_lock(workspace, timeout_s=0) as record:
        assert record["pid"] == os.getpid()
    assert holder_info(path) == {}  # released: it names nobody


def test_the_lock_is_reentrant_in_one_process(workspace):
    with workspace_lock(workspace, timeout_s=0) as outer:
        with workspace_lock(workspace, timeout_s=0) as inner:
            assert inner == outer
        assert holder_info(lock_path(workspace))["pid"] == os.getpid()  # still held
    with workspace_lock(workspace, timeout_s=0):
        pass


def test_configured_timeout_and_switch(workspace):
    holder = _hold(Path(workspace.spec), 60)
    try:
        with dask.config.set({"amondask.workspace.lock-timeout-s": 0.5}):
            with pytest.raises(WorkspaceLockedError, match="waited 0.5 s"):
                with workspace_lock(workspace):
                    pass
        with dask.config.set({"amondask.workspace.lock": False}):
            with workspace_lock(workspace) as record:
                assert record is None  # unlocked on request
    finally:
        holder.kill()
        holder.wait()


def test_urls_and_memory_stores_are_not_locked():
    import zarr

    assert lock_path(Workspace(zarr.storage.MemoryStore())) is None
    assert lock_path("s3://bucket/ws.zarr") is None
    assert lock_path("memory://ws.zarr") is None
    with pytest.warns(UserWarning, match="not locked"):
        with workspace_lock("s3://bucket/ws.zarr") as record:
            assert record is None
    with workspace_lock(Workspace("memory://lock-test.zarr")) as record:
        assert record is None  # in one process: nothing to lock, nothing to warn about


def test_the_lock_file_is_beside_the_workspace_not_in_it(workspace):
    with workspace_lock(workspace):
        path = lock_path(workspace)
        assert path.exists() and path.parent == Path(workspace.spec).resolve().parent
    assert not any(p.name.endswith(".lock") for p in Path(workspace.spec).iterdir())


def _run(queries: Path, workspace: Path, name: str) -> subprocess.Popen:
    log = open(workspace.parent / f"{name}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "amondask", "run", str(queries), "--workspace", str(workspace)]
        + ["--max-heavy-atoms", "2", "--workers", "0", "--no-progress"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )


def test_two_runs_on_one_workspace(tmp_path):
    """Two `amondask run` on one workspace: the second fails with the holder's name and
    changes nothing; the first finishes and its workspace is clean."""
    from amondask.store.verify import verify_workspace

    queries = tmp_path / "q.smi"
    queries.write_text("CCO ethanol\nCC(=O)C acetone\nCCN ethylamine\n")
    location = tmp_path / "ws.zarr"
    first = _run(queries, location, "first")
    deadline = time.monotonic() + 120
    while not holder_info(lock_path(location)):
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _run(queries, location, "second")
    assert second.wait(timeout=120) == 1
    log = (tmp_path / "second.log").read_text()
    assert f"is in use by pid {first.pid}" in log and "amondask run" in log, log
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
    assert "predicted 3 queries" in (tmp_path / "first.log").read_text()
    assert verify_workspace(Workspace(location, mode="r")) == []


def test_appending_queries_outside_a_run_takes_the_lock(workspace):
    """`amondask read` (and the files `amondask run` reads first) append under the lock."""
    from amondask.store.ingest import read_into_workspace

    holder = _hold(Path(workspace.spec), 60)
    try:
        with pytest.raises(WorkspaceLockedError, match=f"pid {holder.pid}"):
            read_into_workspace(["CCO"], workspace, progress=False)
        assert not workspace.has("queries") or workspace.queries.n_rows == 0
    finally:
        holder.kill()
        holder.wait()
    read_into_workspace(["CCO"], workspace, progress=False)
    assert workspace.queries.n_rows == 1
