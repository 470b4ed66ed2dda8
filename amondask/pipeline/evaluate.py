"""The evaluation stage: predictions against the queries' own labels, and the learning curve.

For validation, the queries themselves are labeled at the level the amons were (the labeling
stage with ``target="queries"``: for GFN2-xTB a relaxation), and predicted again at those labeled
geometries, since an energy belongs to the geometry it was computed at (the run predicts the
queries at their input geometries, which the labeler has not seen). The queries' aSLATM at the
labeled geometries is stored as ``represent/aslatm/queries-at-<level>`` and its kernel as
``kernels/amons-queries-at-<level>``; both, and the query labels, are resumable like every stage.

Errors are predicted minus reference, in kcal/mol, over the queries whose label is ``ok`` and
whose prediction is finite. The learning curve is the paper's central figure: the MAE when only
amons of at most N_I = 1, 2, ... heavy atoms are trained on (global protocol: one model per N_I
on all such amons; per-query protocol: each query's own such amons), with the same kernel
widths and lambda. The per-element baseline alone (the model's linear part, fitted on the same
amons) gives the MAE a broken kernel model would not beat.

The result is an xarray Dataset (per query: ``reference_energy``, ``predicted_energy``,
``baseline_energy``, ``uncertainty`` in hartree, ``error`` in kcal/mol, ``covered``,
``label_status``; per N_I: ``curve_mae``, ``curve_median``, ``curve_rmse``, ``curve_max``,
``curve_n_train``, ``curve_n_predicted``, and per (N_I, query) ``curve_error``, ``curve_covered``
and ``curve_uncertainty``; the summary numbers in ``attrs``: ``mae_kcal_mol``,
``median_error_kcal_mol``, ``rmse_kcal_mol``, ``max_error_kcal_mol``, ``baseline_mae_kcal_mol``,
...), also stored in the workspace as ``evaluations/<protocol>-<level>/`` (a per-query table,
the numbers in its attrs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from amondask.errors import WorkspaceError
from amondask.pipeline.train import KCAL_PER_MOL_PER_HARTREE
from amondask.store.table import Column
from amondask.store.workspace import Workspace

SUMMARY_KEYS = (
    "mae_kcal_mol",
    "median_error_kcal_mol",
    "rmse_kcal_mol",
    "max_error_kcal_mol",
    "baseline_mae_kcal_mol",
    "input_geometry_mae_kcal_mol",
    "n_evaluated",
    "n_queries",
)
EVALUATION_COLUMNS = {
    "query": Column("int64"),
    "id": Column("str"),
    "smiles": Column("str"),
    "label_status": Column("str"),
    "reference_hartree": Column("float64"),
    "predicted_hartree": Column("float64"),
    "baseline_hartree": Column("float64"),
    "error_kcal_per_mol": Column("float64"),
    "covered": Column("bool"),
}


@dataclass
class _Errors:
    mae: float
    rmse: float
    max: float
    n: int
    median: float = np.nan
    """median |error|"""


def error_statistics(error_kcal: np.ndarray) -> _Errors:
    """MAE, RMSE, max and median |error| (kcal/mol) over the finite entries of ``error_kcal``."""
    finite = np.asarray(error_kcal, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return _Errors(np.nan, np.nan, np.nan, 0)
    return _Errors(
        float(np.mean(np.abs(finite))),
        float(np.sqrt(np.mean(finite**2))),
        float(np.max(np.abs(finite))),
        len(finite),
        float(np.median(np.abs(finite))),
    )


def _default_protocol(workspace: Workspace) -> str:
    for protocol in ("global", "per-query"):
        if workspace.has(f"predictions/{protocol}"):
            return protocol
    raise WorkspaceError(
        f"workspace {workspace.location} has no predictions to evaluate; run "
        f"`amondask run QUERIES --workspace {workspace.location}` first"
    )


def _check_level(workspace: Workspace, protocol: str, level: str) -> None:
    """The model (global) or the amon labels (per-query) must be at the labeler's level."""
    from amondask.store.labels import label_levels

    if protocol == "global":
        if not workspace.has("models/global"):
            raise WorkspaceError(
                f"workspace {workspace.location} has no global model; run `amondask run` "
                "(with --protocol global) first"
            )
        trained = str(workspace.root["models/global"].attrs.get("level_of_theory"))
        if trained != level:
            raise WorkspaceError(
                f"the global model was trained on labels at {trained!r}, and the queries would be "
                f"labeled at {level!r}; evaluate with the labeler of the run (--labeler)"
            )
    elif level not in label_levels(workspace).values():
        raise WorkspaceError(
            f"the workspace's amons have no labels at {level!r} (levels: "
            f"{sorted(label_levels(workspace).values()) or 'none'}); evaluate with the labeler "
            "of the run (--labeler)"
        )


