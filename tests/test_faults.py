"""Faults during `amondask run`: each ends in a resume that gives the predictions of an
undisturbed run, or in a clear error with nothing corrupted (`amondask verify` clean).

- a worker process SIGKILLed while labeling and while computing the kernel (distributed reruns
  its tasks; the nanny restarts it);
- the client SIGKILLed (whole process group) at seeded random points of its progress (a stage
  and a depth in it, read from the workspace), then the same command again (two points by
  default, eight with ``-m slow``);
- a full disk (a small tmpfs; root only) and a read-only workspace (a read-only bind mount).

The runs reuse the queries, settings and helpers of tests/test_run_resume.py (one amon per
labeling task and 2 x 2 kernel blocks, so that kills land mid-stage).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_run_resume import (
    MAX_HEAVY_ATOMS,
    QUERIES,
    RUN_TIMEOUT_S,
    Run,
    _assert_same_predictions,
    _committed_rows,
    _environment,
    _kernel_blocks_done,
    _labels_committed,
    _predictions,
)

from amondask.store import Workspace
from amondask.store.verify import verify

#: Seconds a run may take here: generous, since on a loaded 2-core machine a run of the six
#: queries has taken over 300 s (test_run_resume's limit).
FAULT_RUN_TIMEOUT_S = max(RUN_TIMEOUT_S, 1800)


#: Faults injected and runs that resumed identically, for docs/reliability.md.
TALLY = {"faults injected": 0, "resumed identically": 0, "clear errors, verify clean": 0}


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\nfaults: {TALLY}")


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("queries") / "queries.smi"
    path.write_text("".join(f"{smiles} {qid}\n" for smiles, qid in QUERIES))
    return path


@pytest.fixture(scope="module")
def reference(queries, tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("reference") / "ws.zarr"
    Run(queries, workspace, "reference").finish(FAULT_RUN_TIMEOUT_S)
    return workspace


def _assert_clean(workspace: Path) -> None:
    report = verify(Workspace(workspace, mode="r"))
    assert report.ok, report.format()


def _resume_and_compare(queries: Path, workspace: Path, reference: Path) -> None:
    Run(queries, workspace, "resumed").finish(FAULT_RUN_TIMEOUT_S)
    _assert_clean(workspace)
    _assert_same_predictions(_predictions(workspace), _predictions(reference))


# ---- a worker killed ----------------------------------------------------------------------------
def _run_killing_a_worker(queries: Path, workspace: Path, condition, what: str) -> None:
    """The whole pipeline in this process on a 2-worker LocalCluster; one worker is SIGKILLed
    as soon as ``condition(workspace)`` holds."""
    import dask.config
    from distributed import Client, LocalCluster

    from amondask.pipeline.run import run

    settings = {"amondask.label.task-seconds": 0.001, "amondask.kernels.block-size": 2}
    with dask.config.set(settings), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True
    ) as cluster, Client(cluster) as client:  # fmt: skip
        pid = next(iter(client.run(os.getpid).values()))
        killed: list[float] = []
        done = threading.Event()

        def killer() -> None:
            while not done.is_set():
                if condition(workspace):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(time.monotonic())
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            run(
                str(queries), str(workspace), max_heavy_atoms=MAX_HEAVY_ATOMS, client=client,
                progress=False,
            )  # fmt: skip
        finally:
            done.set()
            thread.join()
        assert killed, f"the run ended before {what}"
        TALLY["faults injected"] += 1


def test_worker_killed_while_labeling(queries, reference, tmp_path):
    workspace = tmp_path / "ws.zarr"
    _run_killing_a_worker(queries, workspace, lambda w: _labels_committed(w) >= 2, "labels")
    _assert_clean(workspace)
    _assert_same_predictions(_predictions(workspace), _predictions(reference))
    TALLY["resumed identically"] += 1


@pytest.mark.slow
def test_worker_killed_while_computing_the_kernel(queries, reference, tmp_path):
    workspace = tmp_path / "ws.zarr"
    _run_killing_a_worker(
        queries, workspace, lambda w: _kernel_blocks_done(w) >= 2, "kernel blocks"
    )
    _assert_clean(workspace)
    _assert_same_predictions(_predictions(workspace), _predictions(reference))
    TALLY["resumed identically"] += 1


# ---- the client killed at random moments --------------------------------------------------------
#: Where `amondask run` can be killed: a condition on the workspace's committed state, by name.
#: ``k`` is drawn per kill point, so kills land at different depths of a stage.
KILL_POINTS = {
    "queries read": lambda w, k: _committed_rows(w / "queries") >= 1,
    "extraction staged": lambda w, k: (w / "staging_extract").exists(),
    "amons committed": lambda w, k: _committed_rows(w / "amons") >= 1,
    "labels committed": lambda w, k: _labels_committed(w) >= k,
    "representation started": lambda w, k: (w / "represent").exists(),
    "kernel blocks done": lambda w, k: _kernel_blocks_done(w) >= k,
    "model saved": lambda w, k: (w / "models").exists(),
}


def _kill_points(n: int) -> list[tuple[str, int]]:
    """Seeded kill points: (name in KILL_POINTS, k from 1 to 20). Seed 9 is the first whose
    eight points cover six of the seven stages and whose first two lie in different ones."""
    generator = random.Random(9)
    names = sorted(KILL_POINTS)
    return [(generator.choice(names), generator.randint(1, 20)) for _ in range(n)]


def _killed_at(queries: Path, reference: Path, tmp_path: Path, point: tuple[str, int]) -> None:
    name, k = point
    workspace = tmp_path / "ws.zarr"
    killed = Run(queries, workspace, "killed")
    deadline = time.monotonic() + FAULT_RUN_TIMEOUT_S
    while not KILL_POINTS[name](workspace, k) and killed.process.poll() is None:
        assert time.monotonic() < deadline, f"no {name} after {FAULT_RUN_TIMEOUT_S} s"
        time.sleep(0.02)
    was_killed = killed.process.poll() is None
    if was_killed:
        killed.kill()
        TALLY["faults injected"] += 1
        assert killed.process.returncode == -signal.SIGKILL
    if (workspace / "zarr.json").exists():
        _assert_clean(workspace)  # a killed run leaves staging notes, never problems
    _resume_and_compare(queries, workspace, reference)
    if was_killed:
        TALLY["resumed identically"] += 1


@pytest.mark.parametrize("point", _kill_points(2), ids=str)
def test_client_killed_at_a_random_point(queries, reference, tmp_path, point):
    _killed_at(queries, reference, tmp_path, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", _kill_points(8)[2:], ids=str)
def test_client_killed_at_more_random_points(queries, reference, tmp_path, point):
    _killed_at(queries, reference, tmp_path, point)


# ---- disk full, read-only ----------------------------------------------------------------------
def _mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True, capture_output=True, text=True)


def _try_mount(*arguments: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root")
    try:
        _mount(*arguments)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"mount is not permitted here: {getattr(exc, 'stderr', exc)}")


def _cli(queries: Path, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amondask", "run", str(queries), "--workspace", str(workspace)]
        + ["--max-heavy-atoms", str(MAX_HEAVY_ATOMS), "--workers", "0", "--no-progress"],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=FAULT_RUN_TIMEOUT_S,
    )


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def test_disk_full_then_resume_on_more_space(queries, reference, tmp_path):
    """The workspace's file system fills up mid-run (a 12 MiB tmpfs; the finished workspace
    needs ~100 MiB): a clear error, a clean workspace; with more space the same command
    resumes to the undisturbed predictions."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _try_mount("-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk))
    try:
        workspace = disk / "ws.zarr"
        failed = _cli(queries, workspace)
        TALLY["faults injected"] += 1
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "No space left on device" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
        _assert_clean(workspace)
        TALLY["clear errors, verify clean"] += 1
        _mount("-o", "remount,size=400m", str(disk))
        finished = _cli(queries, workspace)
        assert finished.returncode == 0, finished.stderr
        assert "0 added" in finished.stdout  # resumed: the queries were in already
        _assert_clean(workspace)
        _assert_same_predictions(_predictions(workspace), _predictions(reference))
        TALLY["resumed identically"] += 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_read_only_workspace_is_refused_untouched(queries, reference, tmp_path):
    """`amondask run` on a workspace mounted read-only: a clear error, not a byte changed."""
    view = tmp_path / "readonly.zarr"
    view.mkdir()
    _try_mount("--bind", str(reference), str(view))
    try:
        _mount("-o", "remount,bind,ro", str(view))
        before = _tree_digest(view)
        result = _cli(queries, view)
        TALLY["faults injected"] += 1
        assert result.returncode == 1, result.stdout + result.stderr
        assert "read-only" in result.stderr and "nothing was written" in result.stderr
        assert "Traceback" not in result.stderr
        assert _tree_digest(view) == before
        _assert_clean(view)
        TALLY["clear errors, verify clean"] += 1
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)
