"""The two protocols of the paper, on precomputed kernels.

* **global**: one :class:`AmonKRR` on all amons predicts every query
  (:func:`global_protocol`);
* **per-query** (the authors' protocol): each query's model is fitted on that query's own amons
  only, sliced out of the stored amon-amon kernel, with its own per-element baseline, lambda
  and kernel widths as stored (:func:`per_query_protocol`). Queries are independent, so they
  are cut into Dask tasks of ``queries_per_task`` queries; each task reads the amon kernel once,
  for the union of its queries' amons (an orthogonal selection: numpy, zarr and dask arrays
  work), and never the whole kernel. :func:`per_query_molecules` does the same from molecules
  (a fresh :class:`AmonKRR` per query, widths from the query's own amons).

Inputs share the amon order: ``amon_kernel`` (n_amons, n_amons), ``amon_energies`` (n_amons,)
hartree, ``amon_element_counts`` (n_amons, n_elements); queries: ``query_amon_kernel``
(n_queries, n_amons), ``query_element_counts`` (n_queries, n_elements), ``query_self_kernel``
(n_queries,) k(q, q) (for the uncertainty; optional), and per query the int indices of its amons.
Both functions return the Dataset of :func:`amondask.models.prediction_dataset`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from amondask import config
from amondask.errors import ModelError
from amondask.models.dataset import prediction_dataset
from amondask.models.krr import AmonKRR


def take(array: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """array[rows][:, cols] as float64 numpy for a numpy, zarr or dask 2-D array."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if isinstance(array, np.ndarray):
        return np.asarray(array[np.ix_(rows, cols)], dtype=np.float64)
    if hasattr(array, "get_orthogonal_selection"):  # zarr
        return np.asarray(array.get_orthogonal_selection((rows, cols)), dtype=np.float64)
    block = array[rows][:, cols]
    if hasattr(block, "compute"):
        block = block.compute()
    return np.asarray(block, dtype=np.float64)


def _take_rows(array: Any | None, rows: np.ndarray) -> np.ndarray | None:
    if array is None:
        return None
    return np.asarray(array, dtype=np.float64)[rows]


class _Handle:
    """Keeps a big array out of dask's graph traversal (it enters the graph once, as a key)."""

    def __init__(self, value: Any):
        self.value = value


def _per_query_task(
    handles: _Handle,
    query_indices: np.ndarray,
    amon_lists: list[np.ndarray],
    alpha: float,
    baseline: str | None,
) -> dict[str, np.ndarray]:
    """Fit and predict the queries ``query_indices`` (one task); arrays of len(query_indices)."""
    inputs = handles.value
    union = np.unique(np.concatenate(amon_lists)) if amon_lists else np.zeros(0, np.int64)
    amon_block = take(inputs["amon_kernel"], union, union)
    query_block = take(inputs["query_amon_kernel"], query_indices, union)
    n = len(query_indices)
    out = {
        "energy": np.full(n, np.nan),
        "baseline": np.full(n, np.nan),
        "uncertainty": np.full(n, np.nan),
        "covered": np.zeros(n, dtype=bool),
        "n_train": np.zeros(n, dtype=np.int64),
    }
    amon_counts, query_counts = inputs["amon_element_counts"], inputs["query_element_counts"]
    diagonal = inputs["query_self_kernel"]
    for local, (query, amons) in enumerate(zip(query_indices.tolist(), amon_lists, strict=True)):
        if len(amons) == 0:
            continue  # no amons: no model; energy NaN, not covered
        position = np.searchsorted(union, amons)
        model = AmonKRR(kernel="precomputed", alpha=alpha, baseline=baseline, solver="scipy")
        model.fit(
            amon_block[np.ix_(position, position)],
            inputs["amon_energies"][amons],
            element_counts=None if amon_counts is None else amon_counts[amons],
        )
        parts = model._predict_precomputed(
            query_block[local : local + 1, position],
            None if query_counts is None else query_counts[query : query + 1],
            None if diagonal is None else diagonal[query : query + 1],
            True,
        )
        out["energy"][local] = parts["energy"][0]
        out["baseline"][local] = parts["baseline"][0]
        out["uncertainty"][local] = parts["uncertainty"][0]
        out["covered"][local] = parts["covered"][0]
        out["n_train"][local] = len(amons)
    return out