def _predict(
    workspace: Workspace, protocol: str, level: str, representation: str, client: Any
) -> Any:
    """The workspace's predictions (not stored) for the queries' representation
    ``representation``: the stored global model, or the per-query protocol."""
    from amondask.pipeline.train import predict_per_query, predict_workspace

    if protocol == "per-query":
        return predict_per_query(
            workspace, level, client=client, representation=representation, store=False
        )
    return predict_workspace(workspace, representation=representation, store=False)


def _curve_point(
    workspace: Workspace,
    protocol: str,
    level: str,
    representation: str,
    client: Any,
    training: tuple[np.ndarray, np.ndarray],
    n_heavy: int,
) -> Any:
    """Predictions when only amons of at most ``n_heavy`` heavy atoms are trained on (global:
    one model refitted on those of the ``training`` (rows, energies)); None when there are none."""
    from amondask.pipeline.train import fit_global_model, predict_per_query, predict_with_model

    if protocol == "per-query":
        return predict_per_query(
            workspace,
            level,
            client=client,
            representation=representation,
            max_amon_heavy_atoms=n_heavy,
            store=False,
        )
    rows, energies = training
    if not len(rows):
        return None
    model = fit_global_model(workspace, rows, energies)
    return predict_with_model(workspace, model, rows, representation=representation)[0]


def _learning_curve(
    workspace: Workspace,
    protocol: str,
    level: str,
    representation: str,
    reference: np.ndarray,
    final: Any,
    client: Any,
    progress: bool,
) -> dict[str, np.ndarray]:
    """MAE etc. per N_I = 1..max, and per (N_I, query) the error (kcal/mol), the coverage flag
    and the uncertainty (hartree); ``final`` (the evaluated predictions) is reused for the
    point that trains on every amon the evaluated model was trained on."""
    from tqdm.auto import tqdm

    from amondask.models import element_count_matrix
    from amondask.pipeline.train import _numbers_per_row, conformer_heavy_atoms, training_rows

    rows, energies, _ = training_rows(workspace, level)
    sizes = conformer_heavy_atoms(workspace, rows)
    numbers = _numbers_per_row(workspace.amons.conformers, rows)
    counts = element_count_matrix(numbers, sorted({int(z) for n in numbers for z in n}))
    final_is_full = protocol == "per-query" or np.array_equal(
        workspace.root["models/global/train_rows"][:], rows
    )
    levels = np.arange(1, int(sizes.max()) + 1)
    curve = {name: np.full(len(levels), np.nan) for name in ("mae", "median", "rmse", "max")}
    curve["error"] = np.full((len(levels), len(reference)), np.nan)
    curve["uncertainty"] = np.full((len(levels), len(reference)), np.nan)
    curve["covered"] = np.zeros((len(levels), len(reference)), dtype=bool)
    curve["n_train"] = np.zeros(len(levels))
    curve["n_predicted"] = np.zeros(len(levels), dtype=np.int64)
    curve["baseline_determined"] = np.zeros(len(levels), dtype=bool)
    for k, n_heavy in enumerate(tqdm(levels, desc="learning curve", disable=not progress)):
        small = sizes <= n_heavy
        # Can the amons up to this size fix one energy per element (of those they contain)?
        used = counts[small]
        present = used.any(axis=0)
        curve["baseline_determined"][k] = bool(
            len(used) and np.linalg.matrix_rank(used[:, present]) == present.sum()
        )
        if small.all() and final_is_full:
            dataset = final
        else:
            training = (rows[small], energies[small])
            dataset = _curve_point(
                workspace, protocol, level, representation, client, training, int(n_heavy)
            )
        if dataset is None:
            continue
        error = (dataset["energy"].values - reference) * KCAL_PER_MOL_PER_HARTREE
        stats = error_statistics(error)
        curve["mae"][k], curve["rmse"][k], curve["max"][k] = stats.mae, stats.rmse, stats.max
        curve["median"][k] = stats.median
        curve["error"][k] = error
        curve["uncertainty"][k] = dataset["uncertainty"].values
        curve["covered"][k] = dataset["covered"].values
        curve["n_predicted"][k] = stats.n
        # global: the size of the one training set; per-query: the mean per predicted query
        n_train = dataset["n_train"].values
        curve["n_train"][k] = float(np.mean(n_train[n_train > 0])) if (n_train > 0).any() else 0
    curve["n_heavy"] = levels
    return curve


