"""The outlier remedy: flagged queries get larger amons, labeled and trained on.

Amons of at most N_I heavy atoms cannot hold a ring system with more than N_I atoms, so the
strain of a polycyclic cage is never seen in training and such queries come out tens of
kcal/mol off (:mod:`amondask.models.flags` flags them). The remedy gives each flagged query
extra amons (:func:`remedy_amons`), never the query itself:

* ``next-size`` (adaptive N_I): every amon of N_I+1 .. N_I+k heavy atoms;
* ``ring-systems``: the amons that hold a whole uncontained ring system R, of |R| .. |R|+k-1
  heavy atoms (the authors likewise allow larger amons for conjugated systems).

The extra amon conformers are built and MMFF-relaxed as every amon, labeled by the run's
labeler (only ``ok`` labels are kept), and added to the query's training set. Per-query
protocol: the query's model is refitted on its own amons plus its extras. Global protocol: one
model on all amons plus every flagged query's extras. Both use the workspace's kernel widths,
aSLATM basis and lambda, so that without extras they reproduce the workspace's predictions.

:func:`remedy_workspace` runs it over a finished workspace; its Dataset has, per remedied
query, the predictions before and after (hartree), and the cost: extra amons, extra labeled
conformers and the labeling time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amondask import config
from amondask.errors import AmondaskError

STRATEGIES = ("next-size", "ring-systems")


def remedy_amons(
    query: Any,
    max_heavy_atoms: int,
    *,
    strategy: str | None = None,
    extra_heavy_atoms: int | None = None,
    rules: str | None = None,
    geometry: bool = True,
) -> list[Any]:
    """The extra amons of one query (:class:`~amondask.amons.Amon` records with conformers).

    Args:
        query: a :class:`~amondask.chem.Molecule` (with the coordinates the plain amons came
            from) or a SMILES string.
        max_heavy_atoms: N_I of the plain amons.
        strategy: ``"next-size"`` or ``"ring-systems"`` (None: ``amondask.models.remedy.
            strategy``).
        extra_heavy_atoms: k (None: ``amondask.models.remedy.extra-heavy-atoms``).
        rules: the amon rule set (None: ``amondask.amon-rules``). With "paper", a subset that
            cuts a strained 3- or 4-membered ring is no amon, so a cage of three-membered rings
            may have no amon of N_I+1 atoms at all.
        geometry: build (and relax) 3D conformers.

    Returns:
        Amons with more than ``max_heavy_atoms`` and fewer heavy atoms than the query, sorted
        by (n_heavy, key); for ``ring-systems``, with only the occurrences that hold a whole
        ring system larger than N_I.
    """
    from amondask.amons import extract_amons
    from amondask.amons.extract import as_query_molecule
    from amondask.amons.ring_systems import uncontained_ring_systems

    strategy = str(config.get("models.remedy.strategy", strategy))
    extra = int(config.get("models.remedy.extra-heavy-atoms", extra_heavy_atoms))
    if strategy not in STRATEGIES:
        raise AmondaskError(f"unknown remedy strategy {strategy!r}; use one of {STRATEGIES}")
    if extra < 1:
        raise AmondaskError(f"extra_heavy_atoms must be at least 1, got {extra}")
    query = as_query_molecule(query)
    from amondask.chem.periodic import is_periodic

    if is_periodic(query):
        raise AmondaskError(
            f"{query.id}: the remedy adds larger covalent amons, which a periodic cell does not "
            "have; give its cluster amons more shells (amondask.amons.periodic.shells) instead"
        )
    n_heavy = int(sum(1 for z in query.numbers if z > 1))
    if strategy == "next-size":
        largest = min(max_heavy_atoms + extra, n_heavy - 1)
        if largest <= max_heavy_atoms:
            return []
        return extract_amons(
            query, largest, min_heavy_atoms=max_heavy_atoms + 1, rules=rules, geometry=geometry
        )
    found: dict[str, Any] = {}
    for system in uncontained_ring_systems(query.rdkit_mol, max_heavy_atoms):
        largest = min(len(system) + extra - 1, n_heavy - 1)
        if largest < len(system):
            continue  # the ring system is the whole query: no smaller amon holds it
        found_here = extract_amons(
            query, largest, containing=system, rules=rules, geometry=geometry
        )
        for amon in found_here:
            found.setdefault(amon.key, amon)
    return sorted(found.values(), key=lambda amon: (amon.n_heavy, amon.key))


@dataclass
class ExtraLabels:
    """The labeled extra amon conformers of one query."""

    molecules: list[Any]  # at their labeled (relaxed) geometries, status ok
    energies_hartree: np.ndarray
    n_amons: int
    n_conformers: int  # labeled, whatever the status
    keys: list[str]
    extract_seconds: float
    label_seconds: float


def label_extra_amons(
    query: Any,
    max_heavy_atoms: int,
    labeler: Any,
    strategy: str,
    extra_heavy_atoms: int,
    rules: str | None = None,
) -> ExtraLabels:
    """Extract the query's extra amons (:func:`remedy_amons`) and label every conformer; the
    ``ok`` ones are returned at their labeled geometries."""
    from amondask.label.batch import label_many

    started = time.perf_counter()
    amons = remedy_amons(
        query, max_heavy_atoms, strategy=strategy, extra_heavy_atoms=extra_heavy_atoms, rules=rules
    )
    conformers = [c.molecule for amon in amons for c in amon.conformers]
    extracted = time.perf_counter()
    labels, _ = label_many(labeler, conformers)
    molecules, energies = [], []
    for molecule, label in zip(conformers, labels, strict=True):
        if label.ok:
            relaxed = (
                molecule if label.positions is None else molecule.with_positions(label.positions)
            )
            molecules.append(relaxed)
            energies.append(label.energy_hartree)
    return ExtraLabels(
        molecules=molecules,
        energies_hartree=np.asarray(energies, dtype=np.float64),
        n_amons=len(amons),
        n_conformers=len(conformers),
        keys=[amon.key for amon in amons],
        extract_seconds=extracted - started,
        label_seconds=time.perf_counter() - extracted,
    )


def fit_and_predict(
    training: Sequence[Any],
    energies_hartree: np.ndarray,
    queries: Sequence[Any],
    model_parameters: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Energy, uncertainty (hartree), coverage and atom similarity of ``queries`` from an
    :class:`~amondask.models.AmonKRR` (``model_parameters``) fitted on ``training``."""
    from amondask.models import AmonKRR

    model = AmonKRR(**model_parameters).fit(list(training), energies_hartree)
    dataset = model.predict(list(queries), return_dataset=True)
    return {
        "energy": dataset["energy"].values,
        "uncertainty": dataset["uncertainty"].values,
        "covered": dataset["covered"].values,
        "similarity": dataset["atom_similarity"].values,
    }


