"""Integrity check of a workspace: every table, index and cross-reference, read-only.

    problems = verify_workspace(Workspace("run.zarr", mode="r"))   # [] when clean

Each problem is one line ``<path>: <what is wrong>`` naming the group or array and the values
that disagree. What is checked:

- root: the ``amondask`` attribute, its schema version and parameters;
- every table (a group with ``n_rows``): each column holds at least ``n_rows`` rows;
  ragged tables: ``offsets``/``bond_offsets`` start at 0, never decrease, end within the atom and
  bond arrays; bond atom indices inside their molecule; atomic numbers 1..118;
- queries: unique ids; ``extracted_queries`` <= the number of queries;
- amons: unique keys, ``n_heavy`` in 1..N_I, ``first_query`` of extracted queries; conformers:
  ``amon`` in range, ids ``<amon>:<row>``, finite positions; ``query_amons`` and
  ``query_conformers``: indices in range, counts >= 1, no repeated pair;
- labels: ``level_of_theory`` recorded, ``source_row`` in range and unique, known statuses,
  a finite energy for every ``ok`` row;
- representations: complete parts contiguous from row 0, molecule indices in their part;
- kernels: ``K_done`` matches the block grid of ``K`` (a ``K`` of another shape than the
  representations is stale after new queries: a note, the next run rebuilds it);
- models: a saved model's arrays agree with its ``n_train`` and elements, its SLATM parameters
  with the workspace's, its level has labels, its training rows are ``ok``-labeled conformers
  (a model group without its attribute, written last, is an interrupted training: a note);
- predictions: query indices in range, the model exists (fewer rows than queries: a note);
- errors: non-empty record id, stage, type and message.

Unfinished staging groups of a killed run are reported as notes (the next run resumes them), not
as problems; while an extraction is staged, rows it already appended (amons, links of queries up
to its plan's end) count as in range, since resuming rolls them back and redoes them. Values
are read column by column; kernels are checked by shape only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amondask.store.table import N_ROWS_ATTR
from amondask.store.workspace import ROOT_ATTR, SCHEMA_VERSION, Workspace

KNOWN_GROUPS = {
    "queries",
    "errors",
    "amons",
    "query_amons",
    "query_conformers",
    "labels",
    "represent",
    "kernels",
    "models",
    "predictions",
    "evaluations",
}
STAGING_PREFIX = "staging"
RAGGED_ATOM_ARRAYS = ("numbers", "formal_charges", "positions")


@dataclass
class VerifyReport:
    """Problems (each one line) and notes of a workspace check."""

    location: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"problem: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]
        verdict = (
            f"{self.location}: OK ({len(self.checked)} tables checked)"
            if self.ok
            else f"{self.location}: {len(self.problems)} problem(s) in "
            f"{len(self.checked)} tables checked"
        )
        return "\n".join([*lines, verdict])


class _Checker:
    def __init__(self, workspace: Workspace, report: VerifyReport):
        self.workspace = workspace
        self.root = workspace.root
        self.report = report

    def problem(self, path: str, message: str) -> None:
        self.report.problems.append(f"{path}: {message}")

    def require(self, condition: bool, path: str, message: str) -> bool:
        if not condition:
            self.problem(path, message)
        return bool(condition)

    # ---- generic tables ----------------------------------------------------------------------
    def n_rows(self, path: str) -> int | None:
        """The committed rows of table ``path`` (None if it is absent or unusable)."""
        if path not in self.root:
            return None
        raw = self.root[path].attrs.get(N_ROWS_ATTR)
        if raw is None or isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            self.problem(path, f"attribute n_rows is {raw!r}, not a row count >= 0")
            return None
        return int(raw)

    def table(self, path: str) -> int | None:
        """Check a table's columns against n_rows (and its CSR layout when ragged)."""
        n = self.n_rows(path)
        if n is None:
            return None
        self.report.checked.append(path)
        group = self.root[path]
        arrays = dict(group.arrays())
        ragged = "offsets" in arrays
        for name, array in arrays.items():
            if ragged and name in (*RAGGED_ATOM_ARRAYS, "bonds"):
                continue
            needed = n + 1 if name in ("offsets", "bond_offsets") else n
            self.require(
                array.shape[0] >= needed,
                f"{path}/{name}",
                f"has {array.shape[0]} rows, the table commits {needed}",
            )
        if ragged:
            self._ragged(path, group, arrays, n)
        return n

    def _offsets(self, path: str, arrays: dict, kind: str, n: int, limit_arrays: Iterable[str]):
        if kind not in arrays or arrays[kind].shape[0] < n + 1:
            self.problem(path, f"missing or short {kind}")
            return None
        offsets = np.asarray(arrays[kind][: n + 1], dtype=np.int64)
        if not self.require(offsets[0] == 0, f"{path}/{kind}", f"starts at {offsets[0]}, not 0"):
            return None
        steps = np.diff(offsets)
        if (steps < 0).any():
            row = int(np.flatnonzero(steps < 0)[0])
            self.problem(
                f"{path}/{kind}",
                f"decreases at row {row} ({offsets[row]} -> {offsets[row + 1]}): not monotone",
            )
            return None
        for name in limit_arrays:
            if name not in arrays:
                self.problem(path, f"missing array {name}")
                return None
            size = arrays[name].shape[0]
            if offsets[-1] > size:
                self.problem(
                    f"{path}/{kind}",
                    f"ends at {offsets[-1]}, beyond the {size} rows of {name}",
                )
                return None
        return offsets

    def _ragged(self, path: str, group: Any, arrays: dict, n: int) -> None:
        offsets = self._offsets(path, arrays, "offsets", n, RAGGED_ATOM_ARRAYS)
        if offsets is not None and offsets[-1]:
            numbers = np.asarray(arrays["numbers"][: offsets[-1]])
            bad = np.flatnonzero((numbers < 1) | (numbers > 118))
            if len(bad):
                self.problem(
                    f"{path}/numbers",
                    f"atom {int(bad[0])} has atomic number {int(numbers[bad[0]])} (not 1..118)",
                )
        bond_offsets = self._offsets(path, arrays, "bond_offsets", n, ("bonds",))
        if offsets is None or bond_offsets is None or not bond_offsets[-1]:
            return
        bonds = np.asarray(arrays["bonds"][: bond_offsets[-1]])
        owner = np.searchsorted(bond_offsets, np.arange(len(bonds)), side="right") - 1
        n_atoms = np.diff(offsets)[owner]
        outside = (bonds[:, :2] < 0) | (bonds[:, :2] >= n_atoms[:, None])
        bad = np.flatnonzero(outside.any(axis=1))
        if len(bad):
            k = int(bad[0])
            self.problem(
                f"{path}/bonds",
                f"bond {k} of molecule {int(owner[k])} joins atoms {bonds[k, 0]}-{bonds[k, 1]}, "
                f"outside its {int(n_atoms[k])} atoms",
            )

    def column(self, path: str, name: str, n: int) -> np.ndarray:
        values = self.root[path][name][:n]
        return np.array([str(v) for v in values.tolist()]) if values.dtype.kind == "T" else values

    def in_range(self, path: str, values: np.ndarray, stop: int, what: str) -> bool:
        bad = np.flatnonzero((values < 0) | (values >= stop))
        if len(bad):
            self.problem(
                path,
                f"row {int(bad[0])} refers to {what} {int(values[bad[0]])}, outside 0..{stop - 1}"
                f" ({len(bad)} rows out of range)",
            )
            return False
        return True

    def unique(self, path: str, values: np.ndarray, what: str) -> None:
        unique, first, counts = np.unique(values, return_index=True, return_counts=True)
        if (counts > 1).any():
            k = int(np.flatnonzero(counts > 1)[0])
            self.problem(
                path,
                f"{what} {str(unique[k])!r} appears {int(counts[k])} times (first at row "
                f"{int(first[k])}); {what}s must be unique",
            )

    # ---- the workspace -----------------------------------------------------------------------
    def root_attributes(self) -> dict[str, Any] | None:
        meta = self.root.attrs.get(ROOT_ATTR)
        if not isinstance(meta, dict):
            self.problem("/", f"attribute {ROOT_ATTR!r} is missing: not an amondask workspace")
            return None
        version = meta.get("schema_version")
        self.require(
            isinstance(version, int) and 1 <= version <= SCHEMA_VERSION,
            "/",
            f"schema_version is {version!r}; this amondask reads 1..{SCHEMA_VERSION}",
        )
        self.require(
            isinstance(meta.get("parameters", {}), dict), "/", "parameters is not a mapping"
        )
        for name in self.root.group_keys():
            if name.startswith(STAGING_PREFIX):
                self.report.notes.append(
                    f"{name}: work of an unfinished run is staged here; the next run of the "
                    "same stage resumes it"
                )
            elif name not in KNOWN_GROUPS:
                self.problem(name, "unknown group (not written by amondask)")
        return meta

    def queries(self, meta: dict) -> tuple[int, int]:
        n_queries = self.table("queries") or 0
        if n_queries:
            self.unique("queries/id", self.column("queries", "id", n_queries), "query id")
        extracted = meta.get("extracted_queries", 0)
        if not self.require(
            isinstance(extracted, int) and 0 <= extracted <= n_queries,
            "/",
            f"extracted_queries is {extracted!r}, the workspace holds {n_queries} queries",
        ):
            extracted = min(int(extracted or 0), n_queries)
        staging = self.root.get("staging_extract")
        plan = staging.attrs.get("plan") if staging is not None else None
        if isinstance(plan, dict) and isinstance(plan.get("query_stop"), int):
            # An extraction in flight: its amons and links may already be appended (they are
            # rolled back to plan["rows_before"] and redone when it resumes).
            extracted = max(extracted, min(plan["query_stop"], n_queries))
        return n_queries, int(extracted)

    def amons(self, meta: dict, extracted: int) -> tuple[int, int]:
        n_amons = self.table("amons")
        n_conformers = self.table("amons/conformers")
        if n_amons is None:
            for path in ("query_amons", "query_conformers"):
                self.require(path not in self.root, path, "present without amons/")
            return 0, 0
        n_conformers = n_conformers or 0
        if n_amons:
            self.unique("amons/key", self.column("amons", "key", n_amons), "amon key")
            n_heavy = self.column("amons", "n_heavy", n_amons).astype(np.int64)
            max_heavy = meta.get("parameters", {}).get("max_heavy_atoms")
            top = int(max_heavy) if isinstance(max_heavy, int) else 127
            bad = np.flatnonzero((n_heavy < 1) | (n_heavy > top))
            if len(bad):
                self.problem(
                    "amons/n_heavy",
                    f"amon {int(bad[0])} has {int(n_heavy[bad[0]])} heavy atoms, not 1..{top} "
                    "(max_heavy_atoms)",
                )
            self.in_range(
                "amons/first_query", self.column("amons", "first_query", n_amons), extracted,
                "extracted query",
            )  # fmt: skip
        if n_conformers:
            path = "amons/conformers"
            amon = self.column(path, "amon", n_conformers).astype(np.int64)
            if self.in_range(f"{path}/amon", amon, n_amons, "amon"):
                cap = meta.get("parameters", {}).get("max_conformers_per_amon")
                most = np.bincount(amon, minlength=max(n_amons, 1))
                if isinstance(cap, int) and most.max() > cap:
                    self.problem(
                        f"{path}/amon",
                        f"amon {int(most.argmax())} has {int(most.max())} conformers, more than "
                        f"max_conformers_per_amon={cap}",
                    )
                ids = self.column(path, "id", n_conformers)
                expected = np.array([f"{a}:{k}" for k, a in enumerate(amon.tolist())])
                wrong = np.flatnonzero(ids != expected)
                if len(wrong):
                    k = int(wrong[0])
                    self.problem(
                        f"{path}/id",
                        f"row {k} has id {str(ids[k])!r}, expected {str(expected[k])!r} "
                        "(<amon>:<row>)",
                    )
            self.in_range(
                f"{path}/first_query", self.column(path, "first_query", n_conformers), extracted,
                "extracted query",
            )  # fmt: skip
            offsets = self.root[path]["offsets"][: n_conformers + 1]
            positions = self.root[path]["positions"][: int(offsets[-1])]
            bad_rows = ~np.isfinite(positions).all(axis=1)
            if bad_rows.any():
                atom = int(np.flatnonzero(bad_rows)[0])
                row = int(np.searchsorted(offsets, atom, side="right") - 1)
                self.problem(f"{path}/positions", f"conformer {row} has non-finite positions")
        for path, other, stop in (
            ("query_amons", "amon", n_amons),
            ("query_conformers", "conformer", n_conformers),
        ):
            n = self.table(path)
            if n is None:
                self.problem(path, "missing while amons/ exists")
                continue
            if not n:
                continue
            query = self.column(path, "query", n).astype(np.int64)
            target = self.column(path, other, n).astype(np.int64)
            self.in_range(f"{path}/query", query, extracted, "extracted query")
            self.in_range(f"{path}/{other}", target, stop, other)
            pairs = query * max(stop, 1) + target
            if len(np.unique(pairs)) != n:
                self.problem(path, f"{n - len(np.unique(pairs))} repeated (query, {other}) pairs")
            if path == "query_amons":
                count = self.column(path, "count", n)
                self.require(
                    (count >= 1).all(), f"{path}/count", f"{int((count < 1).sum())} counts < 1"
                )
        return n_amons, n_conformers

    def labels(self, n_conformers: int, n_queries: int) -> dict[str, np.ndarray]:
        """Check label groups; returns the ``ok`` conformer rows per level of theory."""
        from amondask.label.base import STATUS_OK, STATUSES

        ok_rows: dict[str, np.ndarray] = {}
        if "labels" not in self.root:
            return ok_rows
        for slug, group in self.root["labels"].groups():
            base = f"labels/{slug}"
            level = group.attrs.get("level_of_theory")
            self.require(isinstance(level, str) and level, base, "no level_of_theory attribute")
            for target, stop in (("amons", n_conformers), ("queries", n_queries)):
                path = f"{base}/{target}"
                n = self.table(path)
                if not n:
                    continue
                rows = self.column(path, "source_row", n).astype(np.int64)
                what = "conformer" if target == "amons" else "query"
                self.in_range(f"{path}/source_row", rows, stop, what)
                self.unique(f"{path}/source_row", rows, f"labeled {what} row")
                status = self.column(path, "status", n)
                unknown = sorted(set(status.tolist()) - set(STATUSES))
                self.require(not unknown, f"{path}/status", f"unknown statuses {unknown}")
                energy = self.column(path, "energy_hartree", n).astype(np.float64)
                ok = status == STATUS_OK
                bad = np.flatnonzero(ok & ~np.isfinite(energy))
                if len(bad):
                    self.problem(
                        f"{path}/energy_hartree",
                        f"row {int(bad[0])} (source row {int(rows[bad[0]])}) is 'ok' with energy "
                        f"{energy[bad[0]]} ({len(bad)} such rows)",
                    )
                if target == "amons" and isinstance(level, str):
                    ok_rows[level] = rows[ok]
        return ok_rows

    def representations(self) -> dict[str, int]:
        """Check representation parts; returns represented rows per name."""
        represented: dict[str, int] = {}
        if "represent" not in self.root:
            return represented
        for rep_name, rep in self.root["represent"].groups():
            for name, target in rep.groups():
                base = f"represent/{rep_name}/{name}"
                if "parts" not in target:
                    self.problem(base, "no parts/ group")
                    continue
                self.report.checked.append(base)
                expected = 0
                for part_name, part in sorted(target["parts"].groups()):
                    if not part.attrs.get("complete"):
                        self.report.notes.append(
                            f"{base}/parts/{part_name}: incomplete (a killed run); the next run "
                            "redoes it"
                        )
                        continue
                    start, stop = part.attrs.get("start"), part.attrs.get("stop")
                    if start != expected:
                        self.problem(
                            f"{base}/parts/{part_name}",
                            f"starts at row {start}, the previous part ends at {expected}",
                        )
                    expected = int(stop)
                    for z in part.attrs.get("elements", []):
                        key = f"molecule_index/{int(z)}"
                        if str(int(z)) not in part or key not in part:
                            self.problem(f"{base}/parts/{part_name}", f"element {z} has no arrays")
                            continue
                        x, owner = part[str(int(z))], part[key]
                        self.require(
                            x.shape[0] == owner.shape[0],
                            f"{base}/parts/{part_name}/{z}",
                            f"{x.shape[0]} atom rows but {owner.shape[0]} molecule indices",
                        )
                        if owner.shape[0]:
                            self.in_range(
                                f"{base}/parts/{part_name}/{key}",
                                np.asarray(owner[:]) - int(start),
                                int(stop) - int(start),
                                f"molecule (offset by the part start {start})",
                            )
                represented[name] = expected
        return represented

    def kernels(self, represented: dict[str, int], n_conformers: int) -> None:
        if "kernels" not in self.root:
            return
        rows = represented.get("amons")
        for name, group in self.root["kernels"].groups():
            base = f"kernels/{name}"
            if "K" not in group:
                continue
            self.report.checked.append(base)
            shape = tuple(group["K"].shape)
            cols_name = name[len("amons-") :] if name.startswith("amons-") else None
            cols = represented.get(cols_name) if cols_name else None
            if rows is not None and cols is not None and shape != (rows, cols):
                self.report.notes.append(
                    f"{base}/K: shape {shape}, the representations have {rows} amon rows and "
                    f"{cols} {cols_name} rows (stale after new queries); the next run rebuilds it"
                )
            elif cols_name and cols is None:
                self.problem(base, f"kernel without a representation {cols_name!r}")
            if "K_done" in group:
                chunks = group["K"].chunks
                grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
                done_shape = tuple(group["K_done"].shape)
                self.require(
                    done_shape == grid,
                    f"{base}/K_done",
                    f"shape {done_shape}, K has {grid} blocks",
                )

    def models(self, ok_rows: dict[str, np.ndarray], n_conformers: int) -> set[str]:
        from amondask.models.krr import MODEL_ATTRIBUTE

        names: set[str] = set()
        if "models" not in self.root:
            return names
        parameters = self.workspace.parameters.get("representation", {})
        for name, group in self.root["models"].groups():
            base = f"models/{name}"
            names.add(name)
            self.report.checked.append(base)
            meta = group.attrs.get(MODEL_ATTRIBUTE)
            if not isinstance(meta, dict):  # written last: a training run was interrupted
                self.report.notes.append(
                    f"{base}: no saved model yet (no {MODEL_ATTRIBUTE!r} attribute: its training "
                    "was interrupted); the next run trains it again"
                )
                continue
            n_train = meta.get("n_train")
            if "dual_coef" in group:
                self.require(
                    group["dual_coef"].shape[0] == n_train,
                    f"{base}/dual_coef",
                    f"{group['dual_coef'].shape[0]} coefficients, n_train is {n_train}",
                )
            else:
                self.problem(base, "no dual_coef array")
            if "elements" in group and "baseline_coef" in group:
                self.require(
                    group["baseline_coef"].shape[0] == group["elements"].shape[0],
                    f"{base}/baseline_coef",
                    f"{group['baseline_coef'].shape[0]} coefficients for "
                    f"{group['elements'].shape[0]} elements",
                )
            params = meta.get("params", {})
            for key in ("rcut", "sigmas", "dgrid"):
                mine = params.get("slatm_sigmas" if key == "sigmas" else key)
                recorded = parameters.get(key)
                if mine is not None and recorded is not None:
                    self.require(
                        np.allclose(np.ravel(mine), np.ravel(recorded)),
                        base,
                        f"model {key}={mine} but the workspace's representation has {recorded}",
                    )
            level = group.attrs.get("level_of_theory")
            if level is not None and level not in ok_rows:
                self.problem(base, f"trained at level {level!r}, which has no amon labels here")
            if "train_rows" in group:
                train_rows = np.asarray(group["train_rows"][:], dtype=np.int64)
                self.require(
                    len(train_rows) == n_train,
                    f"{base}/train_rows",
                    f"{len(train_rows)} rows, n_train is {n_train}",
                )
                if self.in_range(f"{base}/train_rows", train_rows, n_conformers, "conformer"):
                    if level in ok_rows:
                        missing = np.setdiff1d(train_rows, ok_rows[level])
                        self.require(
                            not len(missing),
                            f"{base}/train_rows",
                            f"{len(missing)} training rows (first {missing[:1].tolist()}) have "
                            f"no 'ok' label at {level!r}",
                        )
        return names

    def predictions(self, models: set[str], n_queries: int) -> None:
        if "predictions" not in self.root:
            return
        for name in self.root["predictions"].group_keys():
            path = f"predictions/{name}"
            n = self.table(path)
            if n is None:
                continue
            if n != n_queries:
                self.report.notes.append(
                    f"{path}: {n} predictions for {n_queries} queries (stale after new queries); "
                    "the next run predicts them all"
                )
            if n:
                self.in_range(
                    f"{path}/query", self.column(path, "query", n).astype(np.int64), n_queries,
                    "query",
                )  # fmt: skip
            model = self.root[path].attrs.get("model", name)
            if name == "global":
                self.require(model in models, path, f"model {model!r} is not in models/")

    def errors(self) -> None:
        n = self.table("errors")
        if not n:
            return
        for column in ("record_id", "stage", "error_type", "message"):
            values = self.column("errors", column, n)
            empty = np.flatnonzero(np.char.str_len(values.astype(str)) == 0)
            if len(empty):
                self.problem(f"errors/{column}", f"row {int(empty[0])} is empty")