def evaluate_workspace(
    workspace: Workspace,
    labeler: Any = None,
    *,
    protocol: str | None = None,
    learning_curve: bool = True,
    client: Any = None,
    progress: bool = True,
) -> Any:
    """Label the queries at the labeler's level, predict them at those geometries with the
    workspace's model (``protocol``: ``"global"`` or ``"per-query"``; default: the one whose
    predictions the workspace has) and compare; returns the Dataset described in the module
    docstring and stores it under ``evaluations/``. ``client``: a distributed Client or
    :data:`~amondask.pipeline.tasks.SERIAL`."""
    import xarray as xr

    from amondask.label import get_labeler, level_slug
    from amondask.pipeline.kernel import kernel_workspace
    from amondask.pipeline.label import label_workspace
    from amondask.pipeline.represent import represent_workspace, representation_name
    from amondask.store.labels import labels_frame

    started = time.perf_counter()
    if labeler is None or isinstance(labeler, str):
        labeler = get_labeler(labeler)
    level = labeler.level_of_theory
    protocol = protocol or _default_protocol(workspace)
    if protocol not in ("global", "per-query"):
        raise ValueError(f"protocol must be 'global' or 'per-query', not {protocol!r}")
    _check_level(workspace, protocol, level)
    label_report = label_workspace(
        workspace, labeler, target="queries", client=client, progress=progress
    )
    representation = representation_name("queries", level)
    represent_workspace(
        workspace,
        target="queries",
        level=level,
        name=representation,
        client=client,
        progress=progress,
    )
    kernel_workspace(workspace, cols=representation, client=client, progress=progress)

    n_queries = workspace.queries.n_rows
    labels = labels_frame(workspace, level, "queries")
    reference = np.full(n_queries, np.nan)
    status = np.array(["unlabeled"] * n_queries, dtype=object)
    rows = labels["source_row"].to_numpy()
    status[rows] = labels["status"].to_numpy()
    ok = labels["status"].to_numpy() == "ok"
    reference[rows[ok]] = labels["energy_hartree"].to_numpy()[ok]

    predicted = _predict(workspace, protocol, level, representation, client)
    energy = predicted["energy"].values
    baseline = predicted["baseline_energy"].values
    error = (energy - reference) * KCAL_PER_MOL_PER_HARTREE
    stats = error_statistics(error)
    baseline_stats = error_statistics((baseline - reference) * KCAL_PER_MOL_PER_HARTREE)
    input_mae = np.nan
    if workspace.has(f"predictions/{protocol}"):
        from amondask.pipeline.train import predictions_frame

        stored = predictions_frame(workspace, protocol)["energy_hartree"].to_numpy()
        if len(stored) == n_queries:
            input_mae = error_statistics((stored - reference) * KCAL_PER_MOL_PER_HARTREE).mae

    ids = [str(v) for v in predicted["query_id"].values]
    dataset = xr.Dataset(
        {
            "reference_energy": ("query_id", reference, {"units": "hartree"}),
            "predicted_energy": ("query_id", energy, {"units": "hartree"}),
            "baseline_energy": ("query_id", baseline, {"units": "hartree"}),
            "error": (
                "query_id",
                error,
                {"units": "kcal/mol", "long_name": "predicted minus reference energy"},
            ),
            "uncertainty": (
                "query_id",
                predicted["uncertainty"].values,
                {"units": "hartree", "long_name": "posterior standard deviation of the model"},
            ),
            "covered": ("query_id", predicted["covered"].values),
            "label_status": ("query_id", status.astype(str)),
        },
        coords={"query_id": ids},
    )
    if learning_curve:
        curve = _learning_curve(
            workspace, protocol, level, representation, reference, predicted, client, progress
        )
        dataset = dataset.assign_coords(n_heavy=("n_heavy", curve["n_heavy"]))
        for name in ("mae", "median", "rmse", "max"):
            dataset[f"curve_{name}"] = ("n_heavy", curve[name], {"units": "kcal/mol"})
        per_query = ("n_heavy", "query_id")
        dataset["curve_error"] = (per_query, curve["error"], {"units": "kcal/mol"})
        dataset["curve_uncertainty"] = (per_query, curve["uncertainty"], {"units": "hartree"})
        dataset["curve_covered"] = (per_query, curve["covered"])
        dataset["curve_n_train"] = ("n_heavy", curve["n_train"])
        dataset["curve_n_predicted"] = ("n_heavy", curve["n_predicted"])
        dataset["curve_baseline_determined"] = (
            "n_heavy",
            curve["baseline_determined"],
            {"long_name": "the training amons determine one baseline energy per element"},
        )
    worst = int(np.nanargmax(np.abs(error))) if stats.n else -1
    dataset.attrs.update(
        {
            "mae_kcal_mol": stats.mae,
            "median_error_kcal_mol": stats.median,
            "rmse_kcal_mol": stats.rmse,
            "max_error_kcal_mol": stats.max,
            "max_error_query": ids[worst] if worst >= 0 else "",
            "baseline_mae_kcal_mol": baseline_stats.mae,
            "input_geometry_mae_kcal_mol": float(input_mae),
            "n_evaluated": stats.n,
            "n_queries": n_queries,
            "n_uncovered": int((~predicted["covered"].values).sum()),
            "label_statuses": dict(
                zip(*np.unique(status.astype(str), return_counts=True), strict=True)
            ),
            "queries_labeled_now": label_report.labeled,
            "protocol": protocol,
            "level_of_theory": level,
            "evaluation": f"evaluations/{protocol}-{level_slug(level)}",
            "seconds": time.perf_counter() - started,
        }
    )
    dataset.attrs["label_statuses"] = {
        k: int(v) for k, v in dataset.attrs["label_statuses"].items()
    }
    _store(workspace, dataset, workspace.queries.read_text("smiles"))
    return dataset


