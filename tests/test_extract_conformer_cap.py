"""The conformer cap of the amon store (``max_conformers_per_amon``).

References: the uncapped store (the capped one must hold the same amons and, per amon, the
uncapped store's first conformers), and a brute-force nearest-conformer search over each query's
own amon geometries (extract_amons on the query alone).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from extract_helpers import assert_same_content, build, store_content

from amondask.amons import extract_amons
from amondask.amons.geometry import (
    conformer_distance,
    conformer_signature,
    nearest_conformer,
)
from amondask.chem import read_molecules
from amondask.errors import InputError, WorkspaceParameterError
from amondask.pipeline import SERIAL, extract_workspace
from amondask.store import Workspace
from amondask.store.workspace import ROOT_ATTR

N_I = 5


@pytest.fixture(scope="module")
def queries():
    from conftest import EXAMPLES

    return read_molecules(EXAMPLES / "qm9_sample.extxyz").molecules[:8]


@pytest.fixture(scope="module")
def uncapped(tmp_path_factory, queries):
    path = tmp_path_factory.mktemp("uncapped") / "ws.zarr"
    return store_content(build(path, queries, max_heavy_atoms=N_I, partition_size=100, buckets=1))


def _conformer_rank(amon_of_conformer: np.ndarray) -> np.ndarray:
    """Rank of each conformer among its amon's conformers, in id order."""
    seen: dict[int, int] = defaultdict(int)
    ranks = np.empty(len(amon_of_conformer), dtype=np.int64)
    for row, amon in enumerate(amon_of_conformer.tolist()):
        ranks[row] = seen[amon]
        seen[amon] += 1
    return ranks


def _conformer_atoms(content: dict, rows: np.ndarray) -> list[np.ndarray]:
    offsets = content["conformers/offsets"]
    return [content["conformers/positions"][offsets[r] : offsets[r + 1]] for r in rows]


def test_nearest_conformer_is_the_first_smallest_l1_distance():
    kept = np.array([[1.0, 2.0], [1.1, 2.1], [0.9, 2.0], [1.1, 2.1]])
    assert nearest_conformer(kept, np.array([1.1, 2.1])) == 1  # first of two equal ones
    assert nearest_conformer(kept, np.array([0.0, 2.0])) == 2
    brute = min(range(len(kept)), key=lambda k: (conformer_distance(kept[k], [1.04, 2.0]), k))
    assert nearest_conformer(kept, np.array([1.04, 2.0])) == brute
    with pytest.raises(ValueError):
        nearest_conformer(np.empty((0, 2)), np.array([1.0, 2.0]))


@pytest.mark.parametrize("cap", [1, 2])
def test_capped_store_keeps_the_first_conformers_and_links_the_rest_to_the_nearest(
    tmp_path, queries, uncapped, cap
):
    amon_of = uncapped["conformers/amon"]
    per_amon = np.bincount(amon_of)
    assert per_amon.max() > cap, "the sample must have amons with more conformers than the cap"

    workspace = build(
        tmp_path / "ws.zarr",
        queries,
        max_heavy_atoms=N_I,
        partition_size=3,
        buckets=2,
        max_conformers_per_amon=cap,
    )
    capped = store_content(workspace)
    assert workspace.parameters["max_conformers_per_amon"] == cap
    # The same amons and query -> amon counts.
    for key in uncapped:
        if key.startswith(("amons/", "query_amons/")):
            np.testing.assert_array_equal(capped[key], uncapped[key], err_msg=key)
    # Per amon: the uncapped store's first min(cap, n) conformers, in the same order.
    kept_rows = np.flatnonzero(_conformer_rank(amon_of) < cap)
    np.testing.assert_array_equal(capped["conformers/amon"], amon_of[kept_rows])
    assert np.bincount(capped["conformers/amon"]).max() == cap
    for got, expected in zip(
        _conformer_atoms(capped, np.arange(len(kept_rows))),
        _conformer_atoms(uncapped, kept_rows),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)

    # Links: each (query, amon) still has a conformer; a link the uncapped store has to a kept
    # conformer stays; any other link goes to the kept conformer nearest to one of the query's
    # own geometries of that amon (brute force over extract_amons on the query alone).
    capped_amon_of = capped["conformers/amon"]
    links = set(
        zip(
            capped["query_conformers/query"].tolist(),
            capped["query_conformers/conformer"].tolist(),
            strict=True,
        )
    )
    query_amon_pairs = set(
        zip(capped["query_amons/query"].tolist(), capped["query_amons/amon"].tolist(), strict=True)
    )
    assert {(q, int(capped_amon_of[c])) for q, c in links} == query_amon_pairs
    new_row = {int(old): new for new, old in enumerate(kept_rows)}
    for q, c in zip(
        uncapped["query_conformers/query"], uncapped["query_conformers/conformer"], strict=True
    ):
        if int(c) in new_row:
            assert (int(q), new_row[int(c)]) in links
    keys = capped["amons/key"]
    signatures = {
        row: conformer_signature(positions)
        for row, positions in enumerate(_conformer_atoms(capped, np.arange(len(capped_amon_of))))
    }
    checked = 0
    for query, molecule in enumerate(queries):
        own = {amon.key: amon for amon in extract_amons(molecule, N_I)}
        for q, c in sorted(links):
            if q != query:
                continue
            amon = int(capped_amon_of[c])
            rows = np.flatnonzero(capped_amon_of == amon)
            kept = np.vstack([signatures[int(r)] for r in rows])
            nearest_rows = {
                int(rows[nearest_conformer(kept, conformer_signature(conf.molecule.positions))])
                for conf in own[keys[amon]].conformers
            }
            same_rows = {
                int(r)
                for conf in own[keys[amon]].conformers
                for r in rows
                if conformer_distance(
                    signatures[int(r)], conformer_signature(conf.molecule.positions)
                )
                <= 0.01
            }
            assert c in nearest_rows | same_rows, (molecule.id, keys[amon], c)
            checked += 1
    assert checked == len(links)


