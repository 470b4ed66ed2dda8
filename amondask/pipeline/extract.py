"""The extraction stage: every query's amons, merged into the workspace's global amon store.

Algorithm (a two-phase merge by hash buckets; the client never holds the amons):

1. **parts** (one task per partition of query rows): extract the amons of each query
   (:func:`amondask.amons.extract_amons`) and write the occurrences and 3D conformers to a staging
   subgroup, sorted by (bucket, key, query), where ``bucket = crc32(key) mod B``.
2. **buckets** (one task per bucket): read the bucket's slice of every part, deduplicate keys
   against the store and each other (first query wins), deduplicate conformers against the stored
   conformers of the same amon and each other (the authors' criterion, with the per-query
   dedup's own function :func:`amondask.amons.geometry.first_same_conformer` and
   ``amondask.amons.conformer-threshold``), and write the
   new amons sorted by (first query, n_heavy, key). With ``max_conformers_per_amon`` (a
   defining parameter of the workspace) an amon keeps its first conformers in query order, and a
   query whose geometry would be one more is linked to the kept conformer nearest to it.
3. **ids** (client, streaming): a k-way merge of the buckets' sorted new amons gives every new
   amon its id, in the order (first query, n_heavy, key), after the existing ids; conformers the
   same way. The client reads and appends a bounded number of rows at a time, as raw arrays
   (no Molecule objects).
4. **links** (one task per bucket): query -> amon counts and query -> conformer pairs, final ids.
5. **commit** (client, a window of queries at a time): the buckets' links of the window are
   sorted together and appended to ``query_amons/`` and ``query_conformers/``, error rows to
   ``errors/``, and ``extracted_queries`` moves on.

The ids depend only on the queries and their order, not on partitions, buckets or workers. Every
step's output is marked complete when written, and the tables the client appends to are rolled
back to their recorded length before it appends, so a run killed at any point resumes to the
same store. Appending queries and re-running extracts only the new ones; amons already in the
store keep their ids.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amondask import config
from amondask.errors import AmondaskError, ErrorRecord, InputError
from amondask.pipeline.staging import (
    delete_group,
    fresh_group,
    is_complete,
    mark_complete,
    merged_rows,
    read_column,
    write_columns,
)
from amondask.pipeline.tasks import SERIAL, run_tasks
from amondask.store.amons import AmonStore
from amondask.store.table import Column, MoleculeBlock, RaggedMoleculeTable
from amondask.store.workspace import Workspace

STAGING = "staging_extract"
APPEND_BATCH = 20_000
#: conformers the client appends at a time in the ids step (~10 MB of atoms per 10,000): each
#: batch re-reads a chunk of every bucket, so fewer, larger batches read far less
CONFORMER_APPEND_BATCH = 200_000
#: queries whose links the commit step sorts and appends at a time (~27 links per QM9 query)
COMMIT_QUERY_WINDOW = 20_000


def bucket_of(key: str, n_buckets: int) -> int:
    """The merge bucket of an amon key: a stable hash, the same in every process."""
    return zlib.crc32(key.encode("utf-8")) % n_buckets


@dataclass
class ExtractReport:
    """What an extraction did."""

    queries_extracted: int = 0
    new_amons: int = 0
    new_conformers: int = 0
    errors: int = 0
    partitions: int = 0
    buckets: int = 0
    store: dict[str, Any] = field(default_factory=dict)
    #: wall time in seconds of each step (parts, buckets, ids, links, commit), summed over plans
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def format(self) -> str:
        store = self.store
        lines = [
            f"extracted {self.queries_extracted} queries in {self.partitions} partitions: "
            f"{self.new_amons} new amons, {self.new_conformers} new conformers, "
            f"{self.errors} failed queries",
        ]
        if store:
            by_size = ", ".join(f"{k}: {v}" for k, v in sorted(store["amons_by_n_heavy"].items()))
            lines.append(
                f"store: {store['amons']} amons ({by_size}), {store['conformers']} conformers, "
                f"{store['mean_amons_per_query']:.1f} amons per query, "
                f"reuse factor {store['reuse_factor']:.1f}"
            )
        return "\n".join(lines)


# ---- step 1: parts ---------------------------------------------------------------------------
PART_CONFORMER_COLUMNS = {"query": Column("int64"), "local": Column("int32")}


def _extract_part(
    spec: Any,
    start: int,
    stop: int,
    max_heavy_atoms: int,
    rules: str,
    relax: bool,
    noncovalent: dict | None,
    periodic: dict,
    n_buckets: int,
) -> dict[str, int]:
    """Extract the amons of queries [start, stop) into the staging part ``p<start>``
    (``noncovalent``, ``periodic``: the workspace's recorded settings; a periodic query gets
    its cluster amons, :mod:`amondask.amons.periodic`)."""
    from amondask.amons import extract_amons
    from amondask.amons.noncovalent import NoncovalentSettings
    from amondask.amons.periodic import PeriodicAmonSettings, periodic_amons
    from amondask.chem.periodic import is_periodic
    from amondask.chem.validate import check_size

    settings = NoncovalentSettings.from_parameter(noncovalent)
    cluster_settings = PeriodicAmonSettings.from_parameter(periodic)

    workspace = Workspace(spec)
    parts = workspace.root[STAGING]["parts"]
    name = f"p{start:012d}"
    if is_complete(parts, name):
        return dict(parts[name].attrs)
    rows: list[tuple] = []  # (bucket, key, query, n_heavy, count, conformers)
    errors: list[ErrorRecord] = []
    for query, molecule in enumerate(workspace.queries.iter_molecules(start, stop), start=start):
        try:
            check_size(molecule.n_heavy, molecule.id)  # queries added without the readers too
            if is_periodic(molecule):
                amons = periodic_amons(molecule, cluster_settings)
            else:
                amons = extract_amons(
                    molecule,
                    max_heavy_atoms,
                    rules=rules,
                    geometry=True,
                    relax=relax,
                    noncovalent=settings,
                )
        except AmondaskError as exc:
            errors.append(ErrorRecord.from_exception(exc, record_id=molecule.id, stage="amons"))
            continue
        except Exception as exc:  # one query must not stop the partition
            errors.append(
                ErrorRecord(
                    molecule.id,
                    "amons",
                    type(exc).__name__,
                    f"unexpected error while extracting amons: {exc}; please report it",
                )
            )
            continue
        for amon in amons:
            conformers = [c.molecule for c in amon.conformers if c.molecule.has_positions]
            rows.append(
                (
                    bucket_of(amon.key, n_buckets),
                    amon.key,
                    query,
                    amon.n_heavy,
                    amon.count,
                    conformers,
                )
            )
    rows.sort(key=lambda row: row[:3])
    group = fresh_group(parts, name)
    n_conformers = np.array([len(row[5]) for row in rows], dtype=np.int64)
    conf_stop = np.cumsum(n_conformers)
    chunk_rows = workspace.chunk_rows
    write_columns(
        group,
        {
            "bucket": np.array([r[0] for r in rows], dtype=np.int32),
            "key": np.array([r[1] for r in rows], dtype=object),
            "query": np.array([r[2] for r in rows], dtype=np.int64),
            "n_heavy": np.array([r[3] for r in rows], dtype=np.int8),
            "count": np.array([r[4] for r in rows], dtype=np.int32),
            "conf_start": conf_stop - n_conformers,
            "conf_stop": conf_stop,
        },
        chunk_rows,
    )
    conformers = RaggedMoleculeTable.create(group, "conformers", PART_CONFORMER_COLUMNS, chunk_rows)
    molecules = [m for row in rows for m in row[5]]
    keys = [r[1] for r in rows for _ in r[5]]
    conformers.append_molecules(
        molecules,
        extra={
            "id": keys,
            "key": keys,
            "smiles": keys,
            "coordinates": ["amon"] * len(molecules),
            "metadata": ["{}"] * len(molecules),
            "query": [r[2] for r in rows for _ in r[5]],
            "local": [k for r in rows for k in range(len(r[5]))],
        },
    )
    write_columns(group, _error_columns(errors), chunk_rows)
    buckets = np.array([r[0] for r in rows], dtype=np.int64)
    bucket_offsets = np.searchsorted(buckets, np.arange(n_buckets + 1)).tolist()
    summary = {"occurrences": len(rows), "conformers": len(molecules), "errors": len(errors)}
    mark_complete(group, bucket_offsets=bucket_offsets, **summary)
    return summary


def largest_first(
    workspace: Workspace, partitions: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The partitions [start, stop) of query rows, the most expensive first.

    The cost of a query's amons grows steeply with its size, so a partition's cost is estimated
    as the sum of its queries' squared atom counts (read from the query table's offsets). Started
    largest first, the last tasks of the stage are the cheap ones, and no worker waits long for
    the last one to finish (on QM9, in index order, the largest molecules come last). The order
    changes nothing in the store: every partition writes its own part, merged by name.
    """
    if len(partitions) < 2:
        return list(partitions)
    first, stop = partitions[0][0], partitions[-1][1]
    atoms = np.diff(workspace.queries.offsets(first, stop)).astype(np.float64)
    cost = [float(np.sum(atoms[a - first : b - first] ** 2)) for a, b in partitions]
    order = sorted(range(len(partitions)), key=lambda k: (-cost[k], k))
    return [tuple(partitions[k]) for k in order]


