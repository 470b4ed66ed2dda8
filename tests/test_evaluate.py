"""The evaluation stage: query labels, errors, learning curve, plots, CLI, resumability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amondask.cli import main
from amondask.errors import WorkspaceError
from amondask.label import get_labeler
from amondask.pipeline import SERIAL
from amondask.pipeline.evaluate import error_statistics, evaluate, format_evaluation
from amondask.pipeline.run import run
from amondask.pipeline.train import predictions_frame
from amondask.store import Workspace
from amondask.store.labels import label_table

KCAL = 627.5094740631
QUERIES = [
    ("CCO", "ethanol"),
    ("CCCO", "propanol"),
    ("CC(C)O", "isopropanol"),
    ("CCOC", "methoxyethane"),
    ("CC=O", "acetaldehyde"),
    ("CCC(=O)O", "propanoic acid"),
    ("CCCC", "butane"),
    ("CCNC", "ethylmethylamine"),
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "ws.zarr"
    run(QUERIES, path, max_heavy_atoms=3, client=SERIAL, progress=False)
    dataset = evaluate(path, client=SERIAL, progress=False)
    return path, dataset


def _relaxed(workspace, level, target):
    table = label_table(workspace, level, target)
    rows = table.read("source_row").tolist()
    return (
        dict(zip(rows, table.molecules(), strict=True)),
        dict(zip(rows, table.read("energy_hartree").tolist(), strict=True)),
        dict(zip(rows, table.read_text("status"), strict=True)),
    )


def _independent_model(workspace, level, max_heavy=None):
    """An in-memory AmonKRR on the labeled amon geometries (no stored kernel involved)."""
    from amondask.models import AmonKRR
    from amondask.pipeline.kernel import amon_sigmas

    relaxed, energies, status = _relaxed(workspace, level, "amons")
    conformers = workspace.amons.conformers.molecules()
    n_heavy = workspace.amons.amons.read("n_heavy")[workspace.amons.conformers.read("amon")]
    rows = [
        r
        for r in sorted(relaxed)
        if status[r] == "ok" and (max_heavy is None or n_heavy[r] <= max_heavy)
    ]
    training = [conformers[r].with_positions(relaxed[r].positions) for r in rows]
    model = AmonKRR(
        sigma=amon_sigmas(workspace, "gaussian"),
        mbtypes=workspace.root["represent/aslatm"].attrs["mbtypes"],
    )
    return model.fit(training, [energies[r] for r in rows]), len(rows)


def test_errors_against_an_independent_model_and_the_query_labels(evaluated):
    path, dataset = evaluated
    workspace = Workspace(path, mode="r")
    level = get_labeler("xtb").level_of_theory
    assert list(dataset["query_id"].values) == [qid for _, qid in QUERIES]
    relaxed, energies, status = _relaxed(workspace, level, "queries")
    assert sorted(relaxed) == list(range(len(QUERIES)))
    # The references are the queries' own xTB labels; the predictions are those of a model
    # fitted in memory on the relaxed amons, for the queries at their relaxed geometries.
    reference = np.array([energies[k] if status[k] == "ok" else np.nan for k in range(8)])
    np.testing.assert_allclose(dataset["reference_energy"].values, reference, rtol=0, atol=0)
    queries = workspace.queries.molecules()
    at_labels = [q.with_positions(relaxed[k].positions) for k, q in enumerate(queries)]
    model, n_train = _independent_model(workspace, level)
    expected = model.predict(at_labels)
    assert dataset["curve_n_train"].values[-1] == n_train
    np.testing.assert_allclose(dataset["predicted_energy"].values, expected, rtol=0, atol=1e-8)
    error = (expected - reference) * KCAL
    np.testing.assert_allclose(dataset["error"].values, error, rtol=1e-9, atol=1e-9)
    finite = np.isfinite(error)
    assert dataset.attrs["n_evaluated"] == finite.sum() >= 6
    assert dataset.attrs["mae_kcal_mol"] == pytest.approx(np.abs(error[finite]).mean())
    assert dataset.attrs["rmse_kcal_mol"] == pytest.approx(np.sqrt((error[finite] ** 2).mean()))
    assert dataset.attrs["max_error_kcal_mol"] == pytest.approx(np.abs(error[finite]).max())
    # A working model is far better than its per-element baseline alone.
    assert dataset.attrs["mae_kcal_mol"] < 0.25 * dataset.attrs["baseline_mae_kcal_mol"]
    assert dataset.attrs["mae_kcal_mol"] < 3.0


def test_learning_curve_points_are_models_on_smaller_amons(evaluated):
    path, dataset = evaluated
    workspace = Workspace(path, mode="r")
    level = get_labeler("xtb").level_of_theory
    assert dataset["n_heavy"].values.tolist() == [1, 2, 3]
    mae = dataset["curve_mae"].values
    assert np.all(np.isfinite(mae))
    assert mae[0] > mae[1] > mae[2]  # more (and larger) amons, smaller errors
    # N_I = 1: methane, ammonia, water for H, C, N, O: one equation short
    assert dataset["curve_baseline_determined"].values.tolist() == [False, True, True]
    # The largest N_I uses every amon: it is the evaluated model.
    assert mae[-1] == pytest.approx(dataset.attrs["mae_kcal_mol"], rel=1e-6)
    # The N_I = 2 point equals an in-memory model on the amons of at most 2 heavy atoms.
    relaxed, energies, status = _relaxed(workspace, level, "queries")
    queries = workspace.queries.molecules()
    at_labels = [q.with_positions(relaxed[k].positions) for k, q in enumerate(queries)]
    model, n_train = _independent_model(workspace, level, max_heavy=2)
    predicted = model.predict(at_labels)
    reference = np.array([energies[k] for k in range(len(queries))])
    ok = np.array([status[k] == "ok" for k in range(len(queries))])
    expected = np.abs(predicted - reference)[ok].mean() * KCAL
    assert mae[1] == pytest.approx(expected, rel=1e-6)
    assert dataset["curve_n_train"].values[1] == n_train


def test_evaluation_is_stored_and_a_rerun_labels_nothing(evaluated):
    path, dataset = evaluated
    again = evaluate(path, client=SERIAL, progress=False, learning_curve=False)
    assert again.attrs["queries_labeled_now"] == 0
    np.testing.assert_array_equal(again["error"].values, dataset["error"].values)
    workspace = Workspace(path, mode="r")
    stored = workspace.root[again.attrs["evaluation"]]
    assert stored.attrs["mae_kcal_mol"] == pytest.approx(dataset.attrs["mae_kcal_mol"])
    text = format_evaluation(dataset)
    assert "MAE" in text and "learning curve" in text and "N_I = 3" in text


def test_per_query_protocol_evaluates_each_query_with_its_own_amons(evaluated):
    path, dataset = evaluated
    per_query = evaluate(path, protocol="per-query", client=SERIAL, progress=False)
    assert per_query.attrs["protocol"] == "per-query"
    np.testing.assert_array_equal(
        per_query["reference_energy"].values, dataset["reference_energy"].values
    )
    mae = per_query.attrs["mae_kcal_mol"]
    assert np.isfinite(mae) and mae < 0.25 * per_query.attrs["baseline_mae_kcal_mol"]
    # per query, the number of training amons is at most the global count
    assert np.all(per_query["curve_n_train"].values <= dataset["curve_n_train"].values + 1e-9)


def test_a_labeler_of_another_level_is_refused(evaluated, tmp_path):
    path, _ = evaluated
    table = tmp_path / "energies.csv"
    table.write_text("smiles,energy\nC,-40.0\n")
    other = get_labeler("table", table=str(table), level_of_theory="made up")
    with pytest.raises(WorkspaceError, match="--labeler"):
        evaluate(path, other, client=SERIAL, progress=False)


def test_error_statistics_ignore_missing_values():
    stats = error_statistics(np.array([1.0, -3.0, np.nan]))
    assert (stats.mae, stats.max, stats.n) == (2.0, 3.0, 2)
    assert stats.rmse == pytest.approx(np.sqrt(5.0))
    assert np.isnan(error_statistics(np.array([np.nan])).mae)


def test_cli_evaluate_writes_numbers_and_plots(evaluated, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, dataset = evaluated
    prefix = tmp_path / "figures" / "run"
    code = main(["evaluate", str(path), "--workers", "0", "--plots", str(prefix), "--json"])
    assert code == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["mae_kcal_mol"] == pytest.approx(dataset.attrs["mae_kcal_mol"])
    assert numbers["learning_curve"]["n_heavy"] == [1, 2, 3]
    assert set(numbers["errors_kcal_mol"]) == {qid for _, qid in QUERIES}
    for name in ("run_parity.png", "run_learning_curve.png"):
        data = (tmp_path / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert main(["evaluate", str(tmp_path / "missing.zarr")]) == 1
    assert "no workspace" in capsys.readouterr().err


def test_bundled_example_end_to_end_on_two_worker_processes(tmp_path, examples_dir, capsys):
    """The README's job on the bundled queries plus bad records, on a LocalCluster with 2
    worker processes: every valid query predicted, bad records as error rows, and the
    evaluation far better than the per-element baseline."""
    bad = tmp_path / "bad.smi"
    bad.write_text("C1CC broken_ring\n[Na+].[Cl-] salt\nC[C](C)C radical\n")
    workspace = tmp_path / "example.zarr"
    code = main(
        [
            "run",
            str(examples_dir / "queries.smi"),
            str(bad),
            "-w",
            str(workspace),
            "-k",
            "3",
            "--workers",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "predicted 30 queries" in out
    frame = predictions_frame(Workspace(workspace, mode="r"))
    assert len(frame) == 30 and frame["energy_hartree"].notna().all()
    errors = Workspace(workspace, mode="r").error_records()
    assert {e.record_id for e in errors} == {"broken_ring", "salt", "radical"}
    assert all(e.stage == "read" and e.message for e in errors)
    code = main(["evaluate", str(workspace), "--workers", "2", "--no-plots", "--json"])
    assert code == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["n_evaluated"] >= 25
    assert np.isfinite(numbers["mae_kcal_mol"]) and np.isfinite(numbers["max_error_kcal_mol"])
    assert numbers["mae_kcal_mol"] < 0.5 * numbers["baseline_mae_kcal_mol"]