def _store(workspace: Workspace, dataset: Any, smiles: list[str]) -> None:
    from amondask.pipeline.train import fresh_table

    table = fresh_table(workspace, str(dataset.attrs["evaluation"]), EVALUATION_COLUMNS)
    n = dataset.sizes["query_id"]
    table.append(
        {
            "query": np.arange(n),
            "id": [str(v) for v in dataset["query_id"].values],
            "smiles": smiles,
            "label_status": [str(v) for v in dataset["label_status"].values],
            "reference_hartree": dataset["reference_energy"].values,
            "predicted_hartree": dataset["predicted_energy"].values,
            "baseline_hartree": dataset["baseline_energy"].values,
            "error_kcal_per_mol": dataset["error"].values,
            "covered": dataset["covered"].values,
        }
    )
    attrs = {k: _json_value(v) for k, v in dataset.attrs.items()}
    if "n_heavy" in dataset.coords:
        attrs["learning_curve"] = {
            name: [_json_value(v) for v in dataset[name].values.tolist()]
            for name in (
                "n_heavy",
                "curve_mae",
                "curve_median",
                "curve_rmse",
                "curve_max",
                "curve_n_train",
                "curve_n_predicted",
                "curve_baseline_determined",
            )
        }
    table.group.attrs.update(attrs)


