"""The stages of a run, each a function of (workspace, client): extract, label, train, predict."""

from amondask.pipeline.extract import ExtractReport, extract_workspace
from amondask.pipeline.tasks import SERIAL

__all__ = ["SERIAL", "ExtractReport", "extract_workspace"]
