"""The training and prediction stages (global protocol) over a workspace.

Training uses every amon conformer whose label at the chosen level has status ``ok`` (a
``topology-changed`` or failed label is left out), the stored kernel ``kernels/amons-amons/K``
(its rows and columns of those conformers) and :class:`amondask.models.AmonKRR` with a
precomputed kernel: per-element linear baseline, lambda = ``amondask.models.alpha``. The fitted
model goes to ``models/<name>/`` with the level and the training rows. Prediction takes the rows
of ``kernels/amons-queries/K`` of the training conformers and writes ``predictions/<name>/``
(query id, SMILES, energy, uncertainty, coverage, number of amons) in query order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amondask import config
from amondask.errors import WorkspaceError
from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE
from amondask.pipeline.kernel import amon_sigmas, open_kernel
from amondask.pipeline.represent import open_representation
from amondask.store.labels import labels_frame
from amondask.store.table import Column, Table
from amondask.store.workspace import Workspace

PREDICTION_COLUMNS = {
    "query": Column("int64"),
    "id": Column("str"),
    "smiles": Column("str"),
    "energy_hartree": Column("float64"),
    "uncertainty_hartree": Column("float64"),
    "baseline_hartree": Column("float64"),
    "covered": Column("bool"),
    "n_amons": Column("int32"),
    "n_train": Column("int32"),
    "flagged": Column("bool"),
    "flag_reason": Column("str"),
}


@dataclass
class TrainReport:
    name: str
    level_of_theory: str
    n_train: int
    n_left_out: int
    solver: str

    def format(self) -> str:
        return (
            f"model {self.name}: trained on {self.n_train} amon conformers at "
            f"{self.level_of_theory} ({self.n_left_out} left out: failed or topology-changed "
            f"labels), solved with {self.solver}"
        )


def _numbers_per_row(table, rows: np.ndarray) -> list[np.ndarray]:
    offsets = table.offsets()
    numbers = table.group["numbers"][: int(offsets[-1])]
    return [numbers[offsets[r] : offsets[r + 1]] for r in rows.tolist()]


def training_rows(workspace: Workspace, level: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Conformer rows with an ``ok`` label at ``level`` and their energies (hartree); also the
    number of labeled rows left out."""
    frame = labels_frame(workspace, level, "amons")
    ok = frame["status"].to_numpy() == "ok"
    rows = frame["source_row"].to_numpy()[ok].astype(np.int64)
    energies = frame["energy_hartree"].to_numpy()[ok]
    if not len(rows):
        raise WorkspaceError(
            f"no amon has an 'ok' label at {level!r}; run `amondask label` (see "
            "`amondask info W --errors` for why labels failed)"
        )
    return rows, energies, int((~ok).sum())


def conformer_heavy_atoms(workspace: Workspace, rows: np.ndarray) -> np.ndarray:
    """N_I (heavy atoms) of the amon graph of each conformer row."""
    amons = workspace.amons
    graph = amons.conformers.read("amon")[np.asarray(rows, dtype=np.int64)]
    return amons.amons.read("n_heavy")[graph].astype(np.int64)


def _elements(workspace: Workspace) -> list[int]:
    blocks, _ = open_representation(workspace, "amons")
    return sorted(int(z) for z in blocks)


def fit_global_model(
    workspace: Workspace,
    rows: np.ndarray,
    energies: np.ndarray,
    *,
    alpha: float | None = None,
    solver: str | None = None,
) -> Any:
    """An :class:`~amondask.models.AmonKRR` fitted on the conformer ``rows`` (their energies in
    hartree) with the stored amon-amon kernel; not saved."""
    import dask.array as da

    from amondask.models import AmonKRR, element_count_matrix

    kernel = da.from_zarr(open_kernel(workspace, "amons"))
    train_kernel = kernel[rows][:, rows]
    elements = _elements(workspace)
    counts = element_count_matrix(_numbers_per_row(workspace.amons.conformers, rows), elements)
    model = AmonKRR(
        kernel="precomputed",
        alpha=float(config.get("models.alpha", alpha)),
        solver=str(config.get("models.solver", solver)),
    )
    return model.fit(train_kernel, energies, element_counts=counts, elements=elements)