def _error_columns(errors: Sequence[ErrorRecord]) -> dict[str, np.ndarray]:
    return {
        f"error_{name}": np.array([getattr(e, name) for e in errors], dtype=object)
        for name in ("record_id", "stage", "error_type", "message", "location")
    }


# ---- step 2: buckets -------------------------------------------------------------------------
NEW_CONFORMER_COLUMNS = {
    "amon_ref": Column("int64"),
    "first_query": Column("int64"),
    "n_heavy": Column("int8"),
    "local": Column("int32"),
}


def _existing_in_bucket(
    workspace: Workspace, plan: dict, bucket: int
) -> tuple[dict[str, int], dict[int, list[tuple[int, np.ndarray]]]]:
    """Stored amons of this bucket (key -> id) and their conformers (id -> [(row, signature)])."""
    n_amons, n_conformers = plan["rows_before"]["amons"], plan["rows_before"]["conformers"]
    if not n_amons:
        return {}, {}
    store = AmonStore(workspace)
    keys = store.amons.read_text("key", 0, n_amons)
    ids = {key: k for k, key in enumerate(keys) if bucket_of(key, plan["buckets"]) == bucket}
    conformer_amons = store.conformers.read("amon", 0, n_conformers)
    wanted = np.isin(conformer_amons, np.fromiter(ids.values(), np.int64))
    positions: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    block_rows = 50_000  # rows read at a time: memory stays bounded however large the store
    for start in range(0, n_conformers, block_rows):
        stop = min(start + block_rows, n_conformers)
        if not wanted[start:stop].any():
            continue
        block = store.conformers.read_block(start, stop, text=False)
        for row in np.flatnonzero(wanted[start:stop]).tolist():
            positions[int(conformer_amons[start + row])].append(
                (start + row, block.positions_of(row).copy())
            )
    signatures: dict[int, list[tuple[int, np.ndarray]]] = {}
    for amon, entries in positions.items():
        stacked = _signatures_of([p for _, p in entries])
        signatures[amon] = [(row, s) for (row, _), s in zip(entries, stacked, strict=True)]
    return ids, signatures


