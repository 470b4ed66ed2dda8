"""Labels in the workspace: ``labels/<level>/amons`` and ``labels/<level>/queries``.

``<level>`` is :func:`amondask.label.level_slug` of the labeler's level-of-theory string; the
group's attribute ``level_of_theory`` holds the full string. Each table is a
:class:`~amondask.store.table.RaggedMoleculeTable` of the labeled geometries (the relaxed ones
when the labeler relaxes; NaN positions when labeling failed) with the columns ``source_row``
(the conformer row of ``amons/conformers/`` or the query row of ``queries/``),
``energy_hartree``, ``status``, ``converged``, ``n_steps``, ``wall_time_s`` and ``message``.
Rows are appended as tasks finish, so their order is not the source order: use ``source_row``.
Levels of theory never mix: each has its own group, and training refuses to combine them.

Free-atom reference energies live in the level group's attribute ``atom_energies_hartree``:
``{"1": E_H, "6": E_C, ...}`` (atomic number as a string, energy in hartree), each neutral atom
in its ground-state spin multiplicity at the group's level of theory, written by the labeling
stage from the labeler's :meth:`~amondask.label.Labeler.atom_energies` (absent for labelers
that have none, e.g. a table given without ``atom_energies``). :func:`atom_energies` reads
them; :func:`atomization_energy` and :func:`atomization_energies` turn total energies into
atomization energies ``E - sum_atoms E_atom`` (hartree; negative for a bound molecule; times
:data:`KCAL_MOL_PER_HARTREE` for kcal/mol).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from amondask.errors import WorkspaceError
from amondask.store.table import Column, RaggedMoleculeTable
from amondask.store.workspace import Workspace

Target = Literal["amons", "queries"]
LABEL_COLUMNS = {
    "source_row": Column("int64"),
    "energy_hartree": Column("float64", fill_value=np.nan),
    "status": Column("str"),
    "converged": Column("bool"),
    "n_steps": Column("int32"),
    "wall_time_s": Column("float64"),
    "message": Column("str"),
}
ATOM_ENERGIES_ATTR = "atom_energies_hartree"
"""Attribute of ``labels/<level>`` holding the free-atom energies, ``{"<Z>": hartree}``."""
KCAL_MOL_PER_HARTREE = 627.5094740631
"""kcal/mol per hartree (CODATA 2018)."""


def label_levels(workspace: Workspace) -> dict[str, str]:
    """Level-of-theory strings of the workspace's label groups, by group name."""
    if not workspace.has("labels"):
        return {}
    labels = workspace.root["labels"]
    return {
        name: str(labels[name].attrs.get("level_of_theory", name)) for name in labels.group_keys()
    }


def label_table(
    workspace: Workspace, level_of_theory: str, target: Target, *, create: bool = False
) -> RaggedMoleculeTable:
    """The label table of one level and target (``amons`` or ``queries``)."""
    if target not in ("amons", "queries"):
        raise ValueError(f"target must be 'amons' or 'queries', not {target!r}")
    if not create:
        group = _level_group(workspace, level_of_theory)
        if group is None:
            raise WorkspaceError(
                f"workspace {workspace.location} has no labels at level {level_of_theory!r}; "
                f"run `amondask label --workspace {workspace.location}` with that labeler "
                f"(levels present: {sorted(label_levels(workspace).values()) or 'none'})"
            )
        return RaggedMoleculeTable(group[target])
    group = _level_group(workspace, level_of_theory, create=True)
    return RaggedMoleculeTable.create(group, target, LABEL_COLUMNS, workspace.chunk_rows)


def _level_group(workspace: Workspace, level_of_theory: str, *, create: bool = False) -> Any:
    """The zarr group ``labels/<slug>`` of a level (created when ``create``), or None."""
    from amondask.label import level_slug

    slug = level_slug(level_of_theory)
    path = f"labels/{slug}"
    if not create:
        if not workspace.has("labels") or slug not in workspace.root["labels"]:
            return None
        return workspace.root[path]
    group = workspace.root.require_group(path)
    recorded = group.attrs.get("level_of_theory")
    if recorded is not None and recorded != level_of_theory:
        raise WorkspaceError(
            f"label group {path} holds level {recorded!r}, not {level_of_theory!r}; "
            "the two levels map to the same name: rename one labeler's level"
        )
    group.attrs["level_of_theory"] = level_of_theory
    return group