def train_workspace(
    workspace: Workspace,
    level: str,
    *,
    name: str = "global",
    alpha: float | None = None,
    solver: str | None = None,
) -> TrainReport:
    """Fit the global model on the labeled amons and save it to ``models/<name>/``."""
    rows, energies, left_out = training_rows(workspace, level)
    model = fit_global_model(workspace, rows, energies, alpha=alpha, solver=solver)
    group = workspace.root.require_group(f"models/{name}")
    model.save(group, overwrite=True)
    if "train_rows" in group:
        del group["train_rows"]
    group.create_array("train_rows", data=rows)
    group.attrs.update({"level_of_theory": level, "protocol": "global"})
    return TrainReport(name, level, len(rows), left_out, model.solve_info_["method"])


@dataclass
class _QueryInputs:
    """What predicting the queries needs besides the model: counts, k(q, q), ids, coverage."""

    ids: list[str]
    counts: np.ndarray
    self_kernel: np.ndarray
    elements_present: list[set[int]]


def _query_inputs(
    workspace: Workspace, elements: list[int], representation: str = "queries"
) -> _QueryInputs:
    from amondask.models import element_count_matrix, self_kernel

    queries = workspace.queries
    all_rows = np.arange(queries.n_rows)
    per_query = _numbers_per_row(queries, all_rows)
    blocks, n_queries = open_representation(workspace, representation)
    kernel_name = str(config.get("kernels.kernel"))
    diagonal = self_kernel(
        blocks, sigma=amon_sigmas(workspace, kernel_name), kernel=kernel_name, n_molecules=n_queries
    )
    return _QueryInputs(
        ids=queries.read_text("id"),
        counts=element_count_matrix(per_query, elements),
        self_kernel=diagonal,
        elements_present=[set(numbers.tolist()) for numbers in per_query],
    )


def _finish(
    workspace: Workspace,
    dataset: Any,
    inputs: _QueryInputs,
    elements: set[int],
    name: str,
    store: bool = True,
) -> Any:
    """Element coverage, amon counts and provenance; store as ``predictions/<name>``."""
    dataset["covered"] = (
        "query_id",
        dataset["covered"].values & _elements_covered(inputs.elements_present, elements),
    )
    n_queries = len(inputs.ids)
    n_amons = np.asarray(workspace.amons.query_amon_matrix().getnnz(axis=1)).reshape(-1)
    n_amons = np.pad(n_amons, (0, max(0, n_queries - len(n_amons))))[:n_queries]
    dataset["n_amons"] = ("query_id", n_amons.astype(np.int32))
    dataset.attrs["model"] = name
    _add_flags(workspace, dataset, n_queries)
    dataset["atomization_energy"] = (
        "query_id",
        query_atomization_energies(
            workspace, str(dataset.attrs.get("level_of_theory", "")), dataset["energy"].values
        ),
        {
            "units": "hartree",
            "long_name": "predicted energy minus the free atoms' energies at the same level "
            "(negative when bound; NaN when the level has no free-atom energies)",
        },
    )
    if store:
        _store_predictions(workspace, name, dataset, workspace.queries.read_text("smiles"))
    return dataset


def _elements_covered(elements_present: list[set[int]], elements: set[int]) -> np.ndarray:
    """(n,) bool: every element of the molecule has training atoms (the model's elements)."""
    return np.array([present <= elements for present in elements_present], dtype=bool)


def _add_flags(workspace: Workspace, dataset: Any, n_queries: int) -> None:
    """``flagged`` and ``flag_reason`` (:mod:`amondask.models.flags`): ring systems larger
    than the workspace's N_I, posterior sd, coverage."""
    from amondask.models.flags import add_outlier_flags

    max_heavy_atoms = workspace.parameters.get("max_heavy_atoms")
    if max_heavy_atoms is None:
        max_heavy_atoms = config.get("max-heavy-atoms")
    # streamed: the client keeps one query at a time, however many there are
    add_outlier_flags(dataset, workspace.queries.iter_molecules(0, n_queries), int(max_heavy_atoms))


def predict_with_model(
    workspace: Workspace, model: Any, rows: np.ndarray, *, representation: str = "queries"
) -> tuple[Any, _QueryInputs]:
    """Predict every query with a fitted global ``model`` trained on the conformer ``rows``,
    from the stored kernel K(amons, ``representation``); returns (Dataset, query inputs)."""
    import dask.array as da

    query_kernel = da.from_zarr(open_kernel(workspace, representation))[rows].T
    inputs = _query_inputs(workspace, model.elements_.tolist(), representation)
    dataset = model.predict(
        query_kernel,
        element_counts=inputs.counts,
        self_kernel_values=inputs.self_kernel,
        return_dataset=True,
        query_ids=inputs.ids,
    )
    return dataset, inputs


