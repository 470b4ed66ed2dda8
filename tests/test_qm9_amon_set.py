"""benchmarks/qm9_amon_set.py: the counting logic on a tiny workspace, against brute force."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from extract_helpers import build

from amondask.amons import extract_amons
from amondask.chem import read_molecules

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import qm9_amon_set as amon_set  # noqa: E402

MAX_HEAVY = 3


@pytest.fixture(scope="module")
def molecules():
    from conftest import EXAMPLES

    return read_molecules(EXAMPLES / "qm9_sample.extxyz").molecules


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, molecules):
    """Five 9-heavy QM9 queries, a 9-heavy zwitterion, three small ones, and one refused
    (charged) record."""
    heavy = [int((m.numbers > 1).sum()) for m in molecules]
    nine = [m for m, h in zip(molecules, heavy, strict=True) if h == 9][:5]
    small = read_molecules(
        [
            ("CC(C)=O", "acetone"),
            ("OCC#N", "glycolonitrile"),
            ("NC1CC1", "cyclopropylamine"),
            ("[NH3+]CCCCCC(=O)[O-]", "zwitterion"),  # 9 heavy atoms, formal charges, neutral
        ],
        geometry=True,
        seed=0,
    ).molecules
    assert len(nine) == 5 and len(small) == 4
    path = tmp_path_factory.mktemp("set") / "ws.zarr"
    workspace = build(path, [*nine, *small], max_heavy_atoms=MAX_HEAVY)
    from amondask.store.ingest import read_into_workspace

    read_into_workspace([("C[N+](C)(C)C", "ammonium")], workspace, progress=False)
    return workspace


def brute_force_sets(molecules):
    """{key: n_heavy} of the union of every query's amons, and amons per query."""
    union, per_query = {}, []
    for molecule in molecules:
        amons = extract_amons(molecule, MAX_HEAVY, geometry=False)
        per_query.append(len(amons))
        union.update({amon.key: amon.n_heavy for amon in amons})
    return union, per_query


def test_distinct_amons_per_size_match_brute_force(workspace):
    summary = amon_set.amon_set_summary(workspace)
    queries = workspace.queries.molecules()
    nine = [q for q in queries if int((q.numbers > 1).sum()) == 9]
    union9, per_query9 = brute_force_sets(nine)
    union_all, _ = brute_force_sets(queries)
    assert summary["queries_by_n_heavy"][9] == 6
    assert summary["queries_9_heavy_without_charges"] == 5
    union_neutral, _ = brute_force_sets([q for q in nine if q.id != "zwitterion"])
    assert summary["distinct_amons_9_heavy_queries_without_charges"] == dict(
        Counter(union_neutral.values())
    )
    assert summary["distinct_amons_9_heavy_queries"] == dict(Counter(union9.values()))
    assert summary["distinct_amons_all_queries"] == dict(Counter(union_all.values()))
    assert len(union_all) > len(union9)  # the small queries add amons of their own
    spread = summary["per_9_heavy_query"]["amon_graphs"]
    assert (spread["min"], spread["max"]) == (min(per_query9), max(per_query9))
    assert spread["mean"] == pytest.approx(np.mean(per_query9), abs=0.01)
    # each amon occurrence of a query has at least one conformer from that query
    own = summary["per_9_heavy_query"]["own_conformers"]
    assert own["min"] >= spread["min"]


def test_error_rows_are_summarized(workspace):
    errors = amon_set.error_summary(workspace)
    assert errors["total"] == 1
    (entry,) = errors["by_type"].values()
    assert entry["records"] == ["ammonium"] and "charge" in entry["message"]


def test_our_keys_by_size_name_a_nine_heavy_query(workspace):
    ours, ids, only_charged = amon_set.our_keys_by_size(workspace)
    queries = workspace.queries.molecules()
    amons_of = {
        q.id: {a.key for a in extract_amons(q, MAX_HEAVY, geometry=False)}
        for q in queries
        if int((q.numbers > 1).sum()) == 9
    }
    for size, keys in ours.items():
        for key, row in keys.items():
            assert queries[row].id in amons_of and size <= MAX_HEAVY
            assert key in amons_of[queries[row].id]
            givers = {qid for qid, found in amons_of.items() if key in found}
            assert (key in only_charged) == (givers == {"zwitterion"})
    assert ids[0].startswith("qm9_")


@pytest.mark.parametrize(
    ("authors", "ours"),
    [
        ("CN(=O)=O", "C[N+](=O)[O-]"),  # nitro with five-valent N
        ("C=N=O", "C=[NH+][O-]"),  # N of valence 4 takes one implicit H (SMILES rule)
        ("O=N=O", "O=[NH+][O-]"),
        ("c1ccco1", "c1ccoc1"),
        ("C(C#C)C=O", "C#CCC=O"),
        ("C=C=[CH]=O", None),  # five-valent C: no closed-shell reading
    ],
)
def test_authors_smiles_become_our_keys(authors, ours):
    assert amon_set.authors_key(authors) == ours


def test_comparison_sorts_the_differences():
    ours = {2: {"CC": 0, "CO": 1}, 3: {"CCO": 0, "C[N+](=O)[O-]": 2}}
    authors = {2: {"CC": "CC", "NN": "NN"}, 3: {"CCO": "OCC", "invalid:C=C=[CH]=O": "x"}}
    variants = {"plain": {"NN": [2, 1, "q"]}}
    result = amon_set.compare_with_authors(
        ours, authors, variants, ["a", "b", "c"], only_charged={"C[N+](=O)[O-]"}
    )
    assert (result[2]["common"], result[2]["only_authors"], result[2]["only_ours"]) == (1, 1, 1)
    assert result[2]["only_ours_list"] == [
        {"key": "CO", "first_query": "b", "only_from_charged_queries": False}
    ]
    assert "plain" in result[2]["only_authors_list"][0]["cause"]
    assert "five-valent C" in result[3]["only_authors_list"][0]["cause"]
    assert result[3]["only_ours_list"][0]["first_query"] == "c"
    assert result[3]["only_ours_list"][0]["only_from_charged_queries"]
    assert result[3]["only_ours_only_from_charged_queries"] == 1


def test_a_sampled_size_reports_only_the_authors_side():
    ours = {6: {"CCCCCC": 0, "CCCCCO": 0}}
    authors = {6: {"CCCCCC": "CCCCCC", "NCCCCC": "NCCCCC"}}
    result = amon_set.compare_with_authors(ours, authors, sampled={6})
    assert result[6]["sample_of_authors"] and result[6]["only_ours"] is None
    assert (result[6]["common"], result[6]["only_authors"]) == (1, 1)


def test_group_counts_find_a_hemiaminal(tmp_path):
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    molecules = read_molecules(
        [("OC1CNC(O)CC1O", "hemiaminal"), ("CCCCCCCCC", "nonane")], geometry=True, seed=0
    ).molecules
    workspace = Workspace(tmp_path / "ws.zarr")
    read_into_workspace(molecules, workspace, progress=False)
    from amondask.pipeline import SERIAL, extract_workspace

    extract_workspace(workspace, max_heavy_atoms=1, client=SERIAL, progress=False)
    counts = amon_set.group_counts(workspace)
    assert counts["N-C(sp3)-O (hemiaminal)"]["examples"] == ["hemiaminal"]
    assert counts["N-N, both amine-type (hydrazine)"]["queries"] == 0
