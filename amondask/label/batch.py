"""Label a batch of molecules without letting one bad molecule stop the rest.

:func:`label_many` is what a Dask task calls on a partition of amons: it returns one label per
input molecule (in input order) and one :class:`~amondask.errors.ErrorRecord` per failure, so
the caller can write both the ``labels/<level>/`` rows and the ``errors/`` rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from amondask.chem.molecule import Molecule
from amondask.errors import ErrorRecord
from amondask.label.base import Label, Labeler


def label_many(
    labeler: Labeler,
    molecules: Iterable[Molecule],
    *,
    on_error: Literal["record", "raise"] = "record",
) -> tuple[list[Label], list[ErrorRecord]]:
    """Label every molecule; failures become ``failed`` labels plus error rows.

    Returns ``(labels, errors)``: ``labels[k]`` belongs to the k-th molecule (a failed one has
    status ``failed``, NaN energy and the error message); ``errors`` has one row (stage
    ``label``) per failed molecule. With ``on_error="raise"`` the first failure is raised
    instead (for interactive use). Labels with status ``topology-changed`` or
    ``not-converged`` are results, not errors: they carry an energy and no error row.
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', got {on_error!r}")
    labels: list[Label] = []
    errors: list[ErrorRecord] = []
    for molecule in molecules:
        start = time.perf_counter()
        try:
            labels.append(labeler.label(molecule))
        except Exception as exc:  # one molecule must never stop the batch
            if on_error == "raise":
                raise
            record = ErrorRecord.from_exception(exc, record_id=molecule.id, stage="label")
            errors.append(record)
            labels.append(
                Label.failed(
                    f"{record.error_type}: {record.message}",
                    level_of_theory=labeler.level_of_theory,
                    molecule_id=molecule.id,
                    wall_time_s=time.perf_counter() - start,
                )
            )
    return labels, errors
