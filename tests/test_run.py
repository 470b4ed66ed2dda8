"""The end-to-end run: queries to predictions through every stage, resumable, and the export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amondask.cli import main
from amondask.label import get_labeler
from amondask.pipeline import SERIAL
from amondask.pipeline.run import run
from amondask.pipeline.train import predictions_frame
from amondask.store import Workspace
from amondask.store.labels import labels_frame

QUERIES = [
    ("CCO", "ethanol"),
    ("CCCO", "propanol"),
    ("CC(C)O", "isopropanol"),
    ("CCOC", "methoxyethane"),
    ("CC=O", "acetaldehyde"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "ws.zarr"
    dataset = run(QUERIES, path, max_heavy_atoms=3, client=SERIAL, progress=False)
    return path, dataset


def test_run_predicts_every_query_consistently(finished):
    path, dataset = finished
    workspace = Workspace(path, mode="r")
    assert list(dataset["query_id"].values) == [qid for _, qid in QUERIES]
    assert dataset["covered"].values.all()
    assert (dataset["n_amons"].values > 0).all()
    # An independent path: the in-memory estimator on the labeled (relaxed) amon geometries with
    # the same widths and basis predicts the same energies as the out-of-core pipeline.
    from amondask.models import AmonKRR
    from amondask.pipeline.kernel import amon_sigmas
    from amondask.store.labels import label_table

    labeler = get_labeler("xtb")
    amons = labels_frame(workspace, labeler.level_of_theory)
    assert (amons["status"] == "ok").all()
    table = label_table(workspace, labeler.level_of_theory, "amons")
    relaxed = dict(zip(table.read("source_row").tolist(), table.molecules(), strict=True))
    conformers = workspace.amons.conformers.molecules()
    training = [conformers[r].with_positions(relaxed[r].positions) for r in amons.source_row]
    model = AmonKRR(
        sigma=amon_sigmas(workspace, "gaussian"),
        mbtypes=workspace.root["represent/aslatm"].attrs["mbtypes"],
    ).fit(training, amons["energy_hartree"].to_numpy())
    expected = model.predict(workspace.queries.molecules())
    np.testing.assert_allclose(dataset["energy"].values, expected, rtol=0, atol=1e-8)
    # And a chemical sanity check: ethanol is its own amon at N_I = 3; its prediction at the
    # MMFF input geometry is within a few kcal/mol of its xTB-relaxed label.
    keys = workspace.amons.amons.read_text("key")
    conformer_amon = workspace.amons.conformers.read("amon")
    ethanol_rows = [r for r in amons.source_row if keys[conformer_amon[r]] == "CCO"]
    ethanol_label = amons.set_index("source_row").loc[ethanol_rows, "energy_hartree"].min()
    predicted = float(dataset["energy"].sel(query_id="ethanol"))
    assert abs(predicted - ethanol_label) * 627.5 < 5.0  # kcal/mol
    # Uncertainties are finite and positive; the export holds what the dataset holds.
    assert np.all(np.isfinite(dataset["uncertainty"].values))
    frame = predictions_frame(workspace)
    np.testing.assert_allclose(frame["energy_hartree"], dataset["energy"].values)
    assert frame["id"].tolist() == [qid for _, qid in QUERIES]


def test_repeated_run_changes_no_stage_output(finished):
    path, dataset = finished
    again = run(None, path, client=SERIAL, progress=False)
    np.testing.assert_allclose(again["energy"].values, dataset["energy"].values, rtol=0, atol=1e-9)
    summary = again.attrs["summary"]
    assert "labeled 0 amons" in summary and "extracted 0 queries" in summary


def test_export_csv_and_parquet(finished, tmp_path, capsys):
    path, dataset = finished
    assert main(["export", str(path), "-o", str(tmp_path / "p.csv")]) == 0
    assert (
        main(["export", str(path), "--format", "parquet", "-o", str(tmp_path / "p.parquet")]) == 0
    )
    csv = pd.read_csv(tmp_path / "p.csv")
    parquet = pd.read_parquet(tmp_path / "p.parquet")
    for frame in (csv, parquet):
        assert frame["id"].tolist() == [qid for _, qid in QUERIES]
        np.testing.assert_allclose(frame["energy_hartree"], dataset["energy"].values, rtol=1e-12)
        assert {"uncertainty_kcal_per_mol", "covered", "n_amons", "smiles"} <= set(frame.columns)
    # Atomization energy: the prediction minus the free atoms' xTB energies, checked by hand
    # for ethanol (C2H6O) against the atom energies the label stage stored.
    from amondask.store.labels import atom_energies

    atoms = atom_energies(Workspace(path, mode="r"), get_labeler("xtb").level_of_theory)
    assert set(atoms) >= {1, 6, 8}
    ethanol = dataset["energy"].sel(query_id="ethanol").item()
    expected = (ethanol - 2 * atoms[6] - 6 * atoms[1] - atoms[8]) * 627.5094740631
    row = csv.set_index("id").loc["ethanol"]
    assert row["atomization_energy_kcal_per_mol"] == pytest.approx(expected, rel=1e-9)
    # Ethanol is its own amon at N_I = 3: its labeled atomization energy is within a few
    # kcal/mol of the predicted one (the prediction is at the MMFF input geometry). (GFN2-xTB
    # overbinds: about -1050 kcal/mol against the experimental electronic -810.)
    labels = labels_frame(Workspace(path, mode="r"), get_labeler("xtb").level_of_theory)
    workspace = Workspace(path, mode="r")
    keys = workspace.amons.amons.read_text("key")
    conformer_amon = workspace.amons.conformers.read("amon")
    own = [r for r in labels.source_row if keys[conformer_amon[r]] == "CCO"]
    labeled = labels.set_index("source_row").loc[own, "energy_hartree"].min()
    labeled_atomization = (labeled - 2 * atoms[6] - 6 * atoms[1] - atoms[8]) * 627.5094740631
    assert abs(expected - labeled_atomization) < 5.0
    assert -1200 < expected < -600
    np.testing.assert_allclose(
        dataset["atomization_energy"].values * 627.5094740631,
        csv["atomization_energy_kcal_per_mol"],
        rtol=1e-9,
    )
    assert main(["export", str(path), "--format", "parquet"]) == 1  # needs --output


def test_cli_run_in_process(tmp_path, capsys):
    source = tmp_path / "q.smi"
    source.write_text("CCO ethanol\nCC=O acetaldehyde\nC1CC broken\n")
    code = main(["run", str(source), "-w", str(tmp_path / "ws.zarr"), "-k", "2", "--workers", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "predicted 2 queries" in out and "1 failed" in out and "time per stage" in out


def test_per_query_protocol_equals_a_loop_of_small_models(finished):
    """Each query's prediction equals an in-memory model fitted on that query's own amons."""
    from amondask.models import AmonKRR
    from amondask.pipeline.kernel import amon_sigmas
    from amondask.pipeline.train import predict_per_query
    from amondask.store.labels import label_table

    path, _ = finished
    workspace = Workspace(path)
    level = get_labeler("xtb").level_of_theory
    dataset = predict_per_query(workspace, level, client=SERIAL)
    assert dataset.attrs["model"] == "per-query"
    table = label_table(workspace, level, "amons")
    relaxed = dict(zip(table.read("source_row").tolist(), table.molecules(), strict=True))
    energies = dict(
        zip(table.read("source_row").tolist(), table.read("energy_hartree"), strict=True)
    )
    conformers = workspace.amons.conformers.molecules()
    qc = workspace.amons.query_conformers
    pairs = list(zip(qc.read("query").tolist(), qc.read("conformer").tolist(), strict=True))
    mbtypes = workspace.root["represent/aslatm"].attrs["mbtypes"]
    sigma = amon_sigmas(workspace, "gaussian")
    queries = workspace.queries.molecules()
    for index, query in enumerate(queries):
        own = sorted(c for q, c in pairs if q == index)
        training = [conformers[c].with_positions(relaxed[c].positions) for c in own]
        model = AmonKRR(sigma=sigma, mbtypes=mbtypes).fit(training, [energies[c] for c in own])
        expected = model.predict([query])[0]
        assert int(dataset["n_train"].values[index]) == len(own)
        assert float(dataset["energy"].values[index]) == pytest.approx(expected, abs=1e-8)


def test_bad_amon_size_and_worker_count_are_refused_before_anything_is_written(tmp_path):
    from amondask.cluster import get_client
    from amondask.errors import ConfigError, InputError
    from amondask.pipeline.extract import extract

    with pytest.raises(InputError, match="at least 1"):
        run(["CCO"], tmp_path / "k0.zarr", max_heavy_atoms=0, client=SERIAL, progress=False)
    assert not (tmp_path / "k0.zarr").exists()
    with pytest.raises(InputError, match="at least 1"):
        extract(["CCO"], tmp_path / "e0.zarr", max_heavy_atoms=-2, client=SERIAL, progress=False)
    with pytest.raises(ConfigError, match="at least 1 worker"):
        with get_client(None, n_workers=-1):
            pass