class _KeptSignatures:
    """The kept conformers of one amon: their ids and conformer signatures, compared in one go.

    The decision is :func:`amondask.amons.geometry.first_same_conformer`, the per-query
    dedup's: the first kept conformer that is the same conformer is the match. The signatures
    live in one (capacity, n) matrix that doubles when full, so that adding is cheap however
    many conformers an amon has (one QM9 amon has ~18,000).
    """

    def __init__(self, entries: Sequence[tuple[int, np.ndarray]], n_atoms: int):
        self.ids = [row for row, _ in entries]
        self._matrix = np.empty((max(16, 2 * len(entries)), n_atoms))
        for k, (_, signature) in enumerate(entries):
            self._matrix[k] = signature

    def first_same(
        self, signature: np.ndarray, n_heavy: int, threshold: float, *, covalent: bool = True
    ) -> int | None:
        from amondask.amons.geometry import first_same_conformer

        if not self.ids:
            return None
        match = first_same_conformer(
            self._stacked(), signature, n_heavy, threshold, covalent=covalent
        )
        return None if match is None else self.ids[match]

    def nearest(self, signature: np.ndarray) -> int:
        from amondask.amons.geometry import nearest_conformer

        return self.ids[nearest_conformer(self._stacked(), signature)]

    def _stacked(self) -> np.ndarray:
        """The kept signatures as one (m, n) matrix (a view)."""
        return self._matrix[: len(self.ids)]

    def add(self, conformer_id: int, signature: np.ndarray) -> None:
        m = len(self.ids)
        if m == len(self._matrix):
            grown = np.empty((2 * m, self._matrix.shape[1]))
            grown[:m] = self._matrix
            self._matrix = grown
        self._matrix[m] = signature
        self.ids.append(conformer_id)


def _signatures_of(positions: list[np.ndarray], rows_at_once: int = 2048) -> np.ndarray:
    """Conformer signatures (k, n) of k geometries of one amon (each (n, 3), angstrom), computed
    a bounded number at a time."""
    from amondask.amons.geometry import conformer_signatures

    return np.concatenate(
        [
            conformer_signatures(np.stack(positions[lo : lo + rows_at_once]))
            for lo in range(0, len(positions), rows_at_once)
        ]
    )


@dataclass
class _Candidate:
    """One query's conformer of one amon, as written by its part: where to find it."""

    query: int
    local: int
    block: Any  # MoleculeBlock of the part's bucket slice
    row: int

    def molecule(self):
        return self.block.molecule(self.row)


def _first_conformer_smiles(entries: list[_Candidate] | None, key: str) -> str:
    """SMILES (stereo from 3D) of an amon's first conformer in query order, else its key.

    Computed here, once per new amon, rather than for every occurrence while extracting.
    """
    if not entries:
        return key
    return min(entries, key=lambda entry: (entry.query, entry.local)).molecule().smiles


