"""Reading a query dataset into a workspace: the first stage of every run.

Records are streamed in batches (never the whole file in memory); molecules given only as graphs
get an ETKDG+MMFF94 geometry; bad records become rows of the workspace's ``errors/`` table with
their record id, stage and a message; re-reading the same input changes nothing.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from amondask.chem.readers import (
    Converter,
    Item,
    RawRecord,
    ReadResult,
    convert_record,
    duplicate_error,
    raw_records,
)
from amondask.errors import ErrorRecord
from amondask.store.workspace import Workspace


@dataclass
class IngestReport:
    """What one ingest did: record counts and the most common reasons for failures."""

    source: str
    n_records: int = 0
    n_added: int = 0
    n_already_present: int = 0
    n_errors: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_error: str = ""
    """The first failed record's id and whole message (what to do about it)."""

    def most_common_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)

    def format(self) -> str:
        lines = [
            f"read {self.n_records} records from {self.source}: {self.n_added} added, "
            f"{self.n_already_present} already in the workspace, {self.n_errors} failed"
        ]
        if self.reasons:
            lines.append("most common reasons:")
            lines += [f"  {count:6d}  {reason}" for reason, count in self.most_common_reasons()]
        return "\n".join(lines)


def _reason(error_type: str, message: str) -> str:
    """A short, groupable reason: the error type and the message up to its first detail."""
    head = message.split(";")[0]
    head = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", head)
    head = re.sub(r"\([^)]*\)", "", head)
    head = re.sub(r"(?<![\w.-])\d+(\.\d+)?", "N", head)
    return f"{error_type}: {head.strip()[:90]}"


def _convert_batch(
    records: list[tuple[RawRecord, Converter]], geometry: bool, seed: int | None
) -> list[Item]:
    """Parse, validate and embed a batch of records (runs on a Dask worker)."""
    return [
        convert_record(record, converter, geometry=geometry, seed=seed)
        for record, converter in records
    ]


def _raw_batches(
    source: Any, batch_size: int, seen_ids: dict[str, str], **read_options: Any
) -> Iterator[tuple[list[tuple[RawRecord, Converter]], list[ErrorRecord]]]:
    """Batches of raw records, with the duplicate-id errors found while splitting them."""
    batch: list[tuple[RawRecord, Converter]] = []
    duplicates: list[ErrorRecord] = []
    for record, converter in raw_records(source, **read_options):
        error = duplicate_error(record, seen_ids)
        if error is not None:
            duplicates.append(error)
        else:
            batch.append((record, converter))
        if len(batch) + len(duplicates) >= batch_size:
            yield batch, duplicates
            batch, duplicates = [], []
    if batch or duplicates:
        yield batch, duplicates


def _converted_batches(
    source: Any,
    batch_size: int,
    geometry: bool,
    seed: int | None,
    client: Any,
    **read_options: Any,
) -> Iterator[ReadResult]:
    """ReadResults in input order; conversion runs on ``client``'s workers when given."""
    seen_ids: dict[str, str] = {}
    batches = _raw_batches(source, batch_size, seen_ids, **read_options)
    if client is None:
        for records, duplicates in batches:
            yield _result(_convert_batch(records, geometry, seed), duplicates)
        return
    window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending: deque = deque()
    for records, duplicates in batches:
        future = client.submit(_convert_batch, records, geometry, seed, pure=False)
        pending.append((future, duplicates))
        if len(pending) >= window:
            future, duplicates = pending.popleft()
            yield _result(future.result(), duplicates)
    while pending:
        future, duplicates = pending.popleft()
        yield _result(future.result(), duplicates)


def _result(items: list[Item], duplicates: list[ErrorRecord]) -> ReadResult:
    result = ReadResult()
    for item in items:
        result.add(item)
    result.errors.extend(duplicates)
    return result


def read_into_workspace(
    source: Any,
    workspace: Workspace,
    *,
    geometry: bool = True,
    batch_size: int = 500,
    progress: bool = True,
    client: Any = None,
    seed: int | None = None,
    **read_options: Any,
) -> IngestReport:
    """Read ``source`` (a file or a list of SMILES/Molecules) into ``workspace.queries``.

    The file is split into records on the client, streaming; parsing, validation and 3D
    embedding run in batches on ``client``'s Dask workers when a client is given (at most two
    batches per worker in flight), else here. Rows are appended in input order. Returns an
    IngestReport. ``read_options`` go to :func:`amondask.chem.readers.raw_records`
    (``format``, ``smiles_column``, ``id_column``).
    """
    name = str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"
    if not isinstance(source, (str, Path)):
        # Items without ids are numbered after the queries already in the workspace.
        read_options.setdefault("first_index", workspace.queries.n_rows)
    report = IngestReport(source=name)
    bar = tqdm(desc="reading", unit="mol", disable=not progress, leave=False)
    try:
        batches = _converted_batches(source, batch_size, geometry, seed, client, **read_options)
        for batch in batches:
            added, present, duplicate_errors = workspace.add_queries(batch.molecules, source=name)
            workspace.add_errors(batch.errors, source=name)
            report.n_records += batch.n_records
            report.n_added += added
            report.n_already_present += present
            for error in [*batch.errors, *duplicate_errors]:
                report.n_errors += 1
                report.reasons[_reason(error.error_type, error.message)] += 1
                if not report.first_error:
                    report.first_error = f"{error.record_id}: {error.message}"
            bar.update(batch.n_records)
    finally:
        bar.close()
    return report
