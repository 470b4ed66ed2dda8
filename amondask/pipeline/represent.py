"""The representation stage: compact per-element aSLATM of every amon conformer and query.

Layout: ``represent/aslatm/`` holds the shared basis (attrs ``mbtypes`` and the SLATM
parameters, the same for amons and queries so their atoms can be compared) and one subgroup per
target, ``amons`` (rows = conformers of ``amons/conformers/``) and ``queries``. A target is
written in parts: one task computes the rows [start, stop) and writes them, as per-element arrays
``<Z>`` (n_atoms_Z, d_Z) and ``molecule_index/<Z>`` (see :func:`amondask.kernels.
write_element_blocks`), into its own subgroup ``parts/p<start>``, which it marks complete last.
Tasks never share a Zarr chunk, a killed run redoes only unfinished parts, and rows appended to
the source later (new conformers, new queries) get new parts. A target can also be represented
under another name at other geometries: the evaluation stage represents the queries at their
labeled (relaxed) geometries as ``queries-at-<level slug>`` (:func:`representation_name`).
:func:`open_representation` views the parts of a target as one block per element
(:class:`ConcatenatedRows`), which the kernel builders read like arrays.

The SLATM parameters are defining parameters of the workspace (``representation``). The many-body
types come from the element compositions of all queries at the first run (an amon's elements
are its query's plus H); a later query that needs a body the basis lacks is refused with an
error saying how to rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amondask import config
from amondask.errors import WorkspaceError
from amondask.pipeline.staging import fresh_group, is_complete, mark_complete
from amondask.pipeline.tasks import run_tasks
from amondask.represent import ElementBlock
from amondask.store.labels import Target
from amondask.store.workspace import Workspace

GROUP = "represent/aslatm"


def slatm_parameters(
    rcut: float | None = None,
    sigmas: Sequence[float] | None = None,
    dgrid: Sequence[float] | None = None,
    rpower: float | None = None,
) -> dict[str, Any]:
    """The aSLATM parameters of a run (configured defaults: the authors' rcut 4.8, dgrid 0.04)."""
    return {
        "rcut": float(config.get("represent.rcut", rcut)),
        "sigmas": [float(v) for v in config.get("represent.sigmas", sigmas)],
        "dgrid": [float(v) for v in config.get("represent.dgrid", dgrid)],
        "rpower": float(config.get("represent.rpower", rpower)),
    }


class ConcatenatedRows:
    """Rows of several arrays (Zarr or NumPy) seen as one array: ``x[start:stop]`` reads only
    the parts it spans. Shape (sum of rows, *row_shape); picklable when its parts are."""

    def __init__(self, parts: Sequence[Any], row_shape: tuple[int, ...], dtype: Any):
        self.parts = list(parts)
        lengths = [int(part.shape[0]) for part in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.shape = (int(self.offsets[-1]), *row_shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ConcatenatedRows supports contiguous row slices only")
        start, stop, _ = index.indices(self.shape[0])
        pieces = []
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        for k in range(max(first, 0), len(self.parts)):
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            if lo >= stop:
                break
            if hi <= start:
                continue
            pieces.append(np.asarray(self.parts[k][max(start, lo) - lo : min(stop, hi) - lo]))
        if not pieces:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[0 : self.shape[0]]
        return out.astype(dtype) if dtype is not None else out


@dataclass
class RepresentReport:
    target: str
    rows: int = 0
    new_rows: int = 0
    parts: int = 0
    elements: list[int] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        return (
            f"represented {self.new_rows} new {self.target} rows in {self.parts} tasks "
            f"({self.rows} in all; elements {self.elements})"
        )


def _source(workspace: Workspace, target: Target):
    return workspace.amons.conformers if target == "amons" else workspace.queries


def representation_name(target: Target, level: str | None = None) -> str:
    """Where a target's aSLATM is stored under ``represent/aslatm/``: the target's own name, or
    ``<target>-at-<level slug>`` for a second representation at the labeled geometries of a
    level (the run represents amons at their labels and queries as read, under the plain
    names)."""
    if level is None:
        return target
    from amondask.label import level_slug

    return f"{target}-at-{level_slug(level)}"


def _basis(workspace: Workspace, parameters: dict[str, Any]) -> list[list[int]]:
    """The workspace's mbtypes: fixed at the first run from all queries' compositions.

    The counts matter, not only the elements: a three-body type with a repeated element (H-C-H,
    C-C-C) exists only when some molecule has two (three) atoms of it; three of each element
    give every type, so the compositions are kept with counts capped at 3. A query without H
    (a crystal) counts three H: its amons are H-capped. A basis stored before that rule is
    still accepted when it holds every type the queries themselves need."""
    from amondask.represent import slatm_mbtypes

    group = workspace.root.require_group(GROUP)
    queries = workspace.queries
    offsets = queries.offsets()
    numbers = queries.group["numbers"][: int(offsets[-1])]
    compositions, with_caps = set(), set()
    for k in range(queries.n_rows):
        values, counts = np.unique(numbers[offsets[k] : offsets[k + 1]], return_counts=True)
        capped = {int(z): min(int(c), 3) for z, c in zip(values, counts, strict=True)}
        compositions.add(tuple(sorted(capped.items())))
        capped.setdefault(1, 3)  # the H caps of a query without H
        with_caps.add(tuple(sorted(capped.items())))

    def types(of: set) -> list[list[int]]:
        return slatm_mbtypes([[z for z, c in comp for _ in range(c)] for comp in sorted(of)])

    needed = types(compositions)
    stored = group.attrs.get("mbtypes")
    if stored is None:
        complete = types(with_caps)
        group.attrs.update({"mbtypes": complete, "parameters": parameters})
        return complete
    missing = {tuple(m) for m in needed} - {tuple(m) for m in stored}
    if missing:
        raise WorkspaceError(
            f"new queries need many-body types {sorted(missing)[:5]} that the workspace's aSLATM "
            "basis lacks (an element or element pair it has not seen, or repeated-element types "
            "that amondask before 2026-11-25 left out); build a new workspace for them, or "
            "delete represent/ and kernels/ from this one to rebuild both"
        )
    return [list(m) for m in stored]


def labeled_geometries(
    workspace: Workspace, level: str, target: Target, start: int, stop: int
) -> list[Any]:
    """The source molecules [start, stop) at their labeled (relaxed) geometries of ``level``.

    Rows whose label has no geometry (a failed label) keep their stored geometry; they are not
    trained on. Raises WorkspaceError when a row has no label at that level yet.
    """
    from amondask.store.labels import label_table

    table = label_table(workspace, level, target)
    source_rows = table.read("source_row")
    wanted = np.flatnonzero((source_rows >= start) & (source_rows < stop))
    molecules = _source(workspace, target).molecules(start, stop)
    if len(wanted) != stop - start:
        raise WorkspaceError(
            f"{stop - start - len(wanted)} of {target} rows {start}..{stop - 1} have no label at "
            f"{level!r}; run the label stage first"
        )
    labeled = {}
    for k in wanted.tolist():  # label rows of this range; read each contiguous run once
        labeled[int(source_rows[k])] = k
    lo, hi = int(wanted.min()), int(wanted.max()) + 1
    label_molecules = table.molecules(lo, hi)
    out = []
    for row in range(start, stop):
        relaxed = label_molecules[labeled[row] - lo]
        source = molecules[row - start]
        out.append(
            source if relaxed.positions is None else source.with_positions(relaxed.positions)
        )
    return out


def _represent_part(
    spec: Any,
    target: Target,
    name: str,
    start: int,
    stop: int,
    mbtypes: list,
    parameters: dict,
    level: str | None = None,
) -> int:
    """aSLATM of source rows [start, stop) into ``parts/p<start>`` (runs on a worker)."""
    from amondask.kernels import write_element_blocks
    from amondask.represent import element_blocks

    workspace = Workspace(spec)
    parts = workspace.root[f"{GROUP}/{name}/parts"]
    part = f"p{start:012d}"
    if is_complete(parts, part):
        return stop - start
    if level is None:
        molecules = _source(workspace, target).molecules(start, stop)
    else:
        molecules = labeled_geometries(workspace, level, target, start, stop)
    blocks = element_blocks(
        molecules,
        mbtypes,
        rcut=parameters["rcut"],
        sigmas=tuple(parameters["sigmas"]),
        dgrid=tuple(parameters["dgrid"]),
        rpower=parameters["rpower"],
        first_molecule_index=start,
    )
    group = fresh_group(parts, part)
    write_element_blocks(group, blocks, n_molecules=stop)
    mark_complete(group, start=start, stop=stop)
    return stop - start


def _complete_parts(workspace: Workspace, name: str) -> list[tuple[int, int, Any]]:
    parts = workspace.root[f"{GROUP}/{name}/parts"]
    out = []
    for name in sorted(parts.group_keys()):
        group = parts[name]
        if group.attrs.get("complete"):
            out.append((int(group.attrs["start"]), int(group.attrs["stop"]), group))
    return out


def represent_workspace(
    workspace: Workspace,
    *,
    target: Target = "amons",
    level: str | None = None,
    name: str | None = None,
    client: Any = None,
    partition_size: int | None = None,
    progress: bool = True,
    **slatm_options: Any,
) -> RepresentReport:
    """Compute the aSLATM of every ``target`` row (``amons`` conformers or ``queries``) not yet
    represented. ``slatm_options``: rcut, sigmas, dgrid, rpower (defining parameters).

    ``level``: a level of theory whose labels give the geometries (the relaxed ones: an energy
    belongs to the geometry it was computed at); None: the stored geometries (amons: capped and
    MMFF-relaxed from the query; queries: as read). A representation keeps the geometry source
    it was first built with. ``name``: where it is stored (default: the target's name; see
    :func:`representation_name`).
    """
    parameters = slatm_parameters(**slatm_options)
    workspace.require_parameters({"representation": {"name": "aslatm", **parameters}})
    mbtypes = _basis(workspace, parameters)
    name = name or target
    target_group = workspace.root.require_group(f"{GROUP}/{name}")
    geometry = f"labels: {level}" if level else "stored"
    recorded = target_group.attrs.get("geometry")
    if recorded is not None and recorded != geometry:
        raise WorkspaceError(
            f"the {name} representation was built from geometries '{recorded}', this run asks "
            f"for '{geometry}'; delete {GROUP}/{name} in the workspace to rebuild it"
        )
    target_group.attrs.update({"geometry": geometry, "target": target})
    target_group.require_group("parts")
    source = _source(workspace, target)
    n_rows = source.n_rows
    covered = max((stop for _, stop, _ in _complete_parts(workspace, name)), default=0)
    # Parts left incomplete by a killed run are redone by the same plan from ``covered``.
    size = int(config.get("represent.partition-size", partition_size))
    bounds = [(a, min(n_rows, a + size)) for a in range(covered, n_rows, size)]
    report = RepresentReport(target=target, rows=n_rows, parts=len(bounds))
    run_tasks(
        client,
        _represent_part,
        [(workspace.spec, target, name, a, b, mbtypes, parameters, level) for a, b in bounds],
        description=f"aSLATM {name}",
        progress=progress,
    )
    report.new_rows = n_rows - covered
    blocks, _ = open_representation(workspace, name)
    report.elements = sorted(blocks)
    return report


def open_representation(workspace: Workspace, name: str) -> tuple[dict[int, ElementBlock], int]:
    """The stored aSLATM ``name`` (a target, or see :func:`representation_name`) as
    ({Z: ElementBlock(x, molecule_index)}, n_molecules).

    ``x`` and ``molecule_index`` are :class:`ConcatenatedRows` over the parts (read lazily).
    Raises WorkspaceError when some rows are not represented yet.
    """
    if not workspace.has(f"{GROUP}/{name}/parts"):
        raise WorkspaceError(
            f"workspace {workspace.location} has no representation {name!r}; run the "
            "represent stage first"
        )
    parts = _complete_parts(workspace, name)
    expected = 0
    for start, stop, _ in parts:
        if start != expected:
            raise WorkspaceError(
                f"the {name} representation misses rows {expected}..{start - 1}; "
                "re-run the represent stage to complete it"
            )
        expected = stop
    elements = sorted({int(z) for _, _, g in parts for z in g.attrs.get("elements", [])})
    blocks = {}
    for z in elements:
        xs = [g[str(z)] for _, _, g in parts if str(z) in g]
        owners = [g["molecule_index"][str(z)] for _, _, g in parts if str(z) in g]
        width = int(xs[0].shape[1])
        blocks[z] = ElementBlock(
            ConcatenatedRows(xs, (width,), np.float64), ConcatenatedRows(owners, (), np.int64)
        )
    return blocks, expected


def represent(
    workspace: Workspace | str,
    *,
    queries: bool = True,
    client: Any = None,
    progress: bool = True,
) -> list[RepresentReport]:
    """Represent the amons (and the queries) of ``workspace``; ``client`` as in extract."""
    from amondask.cluster import get_client

    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    targets: list[Target] = ["amons", "queries"] if queries else ["amons"]
    with get_client(client, quiet=not progress) as active:
        return [
            represent_workspace(workspace, target=t, client=active, progress=progress)
            for t in targets
        ]
