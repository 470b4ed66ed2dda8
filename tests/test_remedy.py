"""The outlier remedy over a workspace: extra amons labeled, per-query and global refits."""

from __future__ import annotations

import numpy as np
import pytest

from amondask.label import get_labeler
from amondask.pipeline import SERIAL
from amondask.pipeline.evaluate import evaluate
from amondask.pipeline.remedy import remedy_amons, remedy_workspace
from amondask.pipeline.run import run
from amondask.store import Workspace

# N_I = 3: the 5- and 6-atom ring systems of these small bicycles fit in no amon
QUERIES = [
    ("C1CC2CC2C1", "bicyclo[3.1.0]hexane"),
    ("OC1CC2CC12", "housanol"),
    ("CC1CC1", "methylcyclopropane"),
    ("CCCO", "propanol"),
]


@pytest.fixture(scope="module")
def remedied(tmp_path_factory):
    path = tmp_path_factory.mktemp("remedy") / "ws.zarr"
    run(QUERIES, path, max_heavy_atoms=3, client=SERIAL, progress=False)
    run(None, path, max_heavy_atoms=3, protocol="per-query", client=SERIAL, progress=False)
    evaluations = {
        p: evaluate(path, protocol=p, learning_curve=False, client=SERIAL, progress=False)
        for p in ("global", "per-query")
    }
    workspace = Workspace(path)
    result = remedy_workspace(
        workspace,
        queries=[0, 1, 3],
        protocols=("per-query", "global"),
        strategy="next-size",
        extra_heavy_atoms=1,
        client=SERIAL,
        progress=False,
    )
    return workspace, evaluations, result


def test_without_extras_the_refit_reproduces_the_workspace_predictions(remedied):
    _, evaluations, result = remedied
    for protocol, evaluation in evaluations.items():
        stored = evaluation["predicted_energy"].values[[0, 1, 3]]
        before = result["energy_before"].sel(protocol=protocol).values
        np.testing.assert_allclose(before, stored, rtol=0, atol=1e-7)


def test_extra_amons_are_those_of_remedy_amons_and_are_labeled(remedied):
    workspace, _, result = remedied
    molecules = workspace.queries.molecules()
    for k, row in enumerate(result["query"].values.tolist()):
        amons = remedy_amons(molecules[row], 3, strategy="next-size", extra_heavy_atoms=1)
        assert result["n_extra_amons"].values[k] == len(amons)
        assert result["n_extra_conformers"].values[k] == sum(len(a.conformers) for a in amons)
    # the 5-atom bicycles get 4-atom amons; propanol (4 heavy atoms) none: never the query
    assert result["n_extra_amons"].values.tolist()[:2] == [
        len(remedy_amons(molecules[r], 3, geometry=False)) for r in (0, 1)
    ]
    assert result["n_extra_amons"].values[0] > 0
    assert result["n_extra_amons"].values[2] == 0
    assert result["n_extra_ok"].values.sum() > 0
    assert result.attrs["n_extra_conformers"] == int(result["n_extra_conformers"].sum())


def test_a_query_without_extras_keeps_its_per_query_prediction(remedied):
    _, _, result = remedied
    per_query = result.sel(protocol="per-query")
    assert per_query["energy_after"].values[2] == per_query["energy_before"].values[2]


def test_the_remedy_brings_the_strained_bicycles_closer_to_their_labels(remedied):
    _, evaluations, result = remedied
    for protocol, evaluation in evaluations.items():
        reference = evaluation["reference_energy"].values[[0, 1]]
        assert np.isfinite(reference).all()
        part = result.sel(protocol=protocol)
        before = np.abs(part["energy_before"].values[:2] - reference)
        after = np.abs(part["energy_after"].values[:2] - reference)
        assert np.all(after < before), (protocol, before * 627.5, after * 627.5)


def test_predictions_carry_flags_for_the_ring_systems_above_n_i(remedied):
    workspace, _, _ = remedied
    from amondask.pipeline.train import predictions_frame

    frame = predictions_frame(workspace, "per-query")
    reasons = [set(r.split(",")) for r in frame["flag_reason"]]
    assert ["ring-system" in r for r in reasons] == [True, True, False, False]
    assert frame["flagged"].tolist()[:2] == [True, True]
    sd = frame["uncertainty_kcal_per_mol"].to_numpy()
    assert [("uncertainty" in r) for r in reasons] == (sd > 1.0).tolist()


def test_unknown_protocol_is_refused(remedied):
    workspace, _, _ = remedied
    with pytest.raises(ValueError, match="protocols"):
        remedy_workspace(workspace, get_labeler("xtb"), queries=[0], protocols=("both",))


def test_borrowing_every_amon_turns_the_per_query_model_into_the_global_one(remedied):
    workspace, _, _ = remedied
    # propanol has no extra amon (it has 4 heavy atoms, N_I + 1 = 4 would be itself): with
    # every labeled amon borrowed, its per-query training set is the global one
    result = remedy_workspace(
        workspace,
        queries=[3],
        protocols=("per-query", "global"),
        neighbours=10**6,
        client=SERIAL,
        progress=False,
    )
    assert result["n_extra_amons"].values[0] == 0
    per_query = result["energy_after"].sel(protocol="per-query").values
    global_before = result["energy_before"].sel(protocol="global").values
    np.testing.assert_allclose(per_query, global_before, rtol=0, atol=1e-8)
    n_own = result["n_train_before"].sel(protocol="per-query").values[0]
    assert n_own + result["n_borrowed"].values[0] == result.attrs["n_amon_conformers"]


def test_nearest_amons_are_the_most_similar_by_the_normalized_kernel(remedied):
    from amondask.pipeline.remedy import nearest_amons
    from amondask.pipeline.represent import representation_name
    from amondask.pipeline.train import training_rows

    workspace, _, _ = remedied
    level = get_labeler("xtb").level_of_theory
    rows, _, _ = training_rows(workspace, level)
    name = representation_name("queries", level)
    near = nearest_amons(workspace, rows, [0, 1], name, 3)
    everything = nearest_amons(workspace, rows, [0], name, len(rows))
    assert all(len(v) == 3 for v in near.values())
    assert sorted(everything[0]) == list(range(len(rows)))
    # brute force: the stored kernels read whole; K(q, q) is one factor per query
    from amondask.pipeline.kernel import open_kernel

    amon_kernel = open_kernel(workspace, "amons")[...]
    query_kernel = open_kernel(workspace, name)[...]
    diagonal = np.diag(amon_kernel)[rows]
    for q in (0, 1):
        column = query_kernel[rows, q] / np.sqrt(diagonal)
        assert sorted(np.argsort(-column)[:3].tolist()) == near[q]
