"""The labeling stage: reference energies for every amon conformer (or query), on the cluster.

The rows still to label are those without a row in ``labels/<level>/<target>``. They are cut
into tasks of about ``amondask.label.task-seconds`` each by the labeler's cost model
(:func:`amondask.label.cost.estimated_cost_seconds`, consecutive rows per task); each task reads
its molecules from the workspace on the worker and labels them with
:func:`amondask.label.label_many`, which never stops on a bad molecule. The client appends each
task's labels as soon as it finishes, so a killed run keeps every label it had committed and the
re-run computes only the rest. Tasks that fail for other reasons (a worker lost) are retried up
to ``amondask.label.retries`` times. Per-molecule failures are stored as labels with status
``failed`` (and error rows): a re-run does not repeat them.

After the labels, the stage computes (in this process: a handful of single atoms) the free-atom
energies of every element in the workspace's amons and queries that the level's group does not
hold yet, with the labeler's :meth:`~amondask.label.Labeler.atom_energies`, and stores them in
the attribute ``atom_energies_hartree`` of ``labels/<level>``
(:func:`amondask.store.labels.atom_energies` reads them back). A labeler that cannot give them
(a table without ``atom_energies``) leaves them out, with a log message; the stage succeeds.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from amondask import config
from amondask.chem.molecule import Molecule
from amondask.pipeline.tasks import SERIAL
from amondask.store.labels import Target, atom_energies, label_table, store_atom_energies
from amondask.store.table import RaggedMoleculeTable
from amondask.store.workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass
class LabelReport:
    """What a labeling run did."""

    level_of_theory: str
    target: str
    labeled: int = 0
    already_labeled: int = 0
    tasks: int = 0
    statuses: Counter = field(default_factory=Counter)
    wall_time_s: float = 0.0
    compute_time_s: float = 0.0
    atom_energies_computed: list[int] = field(default_factory=list)
    """Atomic numbers whose free-atom energies this run computed and stored."""
    atom_energies_unavailable: list[int] = field(default_factory=list)
    """Atomic numbers present in the workspace that the labeler gave no atom energy for."""

    def format(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "none"
        text = (
            f"labeled {self.labeled} {self.target} at {self.level_of_theory} in {self.tasks} "
            f"tasks ({statuses}); {self.already_labeled} were labeled before; "
            f"{self.wall_time_s:.1f} s wall, {self.compute_time_s:.1f} s of labeling"
        )
        if self.atom_energies_computed:
            text += f"; free-atom energies of {_symbols(self.atom_energies_computed)} stored"
        if self.atom_energies_unavailable:
            text += (
                f"; no free-atom energies for {_symbols(self.atom_energies_unavailable)} "
                "(no atomization energies)"
            )
        return text


def _symbols(atomic_numbers: list[int]) -> str:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    return ", ".join(table.GetElementSymbol(int(z)) for z in atomic_numbers)


def elements_present(workspace: Workspace, *, chunk_atoms: int = 1 << 24) -> list[int]:
    """Sorted atomic numbers occurring in the workspace's amon conformers and queries."""
    root = workspace.root
    groups = []
    if workspace.has("amons") and "conformers" in root["amons"]:
        groups.append(root["amons"]["conformers"])
    if workspace.has("queries"):
        groups.append(root["queries"])
    found: set[int] = set()
    for group in groups:
        n_atoms = RaggedMoleculeTable(group).n_atoms
        for start in range(0, n_atoms, chunk_atoms):
            numbers = group["numbers"][start : min(start + chunk_atoms, n_atoms)]
            found.update(int(z) for z in np.unique(numbers))
    return sorted(z for z in found if z > 0)