def predict_workspace(
    workspace: Workspace,
    *,
    name: str = "global",
    representation: str = "queries",
    store: bool = True,
) -> Any:
    """Predict every query with the model ``models/<name>/``; write ``predictions/<name>/``
    (unless ``store`` is false). ``representation``: the queries' aSLATM to use (default: as
    read; the evaluation uses the labeled geometries).

    Returns the predictions as an xarray Dataset indexed by query id.
    """
    from amondask.models import AmonKRR

    if not workspace.has(f"models/{name}"):
        raise WorkspaceError(
            f"workspace {workspace.location} has no model {name!r}; run the train stage first"
        )
    group = workspace.root[f"models/{name}"]
    model = AmonKRR.load(group)
    rows = group["train_rows"][:]
    dataset, inputs = predict_with_model(workspace, model, rows, representation=representation)
    dataset.attrs["level_of_theory"] = str(group.attrs["level_of_theory"])
    return _finish(workspace, dataset, inputs, set(model.elements_.tolist()), name, store)


def predict_molecules(
    workspace: Workspace | str,
    molecules: Sequence[Any],
    *,
    name: str = "global",
    molecule_chunk: int = 500,
) -> Any:
    """Predict ``molecules`` that are not queries of ``workspace`` with its stored global model
    ``models/<name>/`` (e.g. a model trained once on a whole dataset's amon store, used for new
    molecules): their aSLATM in the workspace's basis, the local kernel against the model's
    training conformers, the prediction with uncertainty, element coverage and outlier flags.
    Nothing is written.

    ``molecules``: :class:`amondask.chem.Molecule` objects with 3D geometries (angstrom), e.g.
    relaxed at the model's level. Runs in this process, ``molecule_chunk`` molecules at a time;
    memory: the training conformers' aSLATM (n_atoms x d_Z float64; 4.4 GB for the 18,845
    amons of all of QM9, 273,000 atoms x 2,031 features), the model's Cholesky factor for the
    uncertainty (8 n_train^2 bytes; 2.8 GB for 18,677 training conformers) and one chunk's
    kernel.

    Returns an xarray Dataset indexed by the molecules' ids (energies in hartree).
    """
    from amondask.kernels.local import local_kernel
    from amondask.models import AmonKRR, element_count_matrix, self_kernel
    from amondask.models.flags import add_outlier_flags
    from amondask.pipeline.represent import GROUP as REPRESENT_GROUP
    from amondask.represent import element_blocks

    workspace = _open(workspace)
    if not workspace.has(f"models/{name}"):
        raise WorkspaceError(
            f"workspace {workspace.location} has no model {name!r}; run the train stage first"
        )
    molecules = list(molecules)
    group = workspace.root[f"models/{name}"]
    model = AmonKRR.load(group)
    rows = group["train_rows"][:]
    basis = workspace.root[REPRESENT_GROUP].attrs
    mbtypes, parameters = basis["mbtypes"], basis["parameters"]
    kernel_name = str(open_kernel(workspace, "amons").attrs.get("kernel", "gaussian"))
    sigma = amon_sigmas(workspace, kernel_name)
    elements = model.elements_.tolist()
    stored, n_conformers = open_representation(workspace, "amons")
    training = {  # read once: every chunk of molecules needs all of them
        z: type(block)(np.asarray(block.x), np.asarray(block.molecule_index))
        for z, block in stored.items()
        if z in elements
    }
    numbers = [np.asarray(m.numbers) for m in molecules]
    # A molecule with an element outside the workspace's aSLATM basis cannot be represented:
    # no energy (NaN), not covered, flagged.
    basis_elements = {int(m[0]) for m in mbtypes if len(m) == 1}
    representable = np.array([set(z.tolist()) <= basis_elements for z in numbers], dtype=bool)
    fitting = np.flatnonzero(representable)
    query_kernel = np.zeros((len(molecules), len(rows)))
    diagonal = np.ones(len(molecules))
    for start in range(0, len(fitting), molecule_chunk):
        chunk = fitting[start : start + molecule_chunk]
        blocks = element_blocks(
            [molecules[k] for k in chunk],
            mbtypes,
            rcut=parameters["rcut"],
            sigmas=tuple(parameters["sigmas"]),
            dgrid=tuple(parameters["dgrid"]),
            rpower=parameters["rpower"],
        )
        blocks = {z: block for z, block in blocks.items() if len(block.x)}
        kernel = local_kernel(
            training,
            blocks,
            sigma=sigma,
            kernel=kernel_name,
            n_row_molecules=n_conformers,
            n_col_molecules=len(chunk),
            atom_chunk=int(config.get("kernels.atom-chunk")),
        )
        query_kernel[chunk] = kernel[rows].T
        diagonal[chunk] = self_kernel(
            blocks, sigma=sigma, kernel=kernel_name, n_molecules=len(chunk)
        )
    dataset = model.predict(
        query_kernel,
        element_counts=element_count_matrix(numbers, elements),
        self_kernel_values=diagonal,
        return_dataset=True,
        query_ids=[m.id or f"molecule_{k}" for k, m in enumerate(molecules)],
    )
    for variable in ("energy", "uncertainty"):
        if variable in dataset:
            values = dataset[variable].values.copy()
            values[~representable] = np.nan
            dataset[variable] = (dataset[variable].dims, values, dataset[variable].attrs)
    present = [set(z.tolist()) for z in numbers]
    covered = dataset["covered"].values & _elements_covered(present, set(elements))
    dataset["covered"] = ("query_id", covered & representable)
    dataset.attrs["model"] = name
    dataset.attrs["level_of_theory"] = str(group.attrs["level_of_theory"])
    max_heavy_atoms = workspace.parameters.get("max_heavy_atoms", config.get("max-heavy-atoms"))
    add_outlier_flags(dataset, molecules, int(max_heavy_atoms))
    return dataset


