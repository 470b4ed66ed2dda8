"""The pure logic of benchmarks/qm9_global.py: error statistics, flag scores and the cache of the
test molecules' labels (the whole-QM9 run itself is a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from amondask.chem import Molecule
from amondask.label import Label

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("qm9_global", BENCHMARKS / "qm9_global.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_statistics_against_a_loop(bench):
    errors = np.array([0.5, -1.5, np.nan, 3.0, -0.2, 2.5])
    got = bench.statistics(errors)
    values = sorted(abs(v) for v in errors if v == v)
    assert got["n"] == 5
    assert got["mae"] == pytest.approx(sum(values) / 5)
    assert got["median"] == pytest.approx(values[2])
    assert got["rmse"] == pytest.approx((sum(v * v for v in values) / 5) ** 0.5)
    assert got["max"] == 3.0
    assert got["share_below_1"] == pytest.approx(2 / 5)
    assert got["share_below_2"] == pytest.approx(3 / 5)
    assert bench.statistics(np.array([np.nan])) == {"n": 0}


def test_flag_scores_against_a_loop(bench):
    errors = np.array([0.5, -2.5, 3.0, np.nan, 1.0, -4.0])
    flagged = np.array([True, True, False, True, False, True])
    got = bench.flag_scores(errors, flagged)
    bad = [abs(e) > 2 for e in errors]  # NaN compares False
    assert got["n_bad"] == sum(bad) == 3
    assert got["bad_flagged"] == sum(b and f for b, f in zip(bad, flagged, strict=True)) == 2
    assert got["n_flagged"] == 3  # the NaN one is not counted
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["mae_unflagged"] == pytest.approx((3.0 + 1.0) / 2)


def test_test_labels_cache_round_trip(bench, tmp_path):
    molecules = [
        Molecule(
            id=f"m{k}",
            numbers=np.array([8, 1, 1]),
            bonds=np.array([[0, 1, 1], [0, 2, 1]]),
            positions=np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]]) * (1 + 0.01 * k),
        )
        for k in range(3)
    ]

    class Fake:
        level_of_theory = "fake | test"

    calls = []

    def fake_label(labeler, items, client, chunk=20):
        calls.append(len(items))
        return [
            Label(
                energy_hartree=-76.0 - k,
                positions=np.asarray(m.positions) + 0.001,
                converged=True,
                n_steps=k,
                wall_time_s=0.1,
                status="ok" if k else "topology-changed",
                message="",
                level_of_theory=labeler.level_of_theory,
                molecule_id=m.id,
            )
            for k, m in enumerate(items)
        ]

    bench.label_test_queries = fake_label
    path = tmp_path / "labels.npz"
    first = bench.cached_test_labels(path, Fake(), molecules, None)
    second = bench.cached_test_labels(path, Fake(), molecules, None)
    assert calls == [3]  # the second call read the cache
    for a, b in zip(first, second, strict=True):
        assert (a.energy_hartree, a.status, a.n_steps) == (b.energy_hartree, b.status, b.n_steps)
        np.testing.assert_array_equal(a.positions, b.positions)
    # Other molecules: the cache is not used.
    bench.cached_test_labels(path, Fake(), molecules[:2], None)
    assert calls == [3, 2]


def test_per_molecule_records_carry_every_test_molecule(bench):
    import json

    import xarray as xr

    ids = ["qm9_000001", "qm9_000002", "qm9_000003"]
    dataset = xr.Dataset(
        {
            "uncertainty": ("query_id", np.array([1.0, 2.0, 0.5]) / bench.KCAL),
            "atom_similarity": ("query_id", np.array([0.9, np.nan, 0.31])),
            "flag_reason": ("query_id", np.array(["", "ring-system", "uncovered"])),
            "n_train": ("query_id", np.array([40, 51, 12])),
        },
        coords={"query_id": ids},
    )
    errors = np.array([0.25, -3.5, 7.125])
    flagged = np.array([False, True, True])
    records = bench.per_molecule_records(dataset, errors, flagged)
    assert [r["id"] for r in records] == ids
    assert [r["error_kcal_mol"] for r in records] == [0.25, -3.5, 7.125]
    assert [r["uncertainty_kcal_mol"] for r in records] == [1.0, 2.0, 0.5]
    assert [r["flagged"] for r in records] == [False, True, True]
    assert [r["flag_reason"] for r in records] == ["", "ring-system", "uncovered"]
    assert [r["atom_similarity"] for r in records] == [0.9, None, 0.31]
    assert [r["n_train"] for r in records] == [40, 51, 12]
    assert json.loads(json.dumps(records)) == records  # plain JSON values only


def test_flag_sweep_against_a_loop(bench):
    records = [
        {"error_kcal_mol": e, "uncertainty_kcal_mol": sd, "flagged": f, "flag_reason": reason}
        for e, sd, f, reason in [
            (0.5, 0.2, False, ""),
            (-2.5, 1.2, True, "uncertainty"),
            (3.0, 0.8, True, "ring-system"),
            (float("nan"), 4.0, True, "uncertainty"),  # no reference: left out
            (1.0, 3.5, True, "ring-system,uncertainty"),
            (-4.0, 0.1, False, ""),
            (2.2, float("nan"), True, "coverage"),
        ]
    ]
    sweep = bench.flag_sweep(records)
    kept = [r for r in records if r["error_kcal_mol"] == r["error_kcal_mol"]]
    bad = [abs(r["error_kcal_mol"]) > 2 for r in kept]
    assert sum(bad) == 4

    def expect(flags):
        hits = sum(f and b for f, b in zip(flags, bad, strict=True))
        return hits, sum(flags)

    for threshold in bench.SD_SWEEP_KCAL:
        flags = [r["uncertainty_kcal_mol"] > threshold for r in kept]  # NaN: not above
        got = sweep["uncertainty_sweep"][str(threshold)]
        assert (got["n_bad_flagged"], got["n_flagged"]) == expect(flags)
        assert got["n_bad"] == 4
    ring = sweep["ring_system"]
    assert (ring["n_bad_flagged"], ring["n_flagged"]) == (1, 2)
    assert ring["recall"] == pytest.approx(1 / 4) and ring["precision"] == pytest.approx(1 / 2)
    assert (sweep["coverage"]["n_bad_flagged"], sweep["coverage"]["n_flagged"]) == (1, 1)
    combined = sweep["combined"]
    assert (combined["n_bad_flagged"], combined["n_flagged"]) == (3, 4)
    table = "\n".join(bench.flag_table(sweep))
    assert "| **combined flag** | 4 | 4 | 3 | 0.75 | 0.75 |" in table
    assert bench.flag_table(None) == []