def _check_inputs(
    amon_kernel: Any,
    amon_energies: np.ndarray,
    query_amon_kernel: Any,
    amon_element_counts: np.ndarray | None,
    query_element_counts: np.ndarray | None,
    query_self_kernel: np.ndarray | None,
    baseline: str | None,
) -> tuple[int, int]:
    n_amons = amon_energies.shape[0]
    if tuple(amon_kernel.shape) != (n_amons, n_amons):
        raise ModelError(
            f"amon_kernel must be (n_amons, n_amons) = ({n_amons}, {n_amons}) for "
            f"{n_amons} amon energies, got {tuple(amon_kernel.shape)}"
        )
    if len(query_amon_kernel.shape) != 2 or query_amon_kernel.shape[1] != n_amons:
        raise ModelError(
            f"query_amon_kernel must be (n_queries, n_amons = {n_amons}), got "
            f"{tuple(query_amon_kernel.shape)}"
        )
    n_queries = int(query_amon_kernel.shape[0])
    if baseline == "per-element" and (amon_element_counts is None or query_element_counts is None):
        raise ModelError(
            "baseline='per-element' needs amon_element_counts and query_element_counts; or "
            "pass baseline=None"
        )
    if amon_element_counts is not None and amon_element_counts.shape[0] != n_amons:
        raise ModelError(f"amon_element_counts must have {n_amons} rows")
    if query_element_counts is not None and query_element_counts.shape[0] != n_queries:
        raise ModelError(f"query_element_counts must have {n_queries} rows")
    if query_self_kernel is not None and query_self_kernel.shape != (n_queries,):
        raise ModelError(f"query_self_kernel must be ({n_queries},)")
    return n_amons, n_queries


def _distributed_client(scheduler: Any) -> Any:
    """The distributed Client to run on: ``scheduler`` itself when it is one, the default Client
    when ``scheduler`` is None and one is active, else None (a local dask scheduler)."""
    if scheduler is not None:
        return scheduler if hasattr(scheduler, "scatter") and hasattr(scheduler, "submit") else None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _run_tasks(
    function: Any, shared: dict[str, Any], arguments: list[tuple], scheduler: Any
) -> list[dict[str, np.ndarray]]:
    """``function(_Handle(shared), *args)`` for each args tuple, in order, on ``scheduler``.

    On a distributed Client the shared inputs are scattered to every worker once (not put in
    the task graph, which would copy large kernels through the scheduler); on a local
    scheduler they enter the graph once as one key.
    """
    if not arguments:
        return []
    client = _distributed_client(scheduler)
    if client is not None:
        from amondask.cluster import scatter_to_all

        handle = scatter_to_all(client, _Handle(shared), hash=False)
        futures = [client.submit(function, handle, *args, pure=False) for args in arguments]
        return client.gather(futures)
    handle = dask.delayed(_Handle(shared), traverse=False)
    tasks = [dask.delayed(function)(handle, *args) for args in arguments]
    return list(dask.compute(*tasks, scheduler=scheduler))


def _default_queries_per_task(n_queries: int, scheduler: Any) -> int:
    threads = os.cpu_count() or 1
    if hasattr(scheduler, "nthreads"):  # a distributed Client
        try:
            threads = max(sum(scheduler.nthreads().values()), 1)
        except Exception:  # noqa: BLE001 - a client that cannot answer: use the local count
            pass
    return max(1, math.ceil(n_queries / (4 * threads)))


def _per_query_dataset(
    results: list[dict[str, np.ndarray]],
    query_ids: Sequence[Any],
    attrs: dict[str, Any],
    *,
    similarity: bool = False,
) -> xr.Dataset:
    """The prediction Dataset of the per-query tasks' results, concatenated in task order."""
    keys = ["energy", "baseline", "uncertainty", "covered", "n_train"]
    keys += ["similarity"] if similarity else []
    merged = {
        key: np.concatenate([r[key] for r in results]) if results else np.zeros(0) for key in keys
    }
    return prediction_dataset(
        query_ids=[str(i) for i in query_ids],
        energy_hartree=merged["energy"],
        uncertainty_hartree=merged["uncertainty"],
        covered=merged["covered"].astype(bool),
        n_train=merged["n_train"].astype(np.int64),
        protocol="per-query",
        baseline_hartree=merged["baseline"],
        atom_similarity=merged.get("similarity"),
        attrs=attrs,
    )


