"""The labeling stage over a workspace: values, resume, distributed, levels kept apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amondask.label import get_labeler
from amondask.pipeline import SERIAL
from amondask.pipeline.extract import extract
from amondask.pipeline.label import label_workspace
from amondask.store import Workspace
from amondask.store.labels import label_levels, label_table, labels_frame

QUERIES = [("CCO", "ethanol"), ("CC=O", "acetaldehyde"), ("OC=O", "formic acid")]


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws.zarr")
    extract(QUERIES, ws, max_heavy_atoms=2, client=SERIAL, progress=False)
    return ws


class CountingLabeler:
    """Wraps a labeler and counts which molecules it labels (serial runs only)."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner = inner
        self.name = inner.name
        self.level_of_theory = inner.level_of_theory
        self.implemented_properties = inner.implemented_properties
        self.seen: list[str] = []
        self.fail_after = fail_after

    def label(self, molecule):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt("killed")  # not an Exception: stops the run like a kill
        self.seen.append(molecule.id)
        return self.inner.label(molecule)


def test_labels_equal_the_labeler_on_each_conformer(workspace):
    labeler = get_labeler("xtb")
    report = label_workspace(workspace, labeler, client=SERIAL, progress=False)
    conformers = workspace.amons.conformers.molecules()
    assert report.labeled == len(conformers) and report.statuses["ok"] == len(conformers)
    frame = labels_frame(workspace, labeler.level_of_theory)
    assert frame["source_row"].tolist() == list(range(len(conformers)))
    for row, molecule in enumerate(conformers):
        direct = labeler.label(molecule)
        assert frame["energy_hartree"][row] == pytest.approx(direct.energy_hartree, abs=1e-7)
    # Relaxed geometries are stored with the labels, in the conformer's atom order.
    stored = label_table(workspace, labeler.level_of_theory, "amons").molecules()
    by_row = dict(
        zip(
            label_table(workspace, labeler.level_of_theory, "amons").read("source_row"),
            stored,
            strict=True,
        )
    )
    water_row = workspace.amons.amons.read_text("key").index("O")
    water = by_row[int(np.flatnonzero(workspace.amons.conformers.read("amon") == water_row)[0])]
    oh = np.linalg.norm(water.positions[1:] - water.positions[0], axis=1)
    assert np.allclose(oh, oh[0], atol=1e-3) and 0.94 < oh[0] < 0.99  # GFN2 O-H ~0.96 A


def test_killed_run_resumes_without_recomputing(workspace):
    n_rows = workspace.amons.conformers.n_rows
    first = CountingLabeler(get_labeler("xtb"), fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        label_workspace(workspace, first, client=SERIAL, progress=False, task_seconds=1e-6)
    committed = label_table(workspace, first.level_of_theory, "amons").read("source_row").tolist()
    assert 0 < len(committed) <= 3
    second = CountingLabeler(get_labeler("xtb"))
    report = label_workspace(Workspace(workspace.spec), second, client=SERIAL, progress=False)
    assert report.already_labeled == len(committed)
    rows = label_table(workspace, first.level_of_theory, "amons").read("source_row").tolist()
    assert sorted(rows) == list(range(n_rows))  # nothing lost, nothing twice
    assert len(second.seen) == n_rows - len(committed)  # finished work was not repeated


def test_two_worker_processes_match_serial(workspace, tmp_path):
    from distributed import Client, LocalCluster

    labeler = get_labeler("xtb")
    serial = Workspace(tmp_path / "serial.zarr")
    extract(QUERIES, serial, max_heavy_atoms=2, client=SERIAL, progress=False)
    label_workspace(serial, labeler, client=SERIAL, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            label_workspace(workspace, labeler, client=client, progress=False, task_seconds=1e-6)
    a = labels_frame(serial, labeler.level_of_theory)
    b = labels_frame(workspace, labeler.level_of_theory)
    np.testing.assert_allclose(a["energy_hartree"], b["energy_hartree"], atol=1e-8)
    assert a["status"].tolist() == b["status"].tolist()


def test_levels_are_kept_apart_and_table_gaps_are_reported(workspace, tmp_path):
    xtb = get_labeler("xtb")
    label_workspace(workspace, xtb, client=SERIAL, progress=False)
    keys = workspace.amons.amons.read_text("key")
    known = {"C": -40.5, "O": -76.4}
    path = tmp_path / "energies.csv"
    pd.DataFrame({"smiles": list(known), "energy": list(known.values()), "extra": [1, 2]}).to_csv(
        path, index=False
    )
    table = get_labeler("table", table=str(path), level_of_theory="made-up/level")
    report = label_workspace(workspace, table, client=SERIAL, progress=False)
    assert report.statuses["ok"] == 2 and report.statuses["failed"] == len(keys) - 2
    levels = set(label_levels(workspace).values())
    assert levels == {xtb.level_of_theory, table.level_of_theory}
    frame = labels_frame(workspace, "made-up/level")
    amon_of_row = workspace.amons.conformers.read("amon")
    for row, energy, status in zip(
        frame.source_row, frame.energy_hartree, frame.status, strict=True
    ):
        key = keys[amon_of_row[row]]
        if key in known:
            assert status == "ok" and energy == known[key]
        else:
            assert status == "failed" and np.isnan(energy)
    errors = [e for e in workspace.error_records() if e.stage == "label"]
    assert len(errors) == len(keys) - 2


def test_queries_can_be_labeled_for_validation(workspace):
    labeler = get_labeler("xtb")
    report = label_workspace(workspace, labeler, target="queries", client=SERIAL, progress=False)
    assert report.labeled == 3 and report.statuses["ok"] == 3
    frame = labels_frame(workspace, labeler.level_of_theory, "queries")
    direct = labeler.label(workspace.queries.molecules(0, 1)[0])
    assert frame["energy_hartree"][0] == pytest.approx(direct.energy_hartree, abs=1e-7)