def atom_energies(workspace: Workspace, level_of_theory: str) -> dict[int, float]:
    """The stored free-atom energies of a level: ``{Z: hartree}``, ``{}`` when there are none.

    Each is the isolated neutral atom in its ground-state spin multiplicity at
    ``level_of_theory``, as the labeling stage got it from the labeler.
    """
    group = _level_group(workspace, level_of_theory)
    if group is None:
        return {}
    stored = group.attrs.get(ATOM_ENERGIES_ATTR) or {}
    return {int(z): float(energy) for z, energy in stored.items()}


def store_atom_energies(
    workspace: Workspace, level_of_theory: str, energies: Mapping[int, float]
) -> dict[int, float]:
    """Add free-atom energies ``{Z: hartree}`` to a level's stored ones; returns all stored.

    An element already stored keeps its value unless ``energies`` gives it again.
    """
    group = _level_group(workspace, level_of_theory, create=True)
    merged = atom_energies(workspace, level_of_theory)
    for z, energy in energies.items():
        energy = float(energy)
        if not np.isfinite(energy):
            raise ValueError(f"free-atom energy of Z={z} is {energy}, not a finite number")
        merged[int(z)] = energy
    group.attrs[ATOM_ENERGIES_ATTR] = {str(z): merged[z] for z in sorted(merged)}
    return merged


def atomization_energy(
    numbers: Any, energy_hartree: float, atom_energies: Mapping[int, float]
) -> float:
    """Atomization energy ``E - sum over atoms of E_atom(Z)`` of one molecule, in hartree.

    ``numbers``: the molecule's atomic numbers; ``energy_hartree``: its total energy;
    ``atom_energies``: ``{Z: hartree}`` (from :func:`atom_energies`). Negative for a bound
    molecule (its dissociation energy with the sign flipped); NaN when an element of the
    molecule has no atom energy or the energy is NaN.
    """
    total = 0.0
    for z in np.asarray(numbers).ravel().tolist():
        reference = atom_energies.get(int(z))
        if reference is None:
            return float("nan")
        total += reference
    return float(energy_hartree) - total


def atomization_energies(
    numbers: Any, offsets: Any, energies_hartree: Any, atom_energies: Mapping[int, float]
) -> np.ndarray:
    """Atomization energies (hartree) of many molecules stored flat (CSR), as in the workspace.

    ``numbers``: atomic numbers of all atoms, molecule after molecule; ``offsets``
    (n_molecules + 1): molecule k's atoms are ``numbers[offsets[k]:offsets[k + 1]]``;
    ``energies_hartree`` (n_molecules): total energies. Returns an (n_molecules,) float64
    array of ``E - sum E_atom``; NaN where an element has no atom energy (or E is NaN).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    energies = np.asarray(energies_hartree, dtype=np.float64)
    if offsets.ndim != 1 or len(offsets) != len(energies) + 1:
        raise ValueError(
            f"offsets must have n_molecules + 1 = {len(energies) + 1} entries, got {offsets.shape}"
        )
    numbers = np.asarray(numbers, dtype=np.int64)[offsets[0] : offsets[-1]]
    lookup = np.full(max(int(numbers.max(initial=0)), max(atom_energies, default=0)) + 1, np.nan)
    for z, energy in atom_energies.items():
        lookup[int(z)] = float(energy)
    per_atom = lookup[numbers]
    starts = offsets[:-1] - offsets[0]
    nonempty = np.diff(offsets) > 0
    sums = np.zeros(len(energies))
    if nonempty.any():
        # reduceat over the non-empty molecules only: each segment runs to the next start
        sums[nonempty] = np.add.reduceat(per_atom, starts[nonempty])
    return energies - sums


def labels_frame(workspace: Workspace, level_of_theory: str, target: Target = "amons") -> Any:
    """The labels of one level and target as a pandas DataFrame sorted by ``source_row``."""
    table = label_table(workspace, level_of_theory, target)
    frame = table.to_pandas(list(LABEL_COLUMNS))
    return frame.sort_values("source_row", ignore_index=True)
