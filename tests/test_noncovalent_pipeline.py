"""Non-covalent amons through the workspace: extraction on worker processes, single-point
labels, run + evaluate on small water clusters and on a base pair, and the guards."""

from __future__ import annotations

from pathlib import Path

import dask.config
import numpy as np
import pytest
from extract_helpers import assert_same_content, build, store_content

from amondask.amons import extract_amons
from amondask.amons.noncovalent import NoncovalentSettings
from amondask.chem.readers import read_molecules
from amondask.errors import LabelerSetupError, WorkspaceParameterError
from amondask.label.xtb import XTBLabeler
from amondask.pipeline import SERIAL, extract_workspace
from amondask.pipeline.label import label_workspace
from amondask.store import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "noncovalent"
KCAL = 627.509474
SETTINGS = {
    "amondask.read.allow-fragments": True,
    "amondask.amons.relax": False,
    "amondask.label.xtb.relax": False,
    "amondask.amons.noncovalent.max-components": 3,
    "amondask.amons.noncovalent.cluster-sizes": [2, 3],
}


def _read(name: str, ids: list[str] | None = None):
    with dask.config.set({"amondask.read.allow-fragments": True}):
        molecules = read_molecules(EXAMPLES / name, on_error="raise").molecules
    return [m for m in molecules if ids is None or m.id in ids]


@pytest.fixture(scope="module")
def waters():
    return _read("water_clusters.xyz", [f"water_{n:02d}" for n in range(4, 9)])


def test_two_worker_processes_give_the_serial_store(tmp_path, waters):
    from distributed import Client, LocalCluster

    with dask.config.set(SETTINGS):
        serial = build(tmp_path / "serial.zarr", waters, max_heavy_atoms=3, partition_size=2)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
            with Client(cluster) as client:
                two = build(
                    tmp_path / "two.zarr",
                    waters,
                    client=client,
                    max_heavy_atoms=3,
                    partition_size=2,
                )
    content = store_content(serial)
    assert_same_content(store_content(two), content)
    # the store holds what extract_amons gives each query: every arrangement of molecules
    # is a conformer of its own (distinct clusters share none)
    expected: dict[str, int] = {}
    settings = NoncovalentSettings(max_components=3, cluster_sizes=(2, 3))
    for molecule in waters:
        for amon in extract_amons(molecule, 3, relax=False, noncovalent=settings):
            expected[amon.key] = expected.get(amon.key, 0) + len(amon.conformers)
    expected["O"] = 1  # one conformer for a covalent amon of one heavy atom, across queries
    keys = list(content["amons/key"])
    per_key = np.bincount(content["conformers/amon"], minlength=len(keys))
    assert dict(zip(keys, per_key.tolist(), strict=True)) == expected
    assert set(keys) == {"O", "O.O", "O.O.O"}
    assert serial.parameters["amon_relax"] is False
    assert serial.parameters["noncovalent_amons"]["cluster_sizes"] == [2, 3]


def test_settings_are_defining_parameters(tmp_path, waters):
    with dask.config.set(SETTINGS):
        workspace = build(tmp_path / "ws.zarr", waters[:2], max_heavy_atoms=3)
    with pytest.raises(WorkspaceParameterError, match="noncovalent_amons"):
        extract_workspace(
            workspace,
            noncovalent=NoncovalentSettings(max_components=2),
            client=SERIAL,
            progress=False,
        )
    with pytest.raises(WorkspaceParameterError, match="amon_relax"):
        extract_workspace(workspace, relax=True, client=SERIAL, progress=False)
    # the recorded settings are used when none are given: nothing new, no error
    report = extract_workspace(workspace, client=SERIAL, progress=False)
    assert report.queries_extracted == 0