def predict_per_query(
    workspace: Workspace,
    level: str,
    *,
    name: str = "per-query",
    alpha: float | None = None,
    client: Any = None,
    representation: str = "queries",
    max_amon_heavy_atoms: int | None = None,
    store: bool = True,
) -> Any:
    """The paper's protocol: each query predicted by a model trained on its own amon conformers
    only (those with an ``ok`` label at ``level``), in parallel over queries; the rows and columns
    are sliced from the stored kernels. Writes ``predictions/<name>/`` unless ``store`` is false.
    ``representation``: the queries' aSLATM (as in :func:`predict_workspace`);
    ``max_amon_heavy_atoms``: use only amons of at most that many heavy atoms (a learning
    curve's point)."""
    import dask.array as da

    from amondask.models import element_count_matrix, per_query_protocol
    from amondask.pipeline.tasks import SERIAL

    rows, energies, _ = training_rows(workspace, level)
    if max_amon_heavy_atoms is not None:
        small = conformer_heavy_atoms(workspace, rows) <= max_amon_heavy_atoms
        rows, energies = rows[small], energies[small]
    position = {int(row): k for k, row in enumerate(rows.tolist())}
    amons = workspace.amons
    pairs_query = amons.query_conformers.read("query")
    pairs_conformer = amons.query_conformers.read("conformer")
    own: list[list[int]] = [[] for _ in range(workspace.queries.n_rows)]
    for query, conformer in zip(pairs_query.tolist(), pairs_conformer.tolist(), strict=True):
        if conformer in position:
            own[query].append(position[conformer])
    elements = _elements(workspace)
    inputs = _query_inputs(workspace, elements, representation)
    kernel = da.from_zarr(open_kernel(workspace, "amons"))
    dataset = per_query_protocol(
        kernel[rows][:, rows],
        energies,
        da.from_zarr(open_kernel(workspace, representation))[rows].T,
        [sorted(indices) for indices in own],
        amon_element_counts=element_count_matrix(
            _numbers_per_row(amons.conformers, rows), elements
        ),
        query_element_counts=inputs.counts,
        query_self_kernel=inputs.self_kernel,
        query_ids=inputs.ids,
        alpha=float(config.get("models.alpha", alpha)),
        scheduler="sync" if client is SERIAL else client,
    )
    dataset.attrs["level_of_theory"] = level
    return _finish(workspace, dataset, inputs, set(elements), name, store)


def query_atomization_energies(
    workspace: Workspace, level: str, energies_hartree: np.ndarray
) -> np.ndarray:
    """(n_queries,) ``E - sum of free-atom energies`` (hartree) of the queries, with the
    free-atom energies the label stage stored for ``level``; all NaN when it has none."""
    from amondask.store.labels import atom_energies, atomization_energies

    references = atom_energies(workspace, level) if level else {}
    energies = np.asarray(energies_hartree, dtype=np.float64)
    if not references:
        return np.full(len(energies), np.nan)
    offsets = workspace.queries.offsets()[: len(energies) + 1]
    numbers = workspace.queries.group["numbers"][: int(offsets[-1])]
    return atomization_energies(numbers, offsets, energies, references)