def _remedy_query_task(
    query_input: Any,
    query_target: Any,
    training: list[Any],
    energies: np.ndarray,
    borrowed: list[Any],
    borrowed_energies: np.ndarray,
    labeler: Any,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """One query: its extra labels and, with the per-query protocol, its predictions from its
    own amons before, and after the extras (and the borrowed nearest amons) are added."""
    from amondask.label._threads import limited_threads

    with limited_threads(1):
        extra = label_extra_amons(
            query_input,
            settings["max_heavy_atoms"],
            labeler,
            settings["strategy"],
            settings["extra_heavy_atoms"],
            settings["rules"],
        )
        out: dict[str, Any] = {"extra": extra}
        if "per-query" in settings["protocols"]:
            parameters = settings["model"]
            out["before"] = fit_and_predict(training, energies, [query_target], parameters)
            out["after"] = fit_and_predict(
                [*training, *borrowed, *extra.molecules],
                np.concatenate([energies, borrowed_energies, extra.energies_hartree]),
                [query_target],
                parameters,
            )
            out["n_borrowed"] = len(borrowed)
    return out


def _model_parameters(workspace: Any) -> dict[str, Any]:
    """AmonKRR parameters that reproduce the workspace's stored kernels and models."""
    from amondask.pipeline.kernel import amon_sigmas
    from amondask.pipeline.represent import GROUP

    kernel = str(config.get("kernels.kernel"))
    attrs = workspace.root[GROUP].attrs
    parameters = attrs["parameters"]
    return {
        "kernel": kernel,
        "sigma": amon_sigmas(workspace, kernel),
        "alpha": float(config.get("models.alpha")),
        "rcut": float(parameters["rcut"]),
        "slatm_sigmas": tuple(parameters["sigmas"]),
        "dgrid": tuple(parameters["dgrid"]),
        "rpower": float(parameters["rpower"]),
        "mbtypes": [list(m) for m in attrs["mbtypes"]],
        "solver": "scipy",
    }


def nearest_amons(
    workspace: Any,
    rows: np.ndarray,
    queries: Sequence[int],
    representation: str,
    count: int,
) -> dict[int, list[int]]:
    """Per query row, the positions (in ``rows``, the trained conformer rows) of the ``count``
    labeled amon conformers most similar to it by the normalized stored kernel
    K(q, a) / sqrt(K(q, q) K(a, a)), from the whole store (every query's amons)."""
    from amondask.models import self_kernel
    from amondask.pipeline.kernel import amon_sigmas, open_kernel
    from amondask.pipeline.represent import open_representation

    if count <= 0 or not len(queries):
        return {int(q): [] for q in queries}
    kernel_name = str(config.get("kernels.kernel"))
    amon_kernel = open_kernel(workspace, "amons")
    diagonal = np.array([amon_kernel[int(r), int(r)] for r in rows.tolist()], dtype=np.float64)
    query_kernel = open_kernel(workspace, representation)
    blocks, n_queries = open_representation(workspace, representation)
    query_diagonal = self_kernel(
        blocks,
        sigma=amon_sigmas(workspace, kernel_name),
        kernel=kernel_name,
        n_molecules=n_queries,
    )
    out = {}
    for q in queries:
        column = np.asarray(query_kernel.get_orthogonal_selection((rows, [int(q)]))).reshape(-1)
        similarity = column / np.sqrt(diagonal * query_diagonal[int(q)])
        order = np.argsort(-similarity, kind="stable")[:count]
        out[int(q)] = sorted(order.tolist())
    return out


def remedy_workspace(
    workspace: Any,
    labeler: Any = None,
    *,
    queries: Sequence[int],
    protocols: Sequence[str] = ("per-query",),
    strategy: str | None = None,
    extra_heavy_atoms: int | None = None,
    neighbours: int | None = None,
    at_labeled_geometry: bool = True,
    client: Any = None,
    progress: bool = True,
) -> Any:
    """Remedy the query rows ``queries`` of a finished workspace (extracted and labeled).

    Args:
        workspace: a :class:`~amondask.store.workspace.Workspace`.
        labeler: the run's labeler (a Labeler or registry name; None: the default GFN2-xTB).
        queries: query rows to remedy (e.g. the flagged ones).
        protocols: ``"per-query"`` (each query's own amons plus its extras) and/or
            ``"global"`` (all labeled amons plus every remedied query's extras, one model).
        strategy, extra_heavy_atoms: see :func:`remedy_amons` (the workspace's rule set).
        neighbours: per-query protocol: also add the query's this many most similar labeled
            amon conformers of the whole store (:func:`nearest_amons`; no new labels) to its
            training set (None: ``amondask.models.remedy.neighbours``).
        at_labeled_geometry: predict the queries at their own labeled geometries (as the
            evaluation stage; needs query labels at the level), else at their input geometries.
        client: a distributed Client, :data:`~amondask.pipeline.tasks.SERIAL` or None (in
            this process); one task per query (extract, label, per-query fits).

    Returns:
        An xarray Dataset over (``protocol``, ``query_id``): ``energy_before``,
        ``energy_after``, ``uncertainty_before``, ``uncertainty_after`` (hartree),
        ``n_train_before``; over ``query_id``: ``query`` (row), ``n_extra_amons``,
        ``n_extra_conformers`` (labeled), ``n_extra_ok`` (trained on), ``extra_label_seconds``;
        attrs: strategy, k, N_I, level, ``n_extra_conformers`` (total), ``n_amon_conformers``
        (the workspace's trained amon conformers).
    """
    import xarray as xr

    from amondask.label import get_labeler
    from amondask.pipeline.represent import labeled_geometries
    from amondask.pipeline.tasks import run_tasks
    from amondask.pipeline.train import training_rows

    protocols = list(protocols)
    if not protocols or set(protocols) - {"per-query", "global"}:
        raise ValueError(f"protocols must be 'per-query' and/or 'global', not {protocols!r}")
    if labeler is None or isinstance(labeler, str):
        labeler = get_labeler(labeler)
    level = labeler.level_of_theory
    strategy = str(config.get("models.remedy.strategy", strategy))
    extra_heavy_atoms = int(config.get("models.remedy.extra-heavy-atoms", extra_heavy_atoms))
    neighbours = int(config.get("models.remedy.neighbours", neighbours))
    max_heavy_atoms = int(workspace.parameters["max_heavy_atoms"])
    queries = [int(q) for q in queries]
    rows, energies, _ = training_rows(workspace, level)
    position = {int(row): k for k, row in enumerate(rows.tolist())}
    n_conformers = workspace.amons.conformers.n_rows
    amon_molecules = labeled_geometries(workspace, level, "amons", 0, n_conformers)
    trained = [amon_molecules[r] for r in rows.tolist()]
    own: dict[int, list[int]] = {q: [] for q in queries}
    pairs_query = workspace.amons.query_conformers.read("query")
    pairs_conformer = workspace.amons.query_conformers.read("conformer")
    for query, conformer in zip(pairs_query.tolist(), pairs_conformer.tolist(), strict=True):
        if query in own and conformer in position:
            own[query].append(position[conformer])
    table = workspace.queries
    inputs = [table.molecules(q, q + 1)[0] for q in queries]
    targets = (
        [labeled_geometries(workspace, level, "queries", q, q + 1)[0] for q in queries]
        if at_labeled_geometry
        else inputs
    )
    from amondask.pipeline.represent import representation_name

    representation = representation_name("queries", level) if at_labeled_geometry else "queries"
    near = nearest_amons(
        workspace, rows, queries, representation, neighbours if "per-query" in protocols else 0
    )
    settings = {
        "max_heavy_atoms": max_heavy_atoms,
        "strategy": strategy,
        "extra_heavy_atoms": extra_heavy_atoms,
        "protocols": protocols,
        "rules": workspace.parameters.get("amon_rules"),
        "model": _model_parameters(workspace),
    }
    arguments = []
    for q, query_input, target in zip(queries, inputs, targets, strict=True):
        members = sorted(own[q])
        borrowed = sorted(set(near[q]) - set(members))
        arguments.append(
            (
                query_input,
                target,
                [trained[k] for k in members],
                energies[members],
                [trained[k] for k in borrowed],
                energies[borrowed],
                labeler,
                settings,
            )
        )
    results = run_tasks(
        client, _remedy_query_task, arguments, description="remedy", progress=progress
    )
    extras = [r["extra"] for r in results]
    n = len(queries)
    shape = (len(protocols), n)
    out = {
        name: np.full(shape, np.nan)
        for name in ("energy_before", "energy_after", "uncertainty_before", "uncertainty_after")
    }
    n_train_before = np.zeros(shape, dtype=np.int64)
    for p, protocol in enumerate(protocols):
        if protocol == "per-query":
            for k, result in enumerate(results):
                for stage in ("before", "after"):
                    out[f"energy_{stage}"][p, k] = result[stage]["energy"][0]
                    out[f"uncertainty_{stage}"][p, k] = result[stage]["uncertainty"][0]
            n_train_before[p] = [len(own[q]) for q in queries]
            continue
        if not n:
            continue
        parameters = settings["model"]
        before = fit_and_predict(trained, energies, targets, parameters)
        added = [m for extra in extras for m in extra.molecules]
        all_energies = np.concatenate([energies, *[extra.energies_hartree for extra in extras]])
        after = fit_and_predict([*trained, *added], all_energies, targets, parameters)
        for stage, parts in (("before", before), ("after", after)):
            out[f"energy_{stage}"][p] = parts["energy"]
            out[f"uncertainty_{stage}"][p] = parts["uncertainty"]
        n_train_before[p] = len(trained)
    ids = table.read_text("id")
    both = ("protocol", "query_id")
    hartree = {"units": "hartree"}
    dataset = xr.Dataset(
        {
            **{name: (both, values, hartree) for name, values in out.items()},
            "n_train_before": (both, n_train_before),
            "query": ("query_id", np.array(queries, dtype=np.int64)),
            "n_extra_amons": ("query_id", np.array([e.n_amons for e in extras], np.int64)),
            "n_extra_conformers": (
                "query_id",
                np.array([e.n_conformers for e in extras], np.int64),
            ),
            "n_extra_ok": ("query_id", np.array([len(e.molecules) for e in extras], np.int64)),
            "n_borrowed": (
                "query_id",
                np.array([r.get("n_borrowed", 0) for r in results], np.int64),
                {"long_name": "labeled amon conformers of other queries added (per-query)"},
            ),
            "extra_label_seconds": (
                "query_id",
                np.array([e.label_seconds for e in extras], np.float64),
                {"units": "s"},
            ),
        },
        coords={
            "protocol": np.array(protocols, dtype=str),
            "query_id": np.array([ids[q] for q in queries], dtype=str),
        },
    )
    dataset.attrs.update(
        {
            "strategy": strategy,
            "extra_heavy_atoms": extra_heavy_atoms,
            "neighbours": neighbours,
            "max_heavy_atoms": max_heavy_atoms,
            "amon_rules": str(settings["rules"]),
            "level_of_theory": level,
            "n_extra_conformers": int(dataset["n_extra_conformers"].sum()),
            "n_amon_conformers": len(trained),
            "at_labeled_geometry": bool(at_labeled_geometry),
        }
    )
    return dataset
