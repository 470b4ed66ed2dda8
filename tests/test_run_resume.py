"""`amondask run` killed mid-run (SIGKILL to its process group, dask workers included) and run
again gives the predictions of an uninterrupted run; a repeated run on a finished workspace
computes nothing new.

Every run is a real subprocess on an embedded LocalCluster of 2 worker processes. The kill point
is chosen from the workspace itself: the test polls the committed row counts (the ``n_rows``
attribute of a table, written after its data) and the kernel's per-block done-markers, and kills
as soon as a stage has committed part of its work. To leave seconds, not milliseconds, between
that moment and the end of the stage, the runs use one amon per labeling task
(``AMONDASK_LABEL__TASK_SECONDS``) and 2 x 2 kernel blocks (``AMONDASK_KERNELS__BLOCK_SIZE``);
both runs compared use the same settings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amondask.pipeline.train import predictions_frame
from amondask.store import Workspace

# Six queries of 4-5 heavy atoms: at N_I = 4 they have 23 distinct amons (27 conformers with
# the authors' conformer criterion); labeling them one per task takes ~5 s on 2 workers, the
# 27 x 27 kernel in 2 x 2 blocks ~2 s. The counts below come from the reference run.
QUERIES = [
    ("CCCCO", "butanol"),
    ("CC(=O)OC", "methyl_acetate"),
    ("CCOCC", "diethyl_ether"),
    ("CC(C)CN", "isobutylamine"),
    ("C=CC(=O)C", "butenone"),
    ("CCC(C)O", "butan2ol"),
]
MAX_HEAVY_ATOMS = 4
RUN_TIMEOUT_S = 300  # generous: the machine has 2 cores shared with other jobs
# Labels are bit-reproducible (tblite on one thread, same input geometry, same BFGS path: a
# resumed run's labels and predictions equal an uninterrupted run's to the last bit here), so
# the only differences two runs could show are summation orders (e.g. another amon order after
# a resumed extraction); 1e-7 hartree (6e-5 kcal/mol) leaves room for those and nothing else.
ENERGY_TOLERANCE_HARTREE = 1e-7


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AMONDASK_LABEL__TASK_SECONDS": "0.001",  # one amon per labeling task
            "AMONDASK_KERNELS__BLOCK_SIZE": "2",  # many small kernel blocks
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    return env


def _command(queries: Path, workspace: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "amondask",
        "run",
        str(queries),
        "--workspace",
        str(workspace),
        "--max-heavy-atoms",
        str(MAX_HEAVY_ATOMS),
        "--workers",
        "2",
        "--no-progress",
    ]


class Run:
    """``amondask run`` as a subprocess in its own session (process group), output in files."""

    def __init__(self, queries: Path, workspace: Path, name: str):
        self.stdout_path = workspace.parent / f"{name}.out"
        self.stderr_path = workspace.parent / f"{name}.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                _command(queries, workspace),
                stdout=out,
                stderr=err,
                cwd=workspace.parent,
                env=_environment(),
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> str:
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        assert code == 0, f"amondask run exited {code}\n{self.stdout}\n{self.stderr}"
        return self.stdout

    def kill(self) -> None:
        """SIGKILL the whole process group (client, scheduler, nannies, workers) and reap."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=60)
        _wait_for_group_to_die(self.process.pid)

    def wait_until(self, condition, what: str) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"amondask run ended (exit {self.process.returncode}) before {what}\n"
                    f"{self.stdout}\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}\n{self.stdout}")
            time.sleep(0.02)


def _wait_for_group_to_die(pgid: int, timeout_s: float = 30.0) -> None:
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not alive:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {alive} of the killed run are still alive")
        time.sleep(0.1)


def _attrs(path: Path) -> dict:
    """Attributes of a zarr group/array from its zarr.json ({} while absent or being written)."""
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _committed_rows(path: Path) -> int:
    return int(_attrs(path).get("n_rows", 0))


def _label_tables(workspace: Path) -> list[Path]:
    return sorted((workspace / "labels").glob("*/amons"))


def _labels_committed(workspace: Path) -> int:
    return sum(_committed_rows(table) for table in _label_tables(workspace))


def _conformers(workspace: Path) -> int:
    return _committed_rows(workspace / "amons" / "conformers")


def _kernel_blocks_done(workspace: Path, cols: str = "amons") -> int:
    """Done-markers written so far (one uncompressed chunk file per finished block)."""
    markers = workspace / "kernels" / f"amons-{cols}" / "K_done" / "c"
    return sum(1 for path in markers.rglob("*") if path.is_file()) if markers.exists() else 0


def _row_counts(workspace: Path) -> dict[str, int]:
    """Committed rows of every table of the workspace (any group with an n_rows attribute)."""
    counts = {}
    for meta in workspace.rglob("zarr.json"):
        attrs = _attrs(meta.parent)
        if "n_rows" in attrs:
            counts[str(meta.parent.relative_to(workspace))] = int(attrs["n_rows"])
    return counts


def _stored_state(workspace: Path) -> dict[str, object]:
    """Per file of the computed stages: the chunk files' modification times (a chunk written
    again, even with equal bytes, changes it) and the metadata files' parsed content (stages
    may rewrite unchanged attributes)."""
    state: dict[str, object] = {}
    for group in ("amons", "query_amons", "labels", "represent", "kernels"):
        for path in (workspace / group).rglob("*"):
            if not path.is_file():
                continue
            key = str(path.relative_to(workspace))
            if path.name == "zarr.json":
                state[key] = json.loads(path.read_text())
            else:
                state[key] = path.stat().st_mtime_ns
    return state


def _predictions(workspace: Path) -> pd.DataFrame:
    return predictions_frame(Workspace(workspace, mode="r"))