def per_query_protocol(
    amon_kernel: Any,
    amon_energies: Any,
    query_amon_kernel: Any,
    query_amons: Sequence[Sequence[int]],
    *,
    amon_element_counts: Any = None,
    query_element_counts: Any = None,
    query_self_kernel: Any = None,
    query_ids: Sequence[Any] | None = None,
    alpha: float = 1e-4,
    baseline: str | None = "per-element",
    scheduler: Any = None,
    queries_per_task: int | None = None,
) -> xr.Dataset:
    """The paper's protocol: each query predicted by a model on its own amons only.

    Args:
        amon_kernel: (n_amons, n_amons) local kernel of all amons (numpy, zarr or dask).
        amon_energies: (n_amons,) hartree.
        query_amon_kernel: (n_queries, n_amons) kernel between queries and amons.
        query_amons: per query, the indices of its amons (its training set).
        amon_element_counts, query_element_counts: (n, n_elements) element counts, same
            columns (needed for the baseline and the coverage flag).
        query_self_kernel: (n_queries,) k(q, q) for the posterior uncertainty (NaN without).
        query_ids: ids for the Dataset (default 0..n_queries-1).
        alpha: lambda of every query's model.
        baseline: ``"per-element"`` (fitted on the query's amons) or None.
        scheduler: a ``distributed.Client`` (the shared inputs are scattered to every worker
            once), or a local dask scheduler name for :func:`dask.compute` (``"sync"``,
            ``"threads"``, ``"processes"``); None: the active default Client if there is one,
            else dask's default (threads).
        queries_per_task: queries per task (None: ``amondask.models.queries-per-task``, else
            about four tasks per worker thread).

    Returns:
        The prediction Dataset with ``protocol="per-query"`` and ``n_train`` the number of the
        query's amons; a query without amons gets energy NaN and ``covered=False``.
    """
    amon_energies = np.asarray(amon_energies, dtype=np.float64).reshape(-1)
    amon_counts = None if amon_element_counts is None else np.asarray(amon_element_counts, float)
    query_counts = None if query_element_counts is None else np.asarray(query_element_counts, float)
    diagonal = None if query_self_kernel is None else np.asarray(query_self_kernel, float)
    n_amons, n_queries = _check_inputs(
        amon_kernel, amon_energies, query_amon_kernel, amon_counts, query_counts, diagonal, baseline
    )
    if len(query_amons) != n_queries:
        raise ModelError(f"query_amons has {len(query_amons)} lists for {n_queries} queries")
    amon_lists = [np.asarray(a, dtype=np.int64).reshape(-1) for a in query_amons]
    for query, amons in enumerate(amon_lists):
        if len(amons) and (amons.min() < 0 or amons.max() >= n_amons):
            raise ModelError(f"query {query}: amon index out of range 0..{n_amons - 1}")
        if len(np.unique(amons)) != len(amons):
            raise ModelError(f"query {query}: repeated amon indices; give each amon once")
    per_task = config.get("models.queries-per-task", queries_per_task)
    per_task = int(per_task) if per_task else _default_queries_per_task(n_queries, scheduler)
    shared = {
        "amon_kernel": amon_kernel,
        "amon_energies": amon_energies,
        "query_amon_kernel": query_amon_kernel,
        "amon_element_counts": amon_counts,
        "query_element_counts": query_counts,
        "query_self_kernel": diagonal,
    }
    arguments = []
    for start in range(0, n_queries, per_task):
        indices = np.arange(start, min(start + per_task, n_queries))
        arguments.append((indices, [amon_lists[i] for i in indices], float(alpha), baseline))
    results = _run_tasks(_per_query_task, shared, arguments, scheduler)
    ids = list(range(n_queries)) if query_ids is None else list(query_ids)
    return _per_query_dataset(
        results, ids, {"kernel": "precomputed", "alpha": float(alpha), "baseline": str(baseline)}
    )


def global_protocol(
    amon_kernel: Any,
    amon_energies: Any,
    query_amon_kernel: Any,
    *,
    amon_element_counts: Any = None,
    query_element_counts: Any = None,
    query_self_kernel: Any = None,
    query_ids: Sequence[Any] | None = None,
    alpha: float = 1e-4,
    baseline: str | None = "per-element",
    solver: str = "auto",
    elements: Sequence[int] | None = None,
) -> xr.Dataset:
    """One model on all amons predicts every query (arguments as :func:`per_query_protocol`;
    ``solver`` as :func:`amondask.solve.solve`). To keep the model, fit
    ``AmonKRR(kernel="precomputed")`` yourself and save it."""
    amon_energies = np.asarray(amon_energies, dtype=np.float64).reshape(-1)
    amon_counts = None if amon_element_counts is None else np.asarray(amon_element_counts, float)
    query_counts = None if query_element_counts is None else np.asarray(query_element_counts, float)
    diagonal = None if query_self_kernel is None else np.asarray(query_self_kernel, float)
    _check_inputs(
        amon_kernel, amon_energies, query_amon_kernel, amon_counts, query_counts, diagonal, baseline
    )
    model = AmonKRR(kernel="precomputed", alpha=alpha, baseline=baseline, solver=solver)
    model.fit(amon_kernel, amon_energies, element_counts=amon_counts, elements=elements)
    return model.predict(
        query_amon_kernel,
        element_counts=query_counts,
        self_kernel_values=diagonal,
        return_dataset=True,
        query_ids=query_ids,
    )