def _merge_bucket(spec: Any, bucket: int, max_conformers: int | None = None) -> dict[str, int]:
    """Deduplicate the amons and conformers of one bucket; write ``b<bucket>``.

    ``max_conformers``: at most this many conformers per amon (None: no cap); a further new
    conformer is not stored, its query is linked to the kept conformer nearest to it.
    """
    from amondask.amons.geometry import is_covalent_key

    workspace = Workspace(spec)
    staging = workspace.root[STAGING]
    plan = staging.attrs["plan"]
    name = f"b{bucket:05d}"
    if is_complete(staging["buckets"], name):
        return dict(staging["buckets"][name].attrs)
    threshold = float(config.get("amons.conformer-threshold"))
    existing_ids, existing_signatures = _existing_in_bucket(workspace, plan, bucket)

    # Occurrences and candidate conformers of this bucket, in query order (parts are ordered).
    occurrences: list[tuple[str, int, int, int]] = []  # key, query, n_heavy, count
    candidates: dict[str, list[_Candidate]] = defaultdict(list)
    for part_name in plan["part_names"]:
        part = staging["parts"][part_name]
        lo, hi = part.attrs["bucket_offsets"][bucket : bucket + 2]
        if hi == lo:
            continue
        keys = read_column(part, "key", lo, hi)
        queries = read_column(part, "query", lo, hi)
        n_heavy = read_column(part, "n_heavy", lo, hi)
        counts = read_column(part, "count", lo, hi)
        conf_lo = int(part["conf_start"][lo])
        conf_hi = int(part["conf_stop"][hi - 1])
        table = RaggedMoleculeTable(part["conformers"])
        block = table.read_block(conf_lo, conf_hi)
        conf_keys = table.read_text("key", conf_lo, conf_hi)
        conf_queries = table.read("query", conf_lo, conf_hi).tolist()
        conf_local = table.read("local", conf_lo, conf_hi).tolist()
        for k in range(hi - lo):
            occurrences.append((keys[k], int(queries[k]), int(n_heavy[k]), int(counts[k])))
        for k in range(len(block)):
            candidates[conf_keys[k]].append(_Candidate(conf_queries[k], conf_local[k], block, k))

    # New amons: keys not in the store; the first query that has one defines its place.
    n_heavy_of = {o[0]: o[2] for o in occurrences}
    first: dict[str, tuple[int, int, str]] = {}
    for key, query, n_heavy, _count in occurrences:
        if key not in existing_ids and (key not in first or query < first[key][0]):
            first[key] = (query, n_heavy, _first_conformer_smiles(candidates.get(key), key))
    new_keys = sorted(first, key=lambda key: (first[key][0], first[key][1], key))
    new_index = {key: k for k, key in enumerate(new_keys)}

    def amon_ref(key: str) -> int:
        return existing_ids[key] if key in existing_ids else -1 - new_index[key]

    # Conformers: keep those farther than the threshold from every kept one of the same amon.
    new_conformers: list[tuple[tuple, int, _Candidate]] = []  # (sort key, ref, candidate)
    query_conformer_refs: set[tuple[int, int]] = set()
    for key, entries in candidates.items():
        entries.sort(key=lambda entry: (entry.query, entry.local))
        ref = amon_ref(key)
        signatures = _signatures_of([entry.block.positions_of(entry.row) for entry in entries])
        kept = _KeptSignatures(
            existing_signatures.get(ref, []) if ref >= 0 else [], signatures.shape[1]
        )
        n_heavy = n_heavy_of[key]
        covalent = is_covalent_key(key)
        for entry, signature in zip(entries, signatures, strict=True):
            match = kept.first_same(signature, n_heavy, threshold, covalent=covalent)
            if match is None and max_conformers is not None and len(kept.ids) >= max_conformers:
                match = kept.nearest(signature)
            if match is None:
                match = -1 - len(new_conformers)
                new_conformers.append(((entry.query, n_heavy, key, entry.local), ref, entry))
                kept.add(match, signature)
            query_conformer_refs.add((entry.query, match))
    order = sorted(range(len(new_conformers)), key=lambda k: new_conformers[k][0])
    position = {old: new for new, old in enumerate(order)}

    group = fresh_group(staging["buckets"], name)
    chunk_rows = workspace.chunk_rows
    write_columns(
        group,
        {
            "new_key": np.array(new_keys, dtype=object),
            "new_smiles": np.array([first[k][2] for k in new_keys], dtype=object),
            "new_n_heavy": np.array([first[k][1] for k in new_keys], dtype=np.int8),
            "new_first_query": np.array([first[k][0] for k in new_keys], dtype=np.int64),
            "link_query": np.array([o[1] for o in occurrences], dtype=np.int64),
            "link_amon_ref": np.array([amon_ref(o[0]) for o in occurrences], dtype=np.int64),
            "link_count": np.array([o[3] for o in occurrences], dtype=np.int32),
            "qc_query": np.array([q for q, _ in sorted(query_conformer_refs)], dtype=np.int64),
            "qc_conformer_ref": np.array(
                [
                    ref if ref >= 0 else -1 - position[-1 - ref]
                    for _, ref in sorted(query_conformer_refs)
                ],
                dtype=np.int64,
            ),
        },
        chunk_rows,
    )
    table = RaggedMoleculeTable.create(group, "new_conformers", NEW_CONFORMER_COLUMNS, chunk_rows)
    ordered = [new_conformers[k] for k in order]
    keys = [entry[0][2] for entry in ordered]
    table.append_block(
        MoleculeBlock.gather([(entry[2].block, entry[2].row) for entry in ordered]),
        {
            "id": keys,
            "key": keys,
            "smiles": keys,
            "coordinates": ["amon"] * len(ordered),
            "metadata": ["{}"] * len(ordered),
            "amon_ref": [entry[1] for entry in ordered],
            "first_query": [entry[2].query for entry in ordered],
            "n_heavy": [entry[0][1] for entry in ordered],
            "local": [entry[0][3] for entry in ordered],
        },
    )
    summary = {"new_amons": len(new_keys), "new_conformers": len(ordered)}
    mark_complete(group, **summary)
    return summary