def test_cap_does_not_depend_on_partitions_buckets_or_workers(tmp_path, queries):
    from distributed import Client, LocalCluster

    one = build(
        tmp_path / "one.zarr",
        queries,
        max_heavy_atoms=N_I,
        partition_size=100,
        buckets=1,
        max_conformers_per_amon=2,
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            many = build(
                tmp_path / "many.zarr",
                queries,
                client=client,
                max_heavy_atoms=N_I,
                partition_size=1,
                buckets=5,
                max_conformers_per_amon=2,
            )
    assert_same_content(store_content(many), store_content(one))


def test_a_large_cap_gives_the_uncapped_store(tmp_path, queries, uncapped):
    workspace = build(
        tmp_path / "ws.zarr", queries, max_heavy_atoms=N_I, max_conformers_per_amon=10_000
    )
    assert_same_content(store_content(workspace), uncapped)


def test_append_with_the_cap_equals_one_capped_run(tmp_path, queries):
    one = build(tmp_path / "one.zarr", queries, max_heavy_atoms=N_I, max_conformers_per_amon=1)
    two = build(tmp_path / "two.zarr", queries[:4], max_heavy_atoms=N_I, max_conformers_per_amon=1)
    from amondask.store.ingest import read_into_workspace

    read_into_workspace(queries[4:], two, progress=False)
    extract_workspace(two, client=SERIAL, progress=False)  # the recorded cap applies
    assert_same_content(store_content(two), store_content(one))


def test_the_cap_is_a_defining_parameter(tmp_path, queries):
    workspace = build(tmp_path / "ws.zarr", queries[:2], max_conformers_per_amon=1)
    with pytest.raises(WorkspaceParameterError, match="--max-conformers-per-amon 1"):
        extract_workspace(workspace, client=SERIAL, progress=False, max_conformers_per_amon=3)
    # A store extracted before the cap existed (no recorded value) keeps every conformer.
    old = build(tmp_path / "old.zarr", queries[:2])
    meta = old.meta
    meta["parameters"] = {
        k: v for k, v in meta["parameters"].items() if k != "max_conformers_per_amon"
    }
    old.root.attrs[ROOT_ATTR] = meta
    reopened = Workspace(tmp_path / "old.zarr")
    with pytest.raises(
        WorkspaceParameterError,
        match="max_conformers_per_amon=None.*run without --max-conformers-per-amon",
    ):
        extract_workspace(reopened, client=SERIAL, progress=False, max_conformers_per_amon=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two", [1]])
def test_a_cap_below_one_is_refused(tmp_path, queries, bad):
    workspace = Workspace(tmp_path / "ws.zarr")
    with pytest.raises(InputError, match="max_conformers_per_amon"):
        extract_workspace(workspace, client=SERIAL, progress=False, max_conformers_per_amon=bad)


def test_cli_records_the_cap(tmp_path, examples_dir):
    from amondask.cli import main

    workspace = tmp_path / "ws.zarr"
    source = examples_dir / "qm9_sample.extxyz"
    code = main(
        [
            "extract",
            str(source),
            "--workspace",
            str(workspace),
            "-k",
            "3",
            "--max-conformers-per-amon",
            "1",
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    opened = Workspace(workspace, mode="r")
    assert opened.parameters["max_conformers_per_amon"] == 1
    assert np.bincount(opened.amons.conformers.read("amon")).max() == 1