def _per_query_molecules_task(
    handles: _Handle,
    query_indices: np.ndarray,
    amon_lists: list[np.ndarray],
    params: dict[str, Any],
    basis: str,
) -> dict[str, np.ndarray]:
    from amondask.models.basis import molecule_arrays
    from amondask.represent import slatm_mbtypes

    inputs = handles.value
    n = len(query_indices)
    out = {
        "energy": np.full(n, np.nan),
        "baseline": np.full(n, np.nan),
        "uncertainty": np.full(n, np.nan),
        "covered": np.zeros(n, dtype=bool),
        "n_train": np.zeros(n, dtype=np.int64),
        "similarity": np.full(n, np.nan),
    }
    for local, (query, amons) in enumerate(zip(query_indices.tolist(), amon_lists, strict=True)):
        if len(amons) == 0:
            continue
        training = [inputs["amons"][i] for i in amons]
        molecule = inputs["queries"][query]
        model_params = dict(params)
        if basis == "union" and model_params.get("mbtypes") is None:
            numbers = [molecule_arrays(m)[0] for m in [*training, molecule]]
            model_params["mbtypes"] = slatm_mbtypes(numbers)
        model = AmonKRR(**model_params).fit(training, inputs["amon_energies"][amons])
        parts = model._predict_molecules([molecule], True)
        for key in ("energy", "baseline", "uncertainty", "covered", "similarity"):
            out[key][local] = parts[key][0]
        out["n_train"][local] = len(amons)
    return out


def per_query_molecules(
    estimator: AmonKRR,
    amons: Sequence[Any],
    amon_energies: Any,
    queries: Sequence[Any],
    query_amons: Sequence[Sequence[int]],
    *,
    basis: str = "union",
    query_ids: Sequence[Any] | None = None,
    scheduler: Any = None,
    queries_per_task: int | None = None,
) -> xr.Dataset:
    """The per-query protocol from molecules: for each query a fresh copy of ``estimator`` is
    fitted on its own amons (widths ``sigma="auto"`` then come from those amons, as the
    authors' per-query models) and predicts it.

    Args:
        estimator: the model template (its parameters; it is not fitted itself).
        amons: all amon molecules (Molecules with positions or (numbers, positions) pairs).
        amon_energies: (n_amons,) hartree.
        queries: the query molecules.
        query_amons: per query, the indices of its amons in ``amons``.
        basis: ``"union"``: each model's aSLATM basis (mbtypes) is that of its amons and the
            query together ("the whole data set", as qmllib's mbtypes); ``"amons"``: the amons
            only (query contributions of types no amon has are left out). Ignored when the
            estimator has explicit ``mbtypes``.
        query_ids, scheduler, queries_per_task: as :func:`per_query_protocol`.

    Returns:
        The prediction Dataset with ``protocol="per-query"`` (with atom similarity and the
        coverage threshold test, which need molecules).
    """
    if estimator.kernel == "precomputed":
        raise ModelError("per_query_molecules needs a molecule kernel; use per_query_protocol")
    if basis not in ("union", "amons"):
        raise ModelError(f"basis={basis!r}: use 'union' or 'amons'")
    amons = list(amons)
    queries = list(queries)
    amon_energies = np.asarray(amon_energies, dtype=np.float64).reshape(-1)
    if len(amons) != amon_energies.shape[0]:
        raise ModelError(f"{len(amons)} amons but {amon_energies.shape[0]} amon energies")
    if len(query_amons) != len(queries):
        raise ModelError(f"query_amons has {len(query_amons)} lists for {len(queries)} queries")
    amon_lists = [np.asarray(a, dtype=np.int64).reshape(-1) for a in query_amons]
    for query, members in enumerate(amon_lists):
        if len(members) and (members.min() < 0 or members.max() >= len(amons)):
            raise ModelError(f"query {query}: amon index out of range 0..{len(amons) - 1}")
    estimator._validate_params()
    n_queries = len(queries)
    per_task = config.get("models.queries-per-task", queries_per_task)
    per_task = int(per_task) if per_task else _default_queries_per_task(n_queries, scheduler)
    shared = {"amons": amons, "amon_energies": amon_energies, "queries": queries}
    params = estimator.get_params()
    arguments = [
        (
            np.arange(start, min(start + per_task, n_queries)),
            amon_lists[start : start + per_task],
            params,
            basis,
        )
        for start in range(0, n_queries, per_task)
    ]
    results = _run_tasks(_per_query_molecules_task, shared, arguments, scheduler)
    if query_ids is None:
        from amondask.models.basis import molecule_id

        query_ids = [molecule_id(m, i) for i, m in enumerate(queries)]
    return _per_query_dataset(
        results, query_ids, {**estimator._dataset_attrs(), "basis": basis}, similarity=True
    )