def store_missing_atom_energies(
    workspace: Workspace, labeler: Any, report: LabelReport | None = None
) -> dict[int, float]:
    """Compute and store the free-atom energies (hartree) the level's group lacks.

    Every element of :func:`elements_present` without a stored energy is asked of
    ``labeler.atom_energies`` one at a time (on this process); those it gives are added to
    ``labels/<level>`` attribute ``atom_energies_hartree``, those it cannot give are logged
    and listed in ``report.atom_energies_unavailable``. Returns all stored energies.
    """
    level = labeler.level_of_theory
    stored = atom_energies(workspace, level)
    missing = [z for z in elements_present(workspace) if z not in stored]
    compute = getattr(labeler, "atom_energies", None)
    if not missing:
        return stored
    if compute is None:
        logger.info(
            "labeler %r has no atom_energies(); no atomization energies at %s", labeler, level
        )
        if report is not None:
            report.atom_energies_unavailable = missing
        return stored
    computed: dict[int, float] = {}
    unavailable: list[int] = []
    reasons: list[str] = []
    for z in missing:
        try:
            computed.update(compute([z]))
        except Exception as exc:  # a missing reference must not fail the labels already made
            unavailable.append(z)
            reasons.append(f"{type(exc).__name__}: {exc}")
    if unavailable:
        logger.warning(
            "no free-atom energies for %s at %s, so no atomization energies for molecules "
            "with them (first reason: %s)",
            _symbols(unavailable),
            level,
            reasons[0],
        )
    if computed:
        stored = store_atom_energies(workspace, level, computed)
    if report is not None:
        report.atom_energies_computed = sorted(computed)
        report.atom_energies_unavailable = unavailable
    return stored


def check_single_points(workspace: Workspace, labeler: Any) -> None:
    """Refuse a relaxing labeler for a workspace of non-covalent amons.

    Non-covalent amons (:mod:`amondask.amons.noncovalent`) are the queries' molecules as they
    sit in the queries; relaxing one moves its molecules to another arrangement, and the queries
    themselves must be labeled at the geometry the amons were cut from. Raises
    LabelerSetupError before any work, naming the setting to change.
    """
    from amondask.errors import LabelerSetupError

    if workspace.parameters.get("noncovalent_amons") and getattr(labeler, "relax", False):
        name = getattr(labeler, "name", "<labeler>")
        raise LabelerSetupError(
            f"workspace {workspace.location} holds non-covalent amons, which must be labeled "
            f"at the queries' geometry, but the {name} labeler relaxes; set "
            f"amondask.label.{name}.relax: false (in the --config file, or "
            f"AMONDASK_LABEL__{name.upper()}__RELAX=false)"
        )


def source_table(workspace: Workspace, target: Target) -> RaggedMoleculeTable:
    if target == "amons":
        return workspace.amons.conformers
    return workspace.queries


def _label_rows(spec: Any, target: Target, rows: np.ndarray, labeler: Any) -> tuple:
    """Label the given source rows (runs on a worker); returns (rows, labels, errors)."""
    from amondask.label import label_many

    workspace = Workspace(spec, mode="r")
    table = source_table(workspace, target)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    molecules = table.molecules(lo, hi)
    chosen = [molecules[int(row) - lo] for row in rows]
    labels, errors = label_many(labeler, chosen)
    return rows, labels, errors


def _costs(table: RaggedMoleculeTable, rows: np.ndarray, labeler: Any) -> np.ndarray:
    """Estimated seconds per row from the atoms alone (no bonds or geometry needed)."""
    from amondask.label.cost import estimated_cost_seconds

    offsets = table.offsets()
    numbers = table.group["numbers"][: int(offsets[-1])]
    costs = np.empty(len(rows))
    for k, row in enumerate(rows.tolist()):
        atoms = numbers[offsets[row] : offsets[row + 1]]
        costs[k] = estimated_cost_seconds(Molecule(id="", numbers=atoms, bonds=[]), labeler)
    return costs


def _append(
    labels_table: RaggedMoleculeTable,
    sources: list[Molecule],
    rows: np.ndarray,
    labels: list,
) -> None:
    molecules = [
        source.with_positions(label.positions)
        for source, label in zip(sources, labels, strict=True)
    ]
    labels_table.append_molecules(
        molecules,
        extra={
            "id": [m.id for m in sources],
            "key": [""] * len(sources),
            "smiles": [""] * len(sources),
            "coordinates": ["label"] * len(sources),
            "metadata": ["{}"] * len(sources),
            "source_row": rows,
            "energy_hartree": [label.energy_hartree for label in labels],
            "status": [label.status for label in labels],
            "converged": [label.converged for label in labels],
            "n_steps": [label.n_steps for label in labels],
            "wall_time_s": [label.wall_time_s for label in labels],
            "message": [label.message for label in labels],
        },
    )


