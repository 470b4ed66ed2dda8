"""The per-query and global protocols on precomputed kernels, against explicit loops (numpy
solves written out here), with numpy, zarr and dask inputs and on a distributed cluster."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from test_models_data import qm9_small

from amondask.errors import ModelError
from amondask.kernels import element_sigmas, local_kernel
from amondask.models import AmonKRR, global_protocol, per_query_protocol
from amondask.models.baseline import element_count_matrix
from amondask.represent import element_blocks, slatm_mbtypes

ALPHA = 1e-4
ELEMENTS = [1, 6, 7, 8, 9]


@pytest.fixture(scope="module")
def problem():
    """Small QM9 molecules as 'amons', 6-heavy-atom ones as 'queries'; each query's amons are
    the small molecules whose heavy elements all occur in the query (at least 4 of them)."""
    molecules, energies = qm9_small()
    heavy = np.array([int(np.sum(n > 1)) for n, _ in molecules])
    amon_index = np.flatnonzero(heavy <= 4)[:40]
    query_index = np.flatnonzero(heavy == 6)[:12]
    amons = [molecules[i] for i in amon_index]
    queries = [molecules[i] for i in query_index]
    mbtypes = slatm_mbtypes([n for n, _ in amons + queries])
    amon_blocks = element_blocks(amons, mbtypes, dgrid=(0.04, 0.04))
    query_blocks = element_blocks(queries, mbtypes, dgrid=(0.04, 0.04))
    sigma = element_sigmas(amon_blocks)
    amon_kernel = local_kernel(amon_blocks, sigma=sigma)
    query_kernel = local_kernel(
        query_blocks, amon_blocks, sigma=sigma, n_row_molecules=len(queries)
    )
    query_self = np.diag(local_kernel(query_blocks, sigma=sigma))
    query_amons = []
    for numbers, _ in queries:
        mine = set(numbers.tolist())
        members = [i for i, (n, _) in enumerate(amons) if set(n.tolist()) <= mine]
        query_amons.append(np.array(members, dtype=np.int64))
    assert min(len(a) for a in query_amons) >= 4
    return {
        "amon_kernel": amon_kernel,
        "amon_energies": energies[amon_index],
        "query_amon_kernel": query_kernel,
        "query_amons": query_amons,
        "amon_element_counts": element_count_matrix([n for n, _ in amons], ELEMENTS),
        "query_element_counts": element_count_matrix([n for n, _ in queries], ELEMENTS),
        "query_self_kernel": query_self,
    }


def explicit_per_query(problem):
    """(energy, uncertainty, covered) per query by a plain loop of numpy solves."""
    energies, stds, covered = [], [], []
    for q, amons in enumerate(problem["query_amons"]):
        kernel = problem["amon_kernel"][np.ix_(amons, amons)]
        y = problem["amon_energies"][amons]
        counts = problem["amon_element_counts"][amons]
        coefficients = np.linalg.lstsq(counts, y, rcond=None)[0]
        residual = y - counts @ coefficients
        system = kernel + ALPHA * np.eye(len(amons))
        weights = np.linalg.solve(system, residual)
        row = problem["query_amon_kernel"][q, amons]
        energies.append(row @ weights + problem["query_element_counts"][q] @ coefficients)
        signal_variance = residual @ weights / len(amons)
        variance = problem["query_self_kernel"][q] - row @ np.linalg.solve(system, row)
        stds.append(np.sqrt(signal_variance * max(variance, 0.0)))
        query_has = problem["query_element_counts"][q] > 0
        covered.append(not np.any(query_has & (counts.sum(axis=0) == 0)))
    return np.array(energies), np.array(stds), np.array(covered)


def test_per_query_equals_an_explicit_loop(problem):
    energy, std, covered = explicit_per_query(problem)
    dataset = per_query_protocol(**problem, alpha=ALPHA, scheduler="sync", queries_per_task=5)
    np.testing.assert_allclose(dataset.energy.values, energy, rtol=1e-11)
    np.testing.assert_allclose(dataset.uncertainty.values, std, rtol=1e-4, atol=1e-8)
    np.testing.assert_array_equal(dataset.covered.values, covered)
    assert dataset.n_train.values.tolist() == [len(a) for a in problem["query_amons"]]
    assert set(dataset.protocol.values) == {"per-query"}
    assert dataset.energy.attrs["units"] == "hartree"


def test_per_query_task_size_threads_and_stored_kernels_agree(problem):
    reference = per_query_protocol(**problem, scheduler="sync", queries_per_task=1)
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    stored = {}
    for name in ("amon_kernel", "query_amon_kernel"):
        stored[name] = group.create_array(
            name, shape=problem[name].shape, dtype="float64", chunks=(7, 9)
        )
        stored[name][...] = problem[name]
    from_zarr = per_query_protocol(**{**problem, **stored}, scheduler="threads", queries_per_task=4)
    from_dask = per_query_protocol(
        **{
            **problem,
            "amon_kernel": da.from_array(problem["amon_kernel"], chunks=11),
            "query_amon_kernel": da.from_array(problem["query_amon_kernel"], chunks=5),
        },
        scheduler="sync",
    )
    for other in (from_zarr, from_dask):
        np.testing.assert_allclose(other.energy.values, reference.energy.values, rtol=1e-12)
        np.testing.assert_allclose(
            other.uncertainty.values, reference.uncertainty.values, rtol=1e-9
        )


def test_per_query_on_a_distributed_cluster_equals_serial(problem):
    distributed = pytest.importorskip("distributed")
    serial = per_query_protocol(**problem, scheduler="sync")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        parallel = per_query_protocol(**problem, scheduler=client)
    np.testing.assert_allclose(parallel.energy.values, serial.energy.values, rtol=1e-12)


def test_query_without_amons_and_uncovered_element(problem):
    amons = list(problem["query_amons"])
    amons[0] = np.zeros(0, dtype=np.int64)
    # query 1 keeps only amons without oxygen, and it has oxygen
    oxygen = ELEMENTS.index(8)
    assert problem["query_element_counts"][1, oxygen] > 0
    amons[1] = np.array(
        [a for a in amons[1] if problem["amon_element_counts"][a, oxygen] == 0], dtype=np.int64
    )
    dataset = per_query_protocol(**{**problem, "query_amons": amons}, scheduler="sync")
    assert np.isnan(dataset.energy.values[0]) and not dataset.covered.values[0]
    assert dataset.n_train.values[0] == 0
    assert not dataset.covered.values[1] and np.isnan(dataset.energy.values[1])
    assert np.isfinite(dataset.energy.values[2:]).all()
    with pytest.raises(ModelError, match="out of range"):
        per_query_protocol(**{**problem, "query_amons": [np.array([999])] * len(amons)})


def test_global_protocol_equals_one_model_and_sklearn(problem):
    kernel_ridge = pytest.importorskip("sklearn.kernel_ridge")
    ids = [f"q{i}" for i in range(len(problem["query_amons"]))]
    inputs = {k: v for k, v in problem.items() if k != "query_amons"}
    dataset = global_protocol(**inputs, query_ids=ids, alpha=ALPHA)
    counts = problem["amon_element_counts"]
    coefficients = np.linalg.lstsq(counts, problem["amon_energies"], rcond=None)[0]
    residual_model = kernel_ridge.KernelRidge(alpha=ALPHA, kernel="precomputed")
    residual_model.fit(problem["amon_kernel"], problem["amon_energies"] - counts @ coefficients)
    expected = residual_model.predict(problem["query_amon_kernel"]) + (
        problem["query_element_counts"] @ coefficients
    )
    np.testing.assert_allclose(dataset.energy.values, expected, rtol=1e-10)
    assert dataset.query_id.values.tolist() == ids
    assert set(dataset.protocol.values) == {"global"}
    assert (dataset.n_train.values == len(problem["amon_energies"])).all()
    # a query whose amons are all amons has the same model in both protocols
    everything = [np.arange(len(problem["amon_energies"]))] * len(ids)
    per_query = per_query_protocol(**{**problem, "query_amons": everything}, scheduler="sync")
    np.testing.assert_allclose(per_query.energy.values, dataset.energy.values, rtol=1e-12)
    np.testing.assert_allclose(per_query.uncertainty.values, dataset.uncertainty.values, rtol=1e-9)


def test_global_protocol_with_molecules_equals_precomputed():
    """Consistency of AmonKRR's two entry points through the global protocol."""
    molecules, energies = qm9_small()
    train, queries = molecules[:40], molecules[100:105]
    model = AmonKRR().fit(train, energies[:40])
    blocks = element_blocks(train, model.mbtypes_, dgrid=(0.04, 0.04))
    query_blocks = element_blocks(queries, model.mbtypes_, dgrid=(0.04, 0.04))
    dataset = global_protocol(
        local_kernel(blocks, sigma=model.sigma_),
        energies[:40],
        local_kernel(query_blocks, blocks, sigma=model.sigma_, n_row_molecules=5),
        amon_element_counts=element_count_matrix([n for n, _ in train], model.elements_),
        query_element_counts=element_count_matrix([n for n, _ in queries], model.elements_),
    )
    np.testing.assert_allclose(dataset.energy.values, model.predict(queries), rtol=1e-10)


