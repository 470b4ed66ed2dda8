"""The stages of a run, each usable on its own over a workspace (a path or a Workspace).

:func:`~amondask.pipeline.extract.extract` -> :func:`~amondask.pipeline.label.label` (amons;
``queries=True`` for the queries) -> :func:`~amondask.pipeline.represent.represent` ->
:func:`~amondask.pipeline.kernel.kernels` -> :func:`~amondask.pipeline.train.train` ->
:func:`~amondask.pipeline.train.predict`, and :func:`~amondask.pipeline.evaluate.evaluate`
after a run; :func:`~amondask.pipeline.run.run` does them all (``amondask.extract``, ``train``,
``predict``, ``evaluate`` and ``run`` are also top-level names). Functions taking ``client``
start the embedded LocalCluster when it is None, attach to a ``scheduler`` address, or run in
this process with :data:`SERIAL`. The ``*_workspace`` functions are the same stages on an open
Workspace with a given client. (The functions are not re-exported here: their names are those
of the modules.)
"""

from amondask.pipeline.extract import ExtractReport, extract_workspace
from amondask.pipeline.tasks import SERIAL

__all__ = ["SERIAL", "ExtractReport", "extract_workspace"]
