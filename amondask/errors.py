"""The amondask exception hierarchy.

Every message says what went wrong *and what to do about it*, so that a user can act on it
without reading the source. Per-record problems in a batch do not raise: they become
:class:`ErrorRecord` rows (see :mod:`amondask.chem.readers` and the workspace's ``errors/``
table); ``on_error="raise"`` turns them into these exceptions for interactive use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class AmondaskError(Exception):
    """Base class of every error amondask raises on purpose."""


class InputError(AmondaskError):
    """A whole input (file, argument) cannot be used: missing file, unknown format, no records."""


class RecordError(AmondaskError):
    """One record (molecule) of an input is bad; in a batch it becomes an error row.

    Subclasses name the kind of problem; ``record_id`` and ``stage`` say where.
    """

    def __init__(self, message: str, *, record_id: str | None = None, stage: str = "read"):
        super().__init__(message)
        self.record_id = record_id
        self.stage = stage


class ParseError(RecordError):
    """The record's text (SMILES, XYZ frame, SDF block) could not be parsed."""


class UnsupportedElementError(RecordError):
    """The molecule contains an element amondask does not model."""


class ChargedMoleculeError(RecordError):
    """The molecule has a net formal charge; amondask models neutral molecules."""


class OpenShellError(RecordError):
    """The molecule has unpaired electrons (a radical); amondask models closed-shell molecules."""


class SanitizationError(RecordError):
    """RDKit rejected the structure (valence, aromaticity, ...)."""


class GeometryError(RecordError):
    """No 3D geometry could be made for the molecule, or its geometry is unusable."""


class DuplicateIdError(RecordError):
    """Two records of one input carry the same id."""


class WorkspaceError(AmondaskError):
    """The workspace cannot be used as asked (missing, corrupt, incompatible)."""


class WorkspaceParameterError(WorkspaceError):
    """The workspace was built with different defining parameters than this run asks for."""


class ConfigError(AmondaskError):
    """A configuration value is invalid."""


class ClusterError(AmondaskError):
    """The Dask cluster cannot be used: no scheduler at the address, no worker joined in time."""


def _record_error_types() -> dict[str, type[RecordError]]:
    """Every RecordError subclass by name, wherever it is defined."""
    found: dict[str, type[RecordError]] = {}
    pending = [RecordError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


@dataclass(frozen=True)
class ErrorRecord:
    """One failed record: which record, at which stage, what kind of error, and what to do.

    ``record_id`` is the record's id when it has one, else a generated one (``L12`` for line 12,
    ``R3`` for record 3); ``location`` says where in the source it was (file and line/record).
    """

    record_id: str
    stage: str
    error_type: str
    message: str
    location: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, record_id: str, stage: str, location: str = ""
    ) -> ErrorRecord:
        """An error row from an exception; unexpected exception types keep their class name."""
        stage = getattr(exc, "stage", None) or stage
        return cls(
            record_id=str(record_id),
            stage=stage,
            error_type=type(exc).__name__,
            message=str(exc) or type(exc).__name__,
            location=location,
        )

    def to_exception(self) -> RecordError:
        """The matching exception, for ``on_error="raise"``."""
        exc_type = _record_error_types().get(self.error_type, RecordError)
        where = f" ({self.location})" if self.location else ""
        return exc_type(
            f"record {self.record_id!r}{where}: {self.message}",
            record_id=self.record_id,
            stage=self.stage,
        )


class SolverError(AmondaskError):
    """The regression system (K + lambda I) alpha = y cannot be solved as asked."""


class SolverWarning(UserWarning):
    """A solver fell back (jitter, least squares) or stopped before its tolerance; the result
    is usable but less accurate than asked. The message says which and what to do."""


class AmonError(RecordError):
    """Amons cannot be extracted from one query molecule (unsupported structure, bad input)."""

    def __init__(self, message: str, *, record_id: str | None = None, stage: str = "amons"):
        super().__init__(message, record_id=record_id, stage=stage)


class LabelerSetupError(AmondaskError):
    """A labeler cannot be built: program missing, unknown method, basis or table column."""


class LabelError(RecordError):
    """One molecule could not be labeled; in a batch it becomes a failed label and an error row."""

    def __init__(self, message: str, *, record_id: str | None = None, stage: str = "label"):
        super().__init__(message, record_id=record_id, stage=stage)


class SCFConvergenceError(LabelError):
    """The SCF of one molecule did not converge."""


class MissingLabelError(LabelError):
    """A table labeler has no entry for the molecule's key."""


class MixedLevelsError(AmondaskError):
    """Labels of different levels of theory were about to be combined in one model."""


class ModelError(AmondaskError):
    """A model cannot be fitted, used or loaded as asked (bad parameter, not fitted, wrong
    input for its kernel mode, a saved model of another format)."""


class NotFittedError(ModelError):
    """A model was used before ``fit`` (or ``load``)."""