def test_relaxing_labeler_is_refused(tmp_path, waters):
    with dask.config.set(SETTINGS):
        workspace = build(tmp_path / "ws.zarr", waters[:1], max_heavy_atoms=3)
    with pytest.raises(LabelerSetupError, match="label.xtb.relax"):
        label_workspace(workspace, XTBLabeler(relax=True), client=SERIAL, progress=False)
    report = label_workspace(workspace, XTBLabeler(relax=False), client=SERIAL, progress=False)
    assert report.statuses == {"ok": report.labeled} and report.labeled > 0


def test_water_clusters_run_and_evaluate(tmp_path, waters):
    """`run` + `evaluate` on (H2O)4..8 from their dimers, trimers and clusters: labels are
    single points at the amons' stored geometries, the reference is GFN2-xTB at the query's
    own geometry, and the prediction beats the baseline by far."""
    import amondask

    path = tmp_path / "ws.zarr"
    with dask.config.set(SETTINGS):
        predictions = amondask.run(
            waters, str(path), max_heavy_atoms=3, client=SERIAL, progress=False
        )
        evaluation = amondask.evaluate(str(path), client=SERIAL, progress=False)
    assert predictions["covered"].values.all()
    single_point = XTBLabeler(relax=False)
    for molecule in waters:
        reference = evaluation["reference_energy"].sel(query_id=molecule.id).item()
        assert reference == pytest.approx(single_point.label(molecule).energy_hartree, abs=1e-9)
    errors = np.abs(evaluation["error"].values)
    assert np.isfinite(errors).all()
    assert errors.mean() < 2.0, errors
    assert evaluation.attrs["baseline_mae_kcal_mol"] > 10 * errors.mean()
    from amondask.store.labels import label_table

    workspace = Workspace(str(path), mode="r")
    level = single_point.level_of_theory
    labels = label_table(workspace, level, "amons")
    assert (labels.read("n_steps") == 0).all()


def test_base_pair_needs_its_noncovalent_amons(tmp_path):
    """AT from amons of N_I <= 5 at its own geometry: with the combinations of covalent amons
    across the pair the error is several times smaller than from covalent amons alone (which
    miss the hydrogen bonds between the bases)."""
    import amondask

    pair = _read("base_pairs.xyz", ["AT"])
    errors = {}
    for components in (1, 3):
        settings = {**SETTINGS, "amondask.amons.noncovalent.max-components": components}
        settings["amondask.amons.noncovalent.cluster-sizes"] = []
        path = tmp_path / f"ws{components}.zarr"
        with dask.config.set(settings):
            amondask.run(pair, str(path), max_heavy_atoms=5, client=SERIAL, progress=False)
            evaluation = amondask.evaluate(
                str(path), client=SERIAL, progress=False, learning_curve=False
            )
        errors[components] = abs(float(evaluation["error"].values[0]))
    assert errors[3] < 0.5 * errors[1], errors


def test_folded_chain_needs_its_intramolecular_amons(tmp_path):
    """(Gly)8 folded by GFN2-xTB, at its own geometry: covalent amons (N_I <= 7) miss its
    N-H...O=C contacts between residues (38 kcal/mol when written); combinations of two parts
    of the chain at least 4 bonds apart, up to 10 heavy atoms, bring it within 2 (-0.9)."""
    import amondask

    (coil,) = _read("polyglycine_coil.xyz")
    errors = {}
    for components in (1, 2):
        settings = {
            **SETTINGS,
            "amondask.amons.noncovalent.max-components": components,
            "amondask.amons.noncovalent.cluster-sizes": [],
            "amondask.amons.noncovalent.max-heavy-atoms": 10,
            "amondask.amons.noncovalent.intramolecular-min-bonds": 4,
        }
        path = tmp_path / f"ws{components}.zarr"
        with dask.config.set(settings):
            amondask.run([coil], str(path), max_heavy_atoms=7, client=SERIAL, progress=False)
            evaluation = amondask.evaluate(
                str(path), client=SERIAL, progress=False, learning_curve=False
            )
        errors[components] = abs(float(evaluation["error"].values[0]))
    assert errors[1] > 10, errors
    assert errors[2] < 2, errors