# ---- step 3: ids (client) --------------------------------------------------------------------
def _assign_ids(workspace: Workspace, store: AmonStore, plan: dict) -> None:
    """Append new amons and conformers in their global order; record each bucket's new ids."""
    staging = workspace.root[STAGING]
    if staging.attrs.get("ids_done"):
        return
    store.amons.truncate(plan["rows_before"]["amons"])
    store.conformers.truncate(plan["rows_before"]["conformers"])
    groups = [staging["buckets"][f"b{b:05d}"] for b in range(plan["buckets"])]

    # Amons, ordered by (first query, n_heavy, key).
    lengths = [g["new_key"].shape[0] for g in groups]

    def amon_keys(g):
        def read(start, stop):
            return list(
                zip(
                    read_column(g, "new_first_query", start, stop).tolist(),
                    read_column(g, "new_n_heavy", start, stop).tolist(),
                    read_column(g, "new_key", start, stop),
                    read_column(g, "new_smiles", start, stop),
                    strict=True,
                )
            )

        return read

    new_ids = [np.empty(n, dtype=np.int64) for n in lengths]
    next_id = store.amons.n_rows
    batch: dict[str, list] = defaultdict(list)
    merged = merged_rows([amon_keys(g) for g in groups], lengths)
    for bucket, row, (query, n_heavy, key, smiles) in merged:
        new_ids[bucket][row] = next_id
        next_id += 1
        batch["key"].append(key)
        batch["smiles"].append(smiles)
        batch["n_heavy"].append(n_heavy)
        batch["first_query"].append(query)
        if len(batch["key"]) >= APPEND_BATCH:
            store.amons.append(batch)
            batch = defaultdict(list)
    if batch:
        store.amons.append(batch)
    for group, ids in zip(groups, new_ids, strict=True):
        if "new_amon_ids" in group:
            del group["new_amon_ids"]
        write_columns(group, {"new_amon_ids": ids}, workspace.chunk_rows)

    # Conformers, ordered by (first query, n_heavy, key, local).
    tables = [RaggedMoleculeTable(g["new_conformers"]) for g in groups]
    conf_lengths = [t.n_rows for t in tables]

    def conformer_keys(t):
        def read(start, stop):
            return list(
                zip(
                    t.read("first_query", start, stop).tolist(),
                    t.read("n_heavy", start, stop).tolist(),
                    t.read_text("key", start, stop),
                    t.read("local", start, stop).tolist(),
                    strict=True,
                )
            )

        return read

    conformer_ids = [np.empty(n, dtype=np.int64) for n in conf_lengths]
    next_conformer = store.conformers.n_rows
    pending: list[tuple[int, int, str, int]] = []  # bucket, row, key, first query

    def flush(pending: list[tuple[int, int, str, int]]) -> None:
        spans: dict[int, list[int]] = {}
        for bucket, row, _, _ in pending:
            span = spans.setdefault(bucket, [row, row + 1])
            span[0], span[1] = min(span[0], row), max(span[1], row + 1)
        fetched: dict[int, tuple[int, MoleculeBlock, np.ndarray]] = {}
        for bucket, (lo, hi) in spans.items():  # merge order: each bucket's rows contiguous
            table = tables[bucket]
            refs = table.read("amon_ref", lo, hi)
            amons = np.where(refs >= 0, refs, new_ids[bucket][np.where(refs < 0, -1 - refs, 0)])
            fetched[bucket] = (lo, table.read_block(lo, hi, text=False), amons)
        picks, amons = [], []
        for bucket, row, _, _ in pending:
            lo, block, bucket_amons = fetched[bucket]
            picks.append((block, row - lo))
            amons.append(int(bucket_amons[row - lo]))
        keys = [key for _, _, key, _ in pending]
        store.conformers.append_block(
            MoleculeBlock.gather(picks),
            {
                "id": [f"{a}:{k}" for k, a in enumerate(amons, start=store.conformers.n_rows)],
                "key": keys,
                "smiles": keys,
                "coordinates": ["amon"] * len(keys),
                "metadata": ["{}"] * len(keys),
                "amon": amons,
                "first_query": [query for _, _, _, query in pending],
            },
        )

    merged = merged_rows([conformer_keys(t) for t in tables], conf_lengths)
    for bucket, row, (query, _, key, _) in merged:
        conformer_ids[bucket][row] = next_conformer
        next_conformer += 1
        pending.append((bucket, row, key, query))
        if len(pending) >= CONFORMER_APPEND_BATCH:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    for group, ids in zip(groups, conformer_ids, strict=True):
        if "new_conformer_ids" in group:
            del group["new_conformer_ids"]
        write_columns(group, {"new_conformer_ids": ids}, workspace.chunk_rows)
    staging.attrs["ids_done"] = True