def test_per_query_molecules_equals_an_explicit_loop():
    """Each query: basis of its amons + itself, the authors' widths from its amons, lstsq
    baseline, a numpy solve, all written out here."""
    molecules, energies = qm9_small()
    heavy = np.array([int(np.sum(n > 1)) for n, _ in molecules])
    amon_index = np.flatnonzero(heavy <= 3)[:15]
    amons = [molecules[i] for i in amon_index]
    queries = [molecules[i] for i in np.flatnonzero(heavy == 5)[:4]]
    query_amons = [np.arange(0, 15, 1), np.arange(0, 15, 2), np.arange(1, 15, 2), np.arange(8)]
    expected = []
    for query, members in zip(queries, query_amons, strict=True):
        training = [amons[i] for i in members]
        y = energies[amon_index][members]
        mbtypes = slatm_mbtypes([n for n, _ in [*training, query]])
        blocks = element_blocks(training, mbtypes, dgrid=(0.04, 0.04))
        sigma = element_sigmas({z: b for z, b in blocks.items() if len(b.molecule_index)})
        kernel = local_kernel(blocks, sigma=sigma)
        row = local_kernel(
            element_blocks([query], mbtypes, dgrid=(0.04, 0.04)),
            blocks,
            sigma=sigma,
            n_row_molecules=1,
        )[0]
        elements = sorted({int(z) for n, _ in training for z in n})
        counts = element_count_matrix([n for n, _ in training], elements)
        coefficients = np.linalg.lstsq(counts, y, rcond=None)[0]
        weights = np.linalg.solve(kernel + ALPHA * np.eye(len(y)), y - counts @ coefficients)
        query_counts = element_count_matrix([query[0]], elements)[0]
        expected.append(row @ weights + query_counts @ coefficients)
    from amondask.models import per_query_molecules

    for scheduler, per_task in (("sync", 1), ("threads", 3)):
        dataset = per_query_molecules(
            AmonKRR(alpha=ALPHA),
            amons,
            energies[amon_index],
            queries,
            query_amons,
            scheduler=scheduler,
            queries_per_task=per_task,
        )
        np.testing.assert_allclose(dataset.energy.values, expected, rtol=1e-10)
        assert dataset.n_train.values.tolist() == [15, 8, 7, 8]
        assert np.isfinite(dataset.atom_similarity.values).all()
