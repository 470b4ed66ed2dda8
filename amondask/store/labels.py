"""Labels in the workspace: ``labels/<level>/amons`` and ``labels/<level>/queries``.

``<level>`` is :func:`amondask.label.level_slug` of the labeler's level-of-theory string; the
group's attribute ``level_of_theory`` holds the full string. Each table is a
:class:`~amondask.store.table.RaggedMoleculeTable` of the labeled geometries (the relaxed ones
when the labeler relaxes; NaN positions when labeling failed) with the columns ``source_row``
(the conformer row of ``amons/conformers/`` or the query row of ``queries/``),
``energy_hartree``, ``status``, ``converged``, ``n_steps``, ``wall_time_s`` and ``message``.
Rows are appended as tasks finish, so their order is not the source order: use ``source_row``.
Levels of theory never mix: each has its own group, and training refuses to combine them.
"""

from __future__ import annotations

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
    from amondask.label import level_slug

    if target not in ("amons", "queries"):
        raise ValueError(f"target must be 'amons' or 'queries', not {target!r}")
    slug = level_slug(level_of_theory)
    path = f"labels/{slug}"
    if not create:
        if not workspace.has("labels") or slug not in workspace.root["labels"]:
            raise WorkspaceError(
                f"workspace {workspace.location} has no labels at level {level_of_theory!r}; "
                f"run `amondask label --workspace {workspace.location}` with that labeler "
                f"(levels present: {sorted(label_levels(workspace).values()) or 'none'})"
            )
        return RaggedMoleculeTable(workspace.root[path][target])
    group = workspace.root.require_group(path)
    recorded = group.attrs.get("level_of_theory")
    if recorded is not None and recorded != level_of_theory:
        raise WorkspaceError(
            f"label group {path} holds level {recorded!r}, not {level_of_theory!r}; "
            "the two levels map to the same name: rename one labeler's level"
        )
    group.attrs["level_of_theory"] = level_of_theory
    return RaggedMoleculeTable.create(group, target, LABEL_COLUMNS, workspace.chunk_rows)


def labels_frame(workspace: Workspace, level_of_theory: str, target: Target = "amons") -> Any:
    """The labels of one level and target as a pandas DataFrame sorted by ``source_row``."""
    table = label_table(workspace, level_of_theory, target)
    frame = table.to_pandas(list(LABEL_COLUMNS))
    return frame.sort_values("source_row", ignore_index=True)