# ---- step 4: links ---------------------------------------------------------------------------
def _resolve_links(spec: Any, bucket: int) -> int:
    """Query -> amon and query -> conformer rows of one bucket with final ids, sorted."""
    workspace = Workspace(spec)
    group = workspace.root[STAGING]["buckets"][f"b{bucket:05d}"]
    if group.attrs.get("links_done"):
        return int(group.attrs["links"])
    new_amon_ids = group["new_amon_ids"][:]
    new_conformer_ids = group["new_conformer_ids"][:]

    def resolve(refs: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
        out = refs.copy()
        negative = refs < 0
        out[negative] = new_ids[-1 - refs[negative]]
        return out

    query = group["link_query"][:]
    amon = resolve(group["link_amon_ref"][:], new_amon_ids)
    count = group["link_count"][:]
    order = np.lexsort((amon, query))
    qc_query = group["qc_query"][:]
    qc_conformer = resolve(group["qc_conformer_ref"][:], new_conformer_ids)
    qc_order = np.lexsort((qc_conformer, qc_query))
    for name in ("coo_query", "coo_amon", "coo_count", "qc_final_query", "qc_final_conformer"):
        if name in group:
            del group[name]
    write_columns(
        group,
        {
            "coo_query": query[order],
            "coo_amon": amon[order],
            "coo_count": count[order],
            "qc_final_query": qc_query[qc_order],
            "qc_final_conformer": qc_conformer[qc_order],
        },
        workspace.chunk_rows,
    )
    group.attrs.update({"links_done": True, "links": len(order)})
    return len(order)


# ---- step 5: commit (client) -----------------------------------------------------------------
class _SortedRows:
    """One bucket group's link rows, read forward a block at a time (they are sorted by the
    first column, the query): :meth:`below` hands out the next rows whose query is below a
    bound."""

    def __init__(self, group: Any, sources: Sequence[str], block_rows: int = 65_536):
        self.arrays = [group[name] for name in sources]
        self.n_rows = self.arrays[0].shape[0]
        self.block_rows = block_rows
        self.position = 0  # next row to hand out
        self.buffer: list[np.ndarray] = []
        self.buffer_start = 0

    def below(self, bound: int) -> list[np.ndarray]:
        taken: list[list[np.ndarray]] = [[] for _ in self.arrays]
        while self.position < self.n_rows:
            offset = self.position - self.buffer_start
            if not self.buffer or offset >= len(self.buffer[0]):
                stop = min(self.position + self.block_rows, self.n_rows)
                self.buffer = [array[self.position : stop] for array in self.arrays]
                self.buffer_start, offset = self.position, 0
            end = int(np.searchsorted(self.buffer[0], bound, side="left"))
            for out, values in zip(taken, self.buffer, strict=True):
                out.append(values[offset:end])
            self.position = self.buffer_start + end
            if end < len(self.buffer[0]):
                break  # the bound falls inside this block
        return [np.concatenate(parts) for parts in taken]


def _append_merged(
    table, groups: Sequence, columns: dict[str, str], query_range: tuple[int, int]
) -> None:
    """Merge the bucket groups' sorted link rows and append them to ``table`` in order.

    ``columns`` maps a group's array to the table's column, the two sort columns first (query,
    then amon or conformer); the rows of each group are sorted by them and unique. The queries
    of ``query_range`` are taken a window at a time: the window's rows of every bucket, sorted
    together (memory bounded by the window, not by the dataset).
    """
    sources = list(columns)
    readers = [_SortedRows(g, sources) for g in groups]
    start, stop = query_range
    for lo in range(start, stop, COMMIT_QUERY_WINDOW):
        pieces = [reader.below(min(lo + COMMIT_QUERY_WINDOW, stop)) for reader in readers]
        merged = [np.concatenate([piece[k] for piece in pieces]) for k in range(len(sources))]
        if not len(merged[0]):
            continue
        order = np.lexsort((merged[1], merged[0]))
        table.append({name: merged[k][order] for k, name in enumerate(columns.values())})
    left = sum(reader.n_rows - reader.position for reader in readers)
    if left:
        raise RuntimeError(f"{left} link rows fall outside the queries {start}..{stop}")


def _commit(workspace: Workspace, store: AmonStore, plan: dict) -> None:
    staging = workspace.root[STAGING]
    store.query_amons.truncate(plan["rows_before"]["query_amons"])
    store.query_conformers.truncate(plan["rows_before"]["query_conformers"])
    groups = [staging["buckets"][f"b{b:05d}"] for b in range(plan["buckets"])]
    queries = (plan["query_start"], plan["query_stop"])
    _append_merged(
        store.query_amons,
        groups,
        {"coo_query": "query", "coo_amon": "amon", "coo_count": "count"},
        queries,
    )
    _append_merged(
        store.query_conformers,
        groups,
        {"qc_final_query": "query", "qc_final_conformer": "conformer"},
        queries,
    )
    for part_name in plan["part_names"]:
        part = staging["parts"][part_name]
        records = [
            ErrorRecord(*(str(v) for v in values))
            for values in zip(
                *(
                    read_column(part, f"error_{name}")
                    for name in ("record_id", "stage", "error_type", "message", "location")
                ),
                strict=True,
            )
        ]
        workspace.add_errors(records, source="extract")
    store.set_extracted_queries(plan["query_stop"])
    delete_group(workspace.root, STAGING)


# ---- the stage -------------------------------------------------------------------------------
def _plan(
    workspace: Workspace,
    store: AmonStore,
    n_workers: int,
    partition_size: int | None,
    buckets: int | None,
    max_heavy_atoms: int,
    rules: str,
) -> dict | None:
    staging = workspace.root.get(STAGING)
    if staging is not None and "plan" in staging.attrs:
        return dict(staging.attrs["plan"])
    start, stop = store.extracted_queries, workspace.queries.n_rows
    if stop <= start:
        return None
    n = stop - start
    partition_size = int(
        config.get("extract.partition-size", partition_size)
        or max(1, min(2000, math.ceil(n / (4 * max(1, n_workers)))))
    )
    n_parts = math.ceil(n / partition_size)
    n_buckets = int(config.get("extract.buckets", buckets) or max(1, min(256, math.ceil(n / 5000))))
    bounds = [
        (start + k * partition_size, min(stop, start + (k + 1) * partition_size))
        for k in range(n_parts)
    ]
    plan = {
        "query_start": start,
        "query_stop": stop,
        "partitions": bounds,
        "part_names": [f"p{a:012d}" for a, _ in bounds],
        "buckets": n_buckets,
        "max_heavy_atoms": max_heavy_atoms,
        "rules": rules,
        "rows_before": {
            "amons": store.amons.n_rows,
            "conformers": store.conformers.n_rows,
            "query_amons": store.query_amons.n_rows,
            "query_conformers": store.query_conformers.n_rows,
        },
    }
    staging = workspace.root.require_group(STAGING)
    staging.require_group("parts")
    staging.require_group("buckets")
    staging.attrs["plan"] = json.loads(json.dumps(plan))
    return plan


def _lap(report: ExtractReport, step: str, since: float) -> float:
    now = time.perf_counter()
    report.seconds[step] += now - since
    return now


def check_max_heavy_atoms(max_heavy_atoms: int | None) -> None:
    """Refuse an amon size N_I below 1 (None: the configured or recorded one, checked later)."""
    if max_heavy_atoms is not None and max_heavy_atoms < 1:
        raise InputError(
            f"max_heavy_atoms (the amon size N_I) must be at least 1, not {max_heavy_atoms}; "
            "the paper's default is 7"
        )


def check_max_conformers_per_amon(value: int | None) -> None:
    """Refuse a conformer cap that is not a whole number of at least 1 (None: no cap)."""
    if value is None:
        return
    try:
        whole = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise InputError(
            f"max_conformers_per_amon must be a whole number of at least 1 or null (no cap), "
            f"not {value!r}"
        )


def _geometry_parameters(
    workspace: Workspace, store: AmonStore, relax: bool | None, noncovalent: Any
) -> tuple[bool, dict | None, dict]:
    """The amon geometry parameters a run uses: whether amons are relaxed (``amon_relax``),
    the non-covalent amon settings (``noncovalent_amons``, None: off) and the periodic
    queries' cluster settings (``periodic_amons``), each as given, else as recorded, else as
    configured; a store extracted before they were parameters had the defaults (relaxed,
    covalent only, 2 shells)."""
    from amondask.amons.noncovalent import NoncovalentSettings
    from amondask.amons.periodic import PeriodicAmonSettings

    recorded = workspace.parameters
    if "amon_relax" not in recorded and store.extracted_queries:
        workspace.require_parameters({"amon_relax": True, "noncovalent_amons": None})
        recorded = workspace.parameters
    if "periodic_amons" not in recorded and store.extracted_queries:
        workspace.require_parameters({"periodic_amons": PeriodicAmonSettings().as_parameter()})
        recorded = workspace.parameters
    if "periodic_amons" in recorded:
        periodic = PeriodicAmonSettings.from_parameter(recorded["periodic_amons"])
    else:
        periodic = PeriodicAmonSettings.from_config()
    relax = bool(workspace.resolve_parameter("amon_relax", relax, "amons.relax"))
    if noncovalent is None:
        if "noncovalent_amons" in recorded:
            noncovalent = NoncovalentSettings.from_parameter(recorded["noncovalent_amons"])
        else:
            noncovalent = NoncovalentSettings.from_config()
    elif isinstance(noncovalent, dict):
        noncovalent = NoncovalentSettings.from_parameter(noncovalent)
    return relax, noncovalent.as_parameter(), periodic.as_parameter()


def extract_workspace(
    workspace: Workspace,
    *,
    max_heavy_atoms: int | None = None,
    rules: str | None = None,
    max_conformers_per_amon: int | None = None,
    relax: bool | None = None,
    noncovalent: Any = None,
    client: Any = None,
    partition_size: int | None = None,
    buckets: int | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Extract the amons of every query of ``workspace`` not yet extracted (see module doc).

    ``client``: a distributed Client, or :data:`~amondask.pipeline.tasks.SERIAL` to run in this
    process. The workspace records ``max_heavy_atoms``, ``rules`` and
    ``max_conformers_per_amon`` (None: every distinct conformer is kept) as defining
    parameters, and so are ``relax`` (MMFF94-relaxed amons, else the query's geometry) and
    ``noncovalent`` (a :class:`~amondask.amons.noncovalent.NoncovalentSettings` or its
    recorded dict; off by default); when not given, the recorded values are used (else the
    configured defaults).
    """
    max_heavy_atoms = int(
        workspace.resolve_parameter("max_heavy_atoms", max_heavy_atoms, "max-heavy-atoms")
    )
    check_max_heavy_atoms(max_heavy_atoms)
    rules = str(workspace.resolve_parameter("amon_rules", rules, "amon-rules"))
    store = AmonStore(workspace)
    if "max_conformers_per_amon" not in workspace.parameters and store.extracted_queries:
        # A store extracted before the cap was a parameter keeps every conformer.
        workspace.require_parameters({"max_conformers_per_amon": None})
    max_conformers_per_amon = workspace.resolve_parameter(
        "max_conformers_per_amon", max_conformers_per_amon, "amons.max-conformers-per-amon"
    )
    check_max_conformers_per_amon(max_conformers_per_amon)
    relax, noncovalent, periodic = _geometry_parameters(workspace, store, relax, noncovalent)
    workspace.require_parameters(
        {
            "periodic_amons": periodic,
            "max_heavy_atoms": max_heavy_atoms,
            "amon_rules": rules,
            "max_conformers_per_amon": max_conformers_per_amon,
            "amon_relax": relax,
            "noncovalent_amons": noncovalent,
        }
    )
    report = ExtractReport()
    n_workers = 1
    if client not in (None, SERIAL):
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
    while True:
        plan = _plan(workspace, store, n_workers, partition_size, buckets, max_heavy_atoms, rules)
        if plan is None:
            break
        spec = workspace.spec
        clock = time.perf_counter()
        parts = run_tasks(
            client,
            _extract_part,
            [
                (
                    spec,
                    a,
                    b,
                    max_heavy_atoms,
                    rules,
                    relax,
                    noncovalent,
                    periodic,
                    plan["buckets"],
                )
                for a, b in largest_first(workspace, plan["partitions"])
            ],
            description="amons",
            progress=progress,
        )
        clock = _lap(report, "parts", clock)
        merged = run_tasks(
            client,
            _merge_bucket,
            [(spec, b, max_conformers_per_amon) for b in range(plan["buckets"])],
            description="merge",
            progress=progress,
        )
        clock = _lap(report, "buckets", clock)
        _assign_ids(workspace, store, plan)
        clock = _lap(report, "ids", clock)
        run_tasks(
            client,
            _resolve_links,
            [(spec, b) for b in range(plan["buckets"])],
            description="links",
            progress=progress,
        )
        clock = _lap(report, "links", clock)
        _commit(workspace, store, plan)
        _lap(report, "commit", clock)
        report.queries_extracted += plan["query_stop"] - plan["query_start"]
        report.partitions += len(plan["partitions"])
        report.buckets = plan["buckets"]
        report.errors += sum(p["errors"] for p in parts)
        report.new_amons += sum(m["new_amons"] for m in merged)
        report.new_conformers += sum(m["new_conformers"] for m in merged)
    report.store = store.summary()
    return report


def extract(
    queries: Any,
    workspace: Workspace | str,
    *,
    max_heavy_atoms: int | None = None,
    rules: str | None = None,
    max_conformers_per_amon: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    partition_size: int | None = None,
    buckets: int | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Read ``queries`` (a file, a list of SMILES/Molecules, or None for the workspace's own)
    into ``workspace`` and extract every query's amons into its global amon store.

    ``client=None`` starts the embedded LocalCluster (or attaches to ``scheduler``); a Client
    is used as given; :data:`~amondask.pipeline.tasks.SERIAL` runs everything in this process.
    Returns an ExtractReport; the store is in ``workspace`` (see :mod:`amondask.store.amons`).
    """
    from amondask.cluster import get_client
    from amondask.store.ingest import read_into_workspace
    from amondask.store.lock import workspace_lock

    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    with (
        workspace_lock(workspace),
        get_client(client, scheduler=scheduler, n_workers=n_workers, quiet=not progress) as active,
    ):
        if queries is not None:
            read_client = None if active is SERIAL else active
            read_into_workspace(queries, workspace, progress=progress, client=read_client)
        return extract_workspace(
            workspace,
            max_heavy_atoms=max_heavy_atoms,
            rules=rules,
            max_conformers_per_amon=max_conformers_per_amon,
            client=active,
            partition_size=partition_size,
            buckets=buckets,
            progress=progress,
        )
