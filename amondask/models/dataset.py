"""The prediction Dataset: one row per query, energies in hartree, with provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

UNCERTAINTY_DESCRIPTION = (
    "posterior standard deviation of the Gaussian-process view of KRR: "
    "sqrt(s2 * (k(x,x) - k_x^T (K + lambda I)^-1 k_x)), s2 = y_res^T alpha / n_train "
    "(maximum-likelihood signal variance); NaN when not computed"
)


def prediction_dataset(
    *,
    query_ids: Sequence[str],
    energy_hartree: np.ndarray,
    uncertainty_hartree: np.ndarray,
    covered: np.ndarray,
    n_train: np.ndarray,
    protocol: str | Sequence[str],
    baseline_hartree: np.ndarray | None = None,
    atom_similarity: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """An :class:`xarray.Dataset` with dimension ``query_id`` (the query ids as strings) and

    * ``energy`` (hartree): the predicted energy;
    * ``uncertainty`` (hartree): posterior standard deviation (see the attrs);
    * ``covered`` (bool): every atom of the query has a training atom of its element (and,
      where known, one at least ``coverage_threshold`` similar);
    * ``n_train`` (int): training molecules (amons) the query's model used;
    * ``protocol`` (str): ``"global"`` or ``"per-query"``;
    * ``baseline_energy`` (hartree): the per-element baseline part of ``energy``;
    * ``atom_similarity`` (1): smallest over the query's atoms of the largest atom-kernel value
      to a same-element training atom (NaN when the kernel was precomputed).
    """
    n_query = len(query_ids)
    if np.shape(energy_hartree) != (n_query,):
        raise ValueError(
            f"{n_query} query ids for {np.shape(energy_hartree)} energies; give one id per query"
        )
    protocols = [protocol] * n_query if isinstance(protocol, str) else list(protocol)
    if baseline_hartree is None:
        baseline_hartree = np.full(n_query, np.nan)
    if atom_similarity is None:
        atom_similarity = np.full(n_query, np.nan)
    variables = {
        "energy": (
            "query_id",
            np.asarray(energy_hartree, np.float64),
            {"units": "hartree", "long_name": "predicted energy"},
        ),
        "uncertainty": (
            "query_id",
            np.asarray(uncertainty_hartree, np.float64),
            {"units": "hartree", "description": UNCERTAINTY_DESCRIPTION},
        ),
        "covered": (
            "query_id",
            np.asarray(covered, bool),
            {"description": "every query atom has a similar enough training atom of its element"},
        ),
        "n_train": (
            "query_id",
            np.asarray(n_train, np.int64),
            {"units": "1", "long_name": "training amons used by the query's model"},
        ),
        "protocol": ("query_id", np.asarray(protocols, dtype=str), {}),
        "baseline_energy": (
            "query_id",
            np.asarray(baseline_hartree, np.float64),
            {"units": "hartree", "long_name": "per-element baseline part of energy"},
        ),
        "atom_similarity": (
            "query_id",
            np.asarray(atom_similarity, np.float64),
            {
                "units": "1",
                "description": "min over query atoms of the max atom-kernel value to a "
                "same-element training atom",
            },
        ),
    }
    dataset = xr.Dataset(variables, coords={"query_id": np.asarray(list(query_ids), dtype=str)})
    dataset.attrs.update({"energy_units": "hartree", **dict(attrs or {})})
    return dataset