def label_workspace(
    workspace: Workspace,
    labeler: Any = None,
    *,
    target: Target = "amons",
    client: Any = None,
    task_seconds: float | None = None,
    retries: int | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label every unlabeled amon conformer (``target="amons"``) or query of ``workspace``.

    ``labeler``: a Labeler, a registry name (``"xtb"``, ``"pyscf"``, ...) or None for the
    configured default. ``client``: a distributed Client, or
    :data:`~amondask.pipeline.tasks.SERIAL` to label in this process. Returns a LabelReport.
    """
    from amondask.label import get_labeler

    if labeler is None or isinstance(labeler, str):
        labeler = get_labeler(labeler)
    check_single_points(workspace, labeler)
    task_seconds = float(config.get("label.task-seconds", task_seconds))
    retries = int(config.get("label.retries", retries))
    level = labeler.level_of_theory
    started = time.perf_counter()
    source = source_table(workspace, target)
    labels_table = label_table(workspace, level, target, create=True)
    report = LabelReport(level_of_theory=level, target=target)
    done = set(labels_table.read("source_row").tolist())
    todo = np.array([row for row in range(source.n_rows) if row not in done], dtype=np.int64)
    report.already_labeled = len(done)
    if not len(todo):
        store_missing_atom_energies(workspace, labeler, report)
        report.wall_time_s = time.perf_counter() - started
        return report
    from amondask.label.cost import plan_tasks

    costs = _costs(source, todo, labeler)
    if client not in (None, SERIAL):
        # Small jobs: at least two tasks per worker, so that every worker has work.
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        task_seconds = min(task_seconds, max(float(costs.sum()) / (2 * workers), 1e-9))
    tasks = [todo[index] for index in plan_tasks(costs, task_seconds)]
    report.tasks = len(tasks)
    bar = tqdm(total=len(todo), desc=f"label {target}", unit="mol", disable=not progress)

    def commit(rows: np.ndarray, labels: list, errors: list) -> None:
        lo, hi = int(rows.min()), int(rows.max()) + 1
        molecules = source.molecules(lo, hi)
        _append(labels_table, [molecules[int(r) - lo] for r in rows], rows, labels)
        workspace.add_errors(errors, source=f"label {target}")
        report.labeled += len(labels)
        report.statuses.update(label.status for label in labels)
        report.compute_time_s += sum(label.wall_time_s for label in labels)
        bar.update(len(labels))

    try:
        if client is SERIAL or client is None:
            for rows in tasks:
                commit(*_label_rows(workspace.spec, target, rows, labeler))
        else:
            from distributed import as_completed

            from amondask.cluster import scatter_to_all

            shared = scatter_to_all(client, labeler)
            futures = [
                client.submit(
                    _label_rows, workspace.spec, target, rows, shared, retries=retries, pure=False
                )
                for rows in tasks
            ]
            for future in as_completed(futures):
                commit(*future.result())
                future.release()
    finally:
        bar.close()
    store_missing_atom_energies(workspace, labeler, report)
    report.wall_time_s = time.perf_counter() - started
    return report


def label(
    workspace: Workspace | str,
    labeler: Any = None,
    *,
    queries: bool = False,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label the amons (or, with ``queries=True``, the queries) of ``workspace`` on a cluster.

    ``client=None`` starts the embedded LocalCluster (or attaches to ``scheduler``).
    """
    from amondask.cluster import get_client
    from amondask.store.lock import workspace_lock

    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    target: Target = "queries" if queries else "amons"
    with (
        workspace_lock(workspace),
        get_client(client, scheduler=scheduler, n_workers=n_workers, quiet=not progress) as active,
    ):
        return label_workspace(workspace, labeler, target=target, client=active, progress=progress)