def verify_workspace(workspace: Workspace) -> list[str]:
    """The problems of ``workspace``, one line each (``[]``: clean). See :func:`verify`."""
    return verify(workspace).problems


def verify(workspace: Workspace) -> VerifyReport:
    """Check the integrity of ``workspace`` (see the module doc); reads, never writes.

    A part that cannot be read at all (a damaged chunk or metadata file) is one problem line
    naming the part and the error; the checks that do not depend on it still run.
    """
    report = VerifyReport(location=workspace.location)
    checker = _Checker(workspace, report)
    meta = checker.root_attributes()
    if meta is None:
        return report
    found: dict[str, Any] = {
        "queries": (0, 0), "amons": (0, 0), "labels": {}, "represent": {}, "models": set()
    }  # fmt: skip

    def step(name: str, check: Any) -> None:
        try:
            found[name] = check()
        except Exception as exc:  # an unreadable part is a finding, not a crash
            checker.problem(name, f"cannot be read ({type(exc).__name__}: {exc})")

    step("queries", lambda: checker.queries(meta))
    n_queries, extracted = found["queries"]
    step("amons", lambda: checker.amons(meta, extracted))
    n_conformers = found["amons"][1]
    step("labels", lambda: checker.labels(n_conformers, n_queries))
    step("represent", checker.representations)
    step("kernels", lambda: checker.kernels(found["represent"], n_conformers))
    step("models", lambda: checker.models(found["labels"], n_conformers))
    step("predictions", lambda: checker.predictions(found["models"], n_queries))
    step("errors", checker.errors)
    return report