def _json_value(value: Any) -> Any:
    """NaN and numpy scalars as JSON-safe values (NaN becomes None)."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def format_evaluation(dataset: Any) -> str:
    """A few lines for the terminal: the errors, the baseline and the learning curve."""
    a = dataset.attrs
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(a["label_statuses"].items()))
    lines = [
        f"evaluated {a['n_evaluated']} of {a['n_queries']} queries ({a['protocol']} protocol) "
        f"against their own labels at {a['level_of_theory']} (labels: {statuses})",
        f"  MAE {a['mae_kcal_mol']:.2f} kcal/mol, median {a['median_error_kcal_mol']:.2f}, "
        f"RMSE {a['rmse_kcal_mol']:.2f}, max "
        f"{a['max_error_kcal_mol']:.2f} ({a['max_error_query']}); the per-element baseline "
        f"alone: MAE {a['baseline_mae_kcal_mol']:.2f} kcal/mol",
    ]
    if np.isfinite(a["input_geometry_mae_kcal_mol"]):
        lines.append(
            f"  the run's predictions at the input geometries: MAE "
            f"{a['input_geometry_mae_kcal_mol']:.2f} kcal/mol"
        )
    if a["n_uncovered"]:
        lines.append(f"  {a['n_uncovered']} queries not covered by their amons (see `covered`)")
    if "n_heavy" in dataset.coords:
        lines.append("  learning curve (N_I: MAE kcal/mol, training amons):")
        for n_heavy, mae, n_train, determined in zip(
            dataset["n_heavy"].values,
            dataset["curve_mae"].values,
            dataset["curve_n_train"].values,
            dataset["curve_baseline_determined"].values,
            strict=True,
        ):
            note = "" if determined else "  per-element baseline underdetermined"
            lines.append(f"    N_I = {int(n_heavy)}: {mae:8.2f}  ({n_train:.0f}){note}")
    lines.append(f"  stored as {a['evaluation']} in the workspace")
    return "\n".join(lines)


def evaluate(
    workspace: Workspace | str,
    labeler: Any = None,
    *,
    protocol: str | None = None,
    learning_curve: bool = True,
    plots: str | None = None,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> Any:
    """Evaluate a finished run against the queries' own labels (see the module docstring).

    ``labeler``: the run's labeler (a Labeler or registry name; default GFN2-xTB). ``plots``: a
    path prefix for the PNGs (``<prefix>_parity.png``, ``<prefix>_learning_curve.png``; needs
    matplotlib); None writes none. ``client``: a distributed Client, ``SERIAL``, or None for
    the embedded LocalCluster (or ``scheduler``). Returns the evaluation Dataset; its
    ``attrs`` hold ``mae_kcal_mol``, ``rmse_kcal_mol``, ``max_error_kcal_mol`` and the rest.
    """
    from amondask.cluster import get_client

    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    with get_client(client, scheduler=scheduler, n_workers=n_workers, quiet=not progress) as active:
        dataset = evaluate_workspace(
            workspace,
            labeler,
            protocol=protocol,
            learning_curve=learning_curve,
            client=active,
            progress=progress,
        )
    if plots:
        from amondask.plots import plot_evaluation

        dataset.attrs["plots"] = plot_evaluation(dataset, plots)
    return dataset
