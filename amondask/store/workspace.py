"""The workspace: one Zarr v3 store that every stage reads and writes.

    ws = Workspace("run.zarr")                     # create or open a directory store
    ws = Workspace("s3://bucket/run.zarr")         # any fsspec URL (with its fsspec backend)
    ws = Workspace(zarr.storage.MemoryStore())     # in memory, for tests and notebooks

Layout (see ARCHITECTURE.md): ``queries/`` (ragged molecules), ``errors/`` (one row per failed
record), later ``amons/``, ``query_amons/``, ``labels/<level>/``, ... The root attribute
``amondask`` holds the schema version, the amondask version that created the store, and the
*defining parameters* (N_I, amon rules, representation and kernel parameters): reopening a
workspace with a different value for one of them raises
:class:`~amondask.errors.WorkspaceParameterError` naming both values and the way out.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import zarr
import zarr.storage

from amondask import config
from amondask.chem.molecule import Molecule
from amondask.errors import ErrorRecord, WorkspaceError, WorkspaceParameterError
from amondask.store.table import Column, RaggedMoleculeTable, Table

SCHEMA_VERSION = 1
ROOT_ATTR = "amondask"

ERROR_COLUMNS = {
    "record_id": Column("str"),
    "stage": Column("str"),
    "error_type": Column("str"),
    "message": Column("str"),
    "location": Column("str"),
    "source": Column("str"),
}

Mode = Literal["r", "a", "w"]


def _describe(store: Any) -> str:
    return str(store) if isinstance(store, (str, Path)) else type(store).__name__


#: Command-line flags of the defining parameters that have one.
_PARAMETER_FLAGS = {
    "max_heavy_atoms": "--max-heavy-atoms",
    "amon_rules": "--rules",
    "max_conformers_per_amon": "--max-conformers-per-amon",
}


class Workspace:
    """A Zarr v3 workspace (directory path, fsspec URL or zarr store).

    ``mode``: ``"a"`` opens or creates (default), ``"r"`` opens read-only (the workspace must
    exist), ``"w"`` discards any existing content and starts anew. ``parameters``: defining
    parameters this run needs (see :meth:`require_parameters`).
    """

    def __init__(
        self,
        store: str | Path | zarr.storage.StoreLike,
        *,
        mode: Mode = "a",
        parameters: Mapping[str, Any] | None = None,
    ):
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', not {mode!r}")
        self.location = _describe(store)
        self.mode = mode
        #: What opens this workspace again (a path string, URL or store object): tasks on Dask
        #: workers reopen the workspace from it.
        self.spec = str(store) if isinstance(store, Path) else store
        if isinstance(store, Path):
            store = str(store)
        if isinstance(store, str) and store.startswith("file://"):
            store = store[len("file://") :]  # a local directory: the plain path works best
        if isinstance(store, str) and "://" not in store:
            self._check_local_path(Path(store), mode)
        try:
            self.root = zarr.open_group(store=store, mode=mode, zarr_format=3)
        except FileNotFoundError as exc:
            raise WorkspaceError(
                f"no workspace at {self.location}; create one with "
                f"`amondask read QUERIES --workspace {self.location}`"
            ) from exc
        except (ValueError, TypeError, OSError) as exc:
            raise WorkspaceError(
                f"cannot open {self.location} as a Zarr v3 workspace ({exc}); give a new path "
                "or an existing amondask workspace"
            ) from exc
        if ROOT_ATTR not in self.root.attrs:
            if mode == "r" or len(list(self.root.keys())):
                raise WorkspaceError(
                    f"{self.location} is not an amondask workspace (no '{ROOT_ATTR}' attribute); "
                    "give a new path or an existing workspace"
                )
            self.root.attrs[ROOT_ATTR] = {
                "schema_version": SCHEMA_VERSION,
                "amondask_version": _version(),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "parameters": {},
            }
        self._check_schema()
        self._query_ids: dict[str, int] | None = None
        self._query_keys: list[str] = []
        self._error_keys: set[tuple[str, ...]] | None = None
        if parameters:
            self.require_parameters(parameters)

    @staticmethod
    def _check_local_path(path: Path, mode: Mode) -> None:
        if mode == "r" and not (path / "zarr.json").exists():
            raise WorkspaceError(
                f"no workspace at {path}; create one with "
                f"`amondask read QUERIES --workspace {path}`"
            )
        if path.exists() and not path.is_dir():
            raise WorkspaceError(f"{path} is a file, not a workspace directory; give a new path")
        if mode == "a" and path.is_dir() and any(path.iterdir()):
            if not (path / "zarr.json").exists():
                raise WorkspaceError(
                    f"{path} is a non-empty directory that is not an amondask workspace; "
                    "give a new path"
                )

    # ---- metadata ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.root.attrs[ROOT_ATTR])

    def _check_schema(self) -> None:
        version = int(self.meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{self.location} has schema version {version}, newer than this amondask "
                f"({_version()}, schema {SCHEMA_VERSION}); upgrade amondask to open it"
            )

    @property
    def parameters(self) -> dict[str, Any]:
        """The defining parameters recorded in this workspace."""
        return dict(self.meta.get("parameters", {}))

    def require_parameters(self, parameters: Mapping[str, Any]) -> None:
        """Check ``parameters`` against the recorded ones, and record those not yet set.

        Raises WorkspaceParameterError, naming both values and the way out, when a parameter
        was recorded with a different value.
        """
        recorded = self.parameters
        conflicts = [
            (name, recorded[name], value)
            for name, value in parameters.items()
            if name in recorded and _normalize(recorded[name]) != _normalize(value)
        ]
        if conflicts:
            described = "; ".join(
                f"{name}={old!r} in the workspace, {new!r} in this run"
                for name, old, new in conflicts
            )
            name, old, _ = conflicts[0]
            flag = _PARAMETER_FLAGS.get(name)
            if flag and old is None:
                keep = f"run without {flag} to use it as it is"
            elif flag:
                keep = f"run with {flag} {old} to use it as it is"
            else:
                keep = "run with the workspace's settings to use it as it is"
            raise WorkspaceParameterError(
                f"workspace {self.location} was built with different defining parameters: "
                f"{described}. Pass --workspace NEW to build a new workspace, delete this one "
                f"to start over, or {keep}"
            )
        new = {
            name: _normalize(value) for name, value in parameters.items() if name not in recorded
        }
        if new:
            self._require_writable()
            meta = self.meta
            meta["parameters"] = {**recorded, **new}
            self.root.attrs[ROOT_ATTR] = meta

    def resolve_parameter(self, name: str, given: Any, config_key: str) -> Any:
        """The value a run uses for a defining parameter: ``given`` if not None, else the one
        recorded in the workspace, else the configured default (``amondask.<config_key>``)."""
        if given is not None:
            return given
        recorded = self.parameters
        if name in recorded:
            return recorded[name]
        return config.get(config_key)

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise WorkspaceError(f"workspace {self.location} was opened read-only")

    # ---- tables ------------------------------------------------------------------------------
    @property
    def chunk_rows(self) -> int:
        return int(config.get("workspace.chunk-rows"))

    @property
    def queries(self) -> RaggedMoleculeTable:
        if "queries" not in self.root:
            self._require_writable()
            return RaggedMoleculeTable.create(self.root, "queries", chunk_rows=self.chunk_rows)
        return RaggedMoleculeTable(self.root["queries"])

    @property
    def errors(self) -> Table:
        if "errors" not in self.root:
            self._require_writable()
            return Table.create(self.root, "errors", ERROR_COLUMNS, self.chunk_rows)
        return Table(self.root["errors"])

    @property
    def amons(self) -> Any:
        """The global amon store (:class:`amondask.store.amons.AmonStore`)."""
        from amondask.store.amons import AmonStore

        return AmonStore(self)

    def has(self, name: str) -> bool:
        return name in self.root

    # ---- queries -----------------------------------------------------------------------------
    def query_index(self) -> dict[str, int]:
        """Map of query id -> row index of the committed queries."""
        n_rows = self.queries.n_rows if self.has("queries") else 0
        if self._query_ids is None or len(self._query_ids) != n_rows:
            ids = self.queries.read_text("id") if n_rows else []
            self._query_keys = self.queries.read_text("key") if n_rows else []
            self._query_ids = {qid: k for k, qid in enumerate(ids)}
        return self._query_ids

    def add_queries(
        self, molecules: Iterable[Molecule], *, source: str = ""
    ) -> tuple[int, int, list[ErrorRecord]]:
        """Append molecules as queries; returns (n_added, n_already_present, errors).

        A molecule whose id is already in the workspace is skipped when its graph (canonical
        key) is the same, so a repeated run changes nothing, and becomes a DuplicateIdError row
        otherwise.
        """
        from amondask.store.lock import workspace_lock

        self._require_writable()
        with workspace_lock(self):  # also when `amondask read` appends outside a run
            return self._add_queries(molecules, source)

    def _add_queries(
        self, molecules: Iterable[Molecule], source: str
    ) -> tuple[int, int, list[ErrorRecord]]:
        index = self.query_index()
        table = self.queries
        new: list[Molecule] = []
        errors: list[ErrorRecord] = []
        present = 0
        batch_ids: set[str] = set()
        for molecule in molecules:
            if molecule.id in index or molecule.id in batch_ids:
                if molecule.id in index and self._query_keys[index[molecule.id]] == molecule.key:
                    present += 1
                    continue
                errors.append(
                    ErrorRecord(
                        record_id=molecule.id,
                        stage="read",
                        error_type="DuplicateIdError",
                        message=f"id {molecule.id!r} is already in the workspace with a different "
                        "structure; give the record a new id or use a new workspace",
                        location=source,
                    )
                )
                continue
            batch_ids.add(molecule.id)
            new.append(molecule)
        if new:
            start = table.n_rows
            table.append_molecules(new)
            for k, molecule in enumerate(new):
                index[molecule.id] = start + k
                self._query_keys.append(molecule.key)
        if errors:
            self.add_errors(errors, source=source)
        return len(new), present, errors

    # ---- errors ------------------------------------------------------------------------------
    def add_errors(self, errors: Iterable[ErrorRecord], *, source: str = "") -> int:
        """Append error rows, skipping rows identical to ones already recorded; returns count."""
        self._require_writable()
        table = self.errors
        if self._error_keys is None:
            frame = table.to_pandas()
            self._error_keys = {
                tuple(
                    str(row[c]) for c in ("source", "record_id", "stage", "error_type", "message")
                )
                for row in frame.to_dict("records")
            }
        rows: dict[str, list[str]] = {name: [] for name in ERROR_COLUMNS}
        for error in errors:
            key = (source, error.record_id, error.stage, error.error_type, error.message)
            if key in self._error_keys:
                continue
            self._error_keys.add(key)
            for name, value in {**error.to_dict(), "source": source}.items():
                rows[name].append(str(value))
        if rows["record_id"]:
            table.append(rows)
        return len(rows["record_id"])

    def error_records(self) -> list[ErrorRecord]:
        if not self.has("errors"):
            return []
        frame = self.errors.to_pandas()
        return [
            ErrorRecord(
                record_id=row["record_id"],
                stage=row["stage"],
                error_type=row["error_type"],
                message=row["message"],
                location=row["location"],
            )
            for row in frame.to_dict("records")
        ]

    # ---- summary -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """A JSON-able overview: parameters, table sizes, error counts by stage and type."""
        meta = self.meta
        info: dict[str, Any] = {
            "location": self.location,
            "schema_version": meta.get("schema_version"),
            "created_by": meta.get("amondask_version"),
            "created": meta.get("created"),
            "parameters": meta.get("parameters", {}),
            "groups": sorted(self.root.group_keys()),
        }
        if self.has("queries"):
            queries = self.queries
            coordinates = queries.read_text("coordinates")
            info["queries"] = {
                "molecules": queries.n_rows,
                "atoms": queries.n_atoms,
                "with_input_coordinates": sum(c == "input" for c in coordinates),
            }
        if self.has("amons"):
            info["amons"] = self.amons.summary()
        if self.has("labels"):
            info["labels"] = self._label_summary()
        for name in ("kernels", "models", "predictions"):
            if self.has(name):
                info[name] = sorted(self.root[name].group_keys())
        if self.has("errors"):
            frame = self.errors.to_pandas()
            info["errors"] = {
                "total": len(frame),
                "by_stage": frame["stage"].value_counts().to_dict() if len(frame) else {},
                "by_type": frame["error_type"].value_counts().to_dict() if len(frame) else {},
            }
        return info

    def _label_summary(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per level of theory and target: label counts by status."""
        summary: dict[str, dict[str, dict[str, int]]] = {}
        for name, group in self.root["labels"].groups():
            level = str(group.attrs.get("level_of_theory", name))
            summary[level] = {}
            for target in group.group_keys():
                statuses = Table(group[target]).read_text("status")
                summary[level][target] = dict(Counter(statuses))
        return summary

    def __repr__(self) -> str:
        return f"Workspace({self.location!r})"


def _normalize(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normalize(v) for v in value]
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _version() -> str:
    from amondask import __version__

    return __version__