def _labels_by_conformer(workspace: Path) -> dict[tuple[str, str], float]:
    """Amon label energies (hartree) by (amon key, conformer id): independent of the order in
    which the labeling tasks committed."""
    from amondask.store.labels import label_levels, labels_frame

    opened = Workspace(workspace, mode="r")
    (level,) = label_levels(opened).values()
    conformers = opened.amons.conformers
    names = list(zip(conformers.read_text("key"), conformers.read_text("id"), strict=True))
    frame = labels_frame(opened, level)
    return {
        names[row]: energy
        for row, energy in zip(frame["source_row"], frame["energy_hartree"], strict=True)
    }


def _assert_same_predictions(resumed: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert resumed["id"].tolist() == reference["id"].tolist() == [qid for _, qid in QUERIES]
    assert resumed["covered"].tolist() == reference["covered"].tolist()
    assert resumed["n_amons"].tolist() == reference["n_amons"].tolist()
    np.testing.assert_allclose(
        resumed["energy_hartree"], reference["energy_hartree"], rtol=0,
        atol=ENERGY_TOLERANCE_HARTREE,
    )  # fmt: skip
    np.testing.assert_allclose(
        resumed["uncertainty_hartree"], reference["uncertainty_hartree"], rtol=0,
        atol=ENERGY_TOLERANCE_HARTREE,
    )  # fmt: skip


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("queries") / "queries.smi"
    path.write_text("".join(f"{smiles} {qid}\n" for smiles, qid in QUERIES))
    return path


@pytest.fixture(scope="module")
def reference(queries, tmp_path_factory) -> tuple[Path, str]:
    """A workspace of one uninterrupted run, and that run's output."""
    workspace = tmp_path_factory.mktemp("reference") / "ws.zarr"
    out = Run(queries, workspace, "reference").finish()
    assert f"predicted {len(QUERIES)} queries" in out
    return workspace, out


def test_rerun_on_finished_workspace_computes_nothing(queries, reference):
    workspace, first_output = reference
    assert "labeled 0 amons" not in first_output  # the first run did label
    before_rows = _row_counts(workspace)
    before = _predictions(workspace)
    stored = _stored_state(workspace)
    assert any(path.startswith("kernels/") for path in stored)

    out = Run(queries, workspace, "rerun").finish()

    assert f"0 added, {len(QUERIES)} already in the workspace" in out
    assert "extracted 0 queries in 0 partitions: 0 new amons, 0 new conformers" in out
    n_conformers = _conformers(workspace)
    assert n_conformers > 20
    assert "labeled 0 amons" in out and f"{n_conformers} were labeled before" in out
    assert "represented 0 new amons rows in 0 tasks" in out
    assert "represented 0 new queries rows in 0 tasks" in out
    assert _row_counts(workspace) == before_rows
    # No data of the amons, labels, representations or kernels was written again.
    after_state = _stored_state(workspace)
    changed = sorted(path for path in stored if after_state.get(path) != stored[path])
    assert not changed, changed
    after = _predictions(workspace)
    _assert_same_predictions(after, before)
    np.testing.assert_array_equal(after["energy_hartree"], before["energy_hartree"])


def test_killed_while_labeling_resumes_to_the_same_predictions(queries, reference, tmp_path):
    workspace = tmp_path / "ws.zarr"
    killed = Run(queries, workspace, "killed")
    killed.wait_until(lambda: _labels_committed(workspace) >= 2, "the first labels")
    killed.kill()

    # The killed run left a partial workspace: all amons extracted, some but not all labeled,
    # nothing represented or predicted.
    n_conformers = _conformers(workspace)
    n_labels = _labels_committed(workspace)
    assert n_conformers == _conformers(reference[0])
    assert 2 <= n_labels < n_conformers, (n_labels, n_conformers, killed.stdout)
    assert not (workspace / "predictions").exists()
    assert "labeled" not in killed.stdout

    out = Run(queries, workspace, "resumed").finish()
    assert "extracted 0 queries" in out
    assert f"labeled {n_conformers - n_labels} amons" in out
    assert f"{n_labels} were labeled before" in out
    assert _labels_committed(workspace) == n_conformers
    resumed, uninterrupted = _labels_by_conformer(workspace), _labels_by_conformer(reference[0])
    assert resumed.keys() == uninterrupted.keys()
    for name, energy in resumed.items():
        assert energy == pytest.approx(uninterrupted[name], abs=ENERGY_TOLERANCE_HARTREE), name
    _assert_same_predictions(_predictions(workspace), _predictions(reference[0]))


@pytest.mark.slow
def test_killed_while_computing_the_kernel_resumes_to_the_same_predictions(
    queries, reference, tmp_path
):
    workspace = tmp_path / "ws.zarr"
    killed = Run(queries, workspace, "killed")
    killed.wait_until(lambda: _kernel_blocks_done(workspace) >= 2, "the first kernel blocks")
    killed.kill()

    # n x n in 2 x 2 blocks: ceil(n / 2)^2 markers when done (the symmetric kernel marks both
    # halves).
    n_conformers = _conformers(reference[0])
    n_blocks = ((n_conformers + 1) // 2) ** 2
    n_done = _kernel_blocks_done(workspace)
    assert 2 <= n_done < n_blocks, (n_done, killed.stdout)
    assert _labels_committed(workspace) == _conformers(workspace) == n_conformers
    assert not (workspace / "predictions").exists()

    out = Run(queries, workspace, "resumed").finish()
    assert "labeled 0 amons" in out and "represented 0 new amons rows" in out
    assert _kernel_blocks_done(workspace) == n_blocks
    _assert_same_predictions(_predictions(workspace), _predictions(reference[0]))
