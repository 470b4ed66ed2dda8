"""The pure logic of benchmarks/qm9_amons.py: statistics per N_I, amons used per N_I, the
seeded QM9 sample and the Markdown table (the full run is a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("qm9_amons", BENCHMARKS / "qm9_amons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_statistics_per_level_against_a_loop(bench):
    rng = np.random.default_rng(3)
    errors = rng.normal(scale=5.0, size=(4, 11))
    errors[1, [2, 7]] = np.nan
    errors[3, :] = np.nan
    stats = bench.statistics_per_level(errors)
    for row, got in zip(errors[:3], stats[:3], strict=True):
        values = sorted(abs(v) for v in row if v == v)
        n = len(values)
        middle = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
        assert got["n"] == n
        assert got["mae"] == pytest.approx(sum(values) / n)
        assert got["median"] == pytest.approx(middle)
        assert got["rmse"] == pytest.approx((sum(v * v for v in values) / n) ** 0.5)
        assert got["max"] == pytest.approx(values[-1])
    assert stats[3] == {"mae": None, "median": None, "rmse": None, "max": None, "n": 0}
    # Sign does not matter: errors of either sign give the same statistics.
    assert bench.statistics_per_level(-errors[:1]) == bench.statistics_per_level(errors[:1])


def test_amons_used_against_a_loop(bench):
    # Five training conformers of three graphs (N_I 1, 2, 3); graphs 1 and 2 have two each.
    graph_of_row = np.array([0, 1, 1, 2, 2])
    heavy_of_row = np.array([1, 2, 2, 3, 3])
    query_of_pair = np.array([0, 0, 0, 1, 1, 2])
    row_of_pair = np.array([0, 1, 2, 0, 3, 4])
    levels = np.array([1, 2, 3])
    used = bench.amons_used(graph_of_row, heavy_of_row, query_of_pair, row_of_pair, 3, levels)
    for k, n_heavy in enumerate(levels):
        rows = [r for r in range(5) if heavy_of_row[r] <= n_heavy]
        assert used["global_conformers"][k] == len(rows)
        assert used["global_graphs"][k] == len({graph_of_row[r] for r in rows})
        per_query = [
            [r for q, r in zip(query_of_pair, row_of_pair, strict=True) if q == query and r in rows]
            for query in range(3)
        ]
        conformers = [len(p) for p in per_query]
        graphs = [len({graph_of_row[r] for r in p}) for p in per_query]
        assert used["per_query_conformers_mean"][k] == pytest.approx(np.mean(conformers))
        assert used["per_query_graphs_mean"][k] == pytest.approx(np.mean(graphs))
        assert used["per_query_conformers_min"][k] == min(conformers)
        assert used["per_query_conformers_max"][k] == max(conformers)
    assert used["per_query_graphs_mean"] == pytest.approx([2 / 3, 1.0, 5 / 3])  # by hand


def test_the_qm9_sample_is_reproducible_and_has_nine_heavy_atoms(bench):
    pytest.importorskip("qm9pack")
    first = bench.qm9_query_table(12, n_heavy=9, seed=5)
    again = bench.qm9_query_table(12, n_heavy=9, seed=5)
    other = bench.qm9_query_table(12, n_heavy=9, seed=6)
    assert first.Index.tolist() == again.Index.tolist()
    assert first.Index.tolist() != other.Index.tolist()
    assert len(set(first.Index)) == 12
    assert (first.n_heavy == 9).all()
    # Smaller samples are not prefixes of larger ones, but each is a set of valid QM9 rows.
    assert first.Index.is_monotonic_increasing


def test_markdown_table_has_one_row_per_level(bench):
    curve = {
        "n_heavy": [1, 2],
        "mae": [10.0, 1.0],
        "median": [9.0, 0.5],
        "rmse": [11.0, 1.5],
        "max": [20.0, 3.0],
        "n_predicted": [4, 4],
    }
    result = {
        "n_queries": 4,
        "seed": 0,
        "level_of_theory": "GFN2-xTB",
        "max_heavy_atoms": 2,
        "learning_curve": {"per-query": curve, "global": {**curve, "mae": [12.0, None]}},
        "amons_used": {
            "global_graphs": [1, 3],
            "global_conformers": [1, 4],
            "per_query_graphs_mean": [1.0, 2.5],
            "per_query_conformers_mean": [1.0, 3.0],
        },
        "stage_seconds": {"label": 2.0},
        "hyperparameters": None,
    }
    lines = bench.markdown(result).splitlines()
    rows = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(rows) == 2
    assert rows[0].split("|")[2].strip() == "10.00"
    assert rows[1].split("|")[6].strip() == "-"  # a missing global MAE
    assert rows[1].split("|")[-2].strip() == "2.5 / 3.0"
