"""Reading a query dataset into a workspace: the first stage of every run.

Records are streamed in batches (never the whole file in memory); molecules given only as graphs
get an ETKDG+MMFF94 geometry; bad records become rows of the workspace's ``errors/`` table with
their record id, stage and a message; re-reading the same input changes nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from amondask.chem.readers import iter_batches
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
    head = re.sub(r"[+-]?\d+(\.\d+)?", "N", head)
    return f"{error_type}: {head.strip()[:90]}"


def read_into_workspace(
    source: Any,
    workspace: Workspace,
    *,
    geometry: bool = True,
    batch_size: int = 500,
    progress: bool = True,
    **read_options: Any,
) -> IngestReport:
    """Read ``source`` (a file or a list of SMILES/Molecules) into ``workspace.queries``.

    Returns an IngestReport. ``read_options`` go to :func:`amondask.chem.iter_molecules`
    (``format``, ``smiles_column``, ``id_column``, ``seed``).
    """
    name = str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"
    report = IngestReport(source=name)
    bar = tqdm(desc="reading", unit="mol", disable=not progress, leave=False)
    try:
        for batch in iter_batches(source, batch_size, geometry=geometry, **read_options):
            added, present, duplicate_errors = workspace.add_queries(batch.molecules, source=name)
            workspace.add_errors(batch.errors, source=name)
            report.n_records += batch.n_records
            report.n_added += added
            report.n_already_present += present
            for error in [*batch.errors, *duplicate_errors]:
                report.n_errors += 1
                report.reasons[_reason(error.error_type, error.message)] += 1
            bar.update(batch.n_records)
    finally:
        bar.close()
    return report