def fresh_table(workspace: Workspace, path: str, columns: dict[str, Column]) -> Table:
    """An empty table at ``path``, replacing what was there (results that are recomputed whole:
    predictions, evaluations)."""
    if workspace.has(path):
        del workspace.root[path]
    return Table.create(workspace.root, path, columns, workspace.chunk_rows)


def _store_predictions(workspace: Workspace, name: str, dataset: Any, smiles: list[str]) -> None:
    table = fresh_table(workspace, f"predictions/{name}", PREDICTION_COLUMNS)
    n = dataset.sizes["query_id"]
    table.append(
        {
            "query": np.arange(n),
            "id": [str(v) for v in dataset["query_id"].values],
            "smiles": smiles,
            "energy_hartree": dataset["energy"].values,
            "uncertainty_hartree": dataset["uncertainty"].values,
            "baseline_hartree": dataset["baseline_energy"].values,
            "covered": dataset["covered"].values,
            "n_amons": dataset["n_amons"].values,
            "n_train": dataset["n_train"].values,
            "flagged": dataset["flagged"].values,
            "flag_reason": [str(v) for v in dataset["flag_reason"].values],
        }
    )
    table.group.attrs.update({k: str(v) for k, v in dataset.attrs.items()})


def predictions_frame(workspace: Workspace, name: str = "global") -> Any:
    """The stored predictions as a pandas DataFrame (energies in hartree and kcal/mol)."""
    path = f"predictions/{name}"
    if not workspace.has(path):
        raise WorkspaceError(f"workspace {workspace.location} has no predictions {name!r}")
    group = workspace.root[path]
    # predictions written before the outlier flags existed have no flag columns
    frame = Table(group).to_pandas([c for c in PREDICTION_COLUMNS if c in group])
    frame["energy_minus_baseline_kcal_per_mol"] = (
        frame["energy_hartree"] - frame["baseline_hartree"]
    ) * KCAL_PER_MOL_PER_HARTREE
    frame["uncertainty_kcal_per_mol"] = frame["uncertainty_hartree"] * KCAL_PER_MOL_PER_HARTREE
    level = str(workspace.root[path].attrs.get("level_of_theory", ""))
    frame["atomization_energy_kcal_per_mol"] = (
        query_atomization_energies(workspace, level, frame["energy_hartree"].to_numpy())
        * KCAL_PER_MOL_PER_HARTREE
    )
    return frame


def _open(workspace: Workspace | str) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _level(labeler: Any) -> str:
    """A level-of-theory string from a Labeler, a registry name or None (the default)."""
    if isinstance(labeler, str) and "|" in labeler:
        return labeler  # already a level-of-theory string
    from amondask.label import get_labeler

    if labeler is None or isinstance(labeler, str):
        labeler = get_labeler(labeler)
    return labeler.level_of_theory


def train(
    workspace: Workspace | str,
    labeler: Any = None,
    *,
    name: str = "global",
    alpha: float | None = None,
    solver: str | None = None,
) -> TrainReport:
    """The train stage on its own: fit the global model on the amons labeled by ``labeler`` (a
    Labeler, a registry name, a level-of-theory string, or None for the default GFN2-xTB) and
    save it to ``models/<name>/``. Needs the label, represent and kernel stages done."""
    return train_workspace(_open(workspace), _level(labeler), name=name, alpha=alpha, solver=solver)


def predict(
    workspace: Workspace | str,
    *,
    protocol: str = "global",
    labeler: Any = None,
    client: Any = None,
) -> Any:
    """The predict stage on its own: ``"global"`` with the model ``models/global`` (see
    :func:`train`), or ``"per-query"`` (each query's own amons labeled by ``labeler``; in
    parallel on ``client``, a Client, ``SERIAL`` or None for the threaded scheduler). Writes
    ``predictions/<protocol>`` and returns the Dataset."""
    workspace = _open(workspace)
    if protocol == "global":
        return predict_workspace(workspace)
    if protocol == "per-query":
        return predict_per_query(workspace, _level(labeler), client=client)
    raise ValueError(f"protocol must be 'global' or 'per-query', not {protocol!r}")
