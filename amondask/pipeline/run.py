"""The whole run: queries in, predicted energies out, every stage resumable from the workspace.

read -> extract amons -> label amons -> represent (amons at their labeled geometries, queries as
read) -> kernels (amon-amon, amon-query) -> train (global protocol) -> predict. Each stage finds
its finished work in the workspace and does only what is missing, so a killed run continues when
started again and a repeated run recomputes only the (cheap) training and prediction.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from amondask.errors import InputError
from amondask.pipeline.tasks import SERIAL
from amondask.store.workspace import Workspace


@dataclass
class RunSummary:
    """What a run did, stage by stage, and where the results are."""

    workspace: str
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def format(self) -> str:
        timing = ", ".join(f"{stage} {s:.1f} s" for stage, s in self.seconds.items())
        return "\n".join([*self.lines, f"time per stage: {timing}"])


def run(
    queries: Any,
    workspace: Workspace | str,
    *,
    max_heavy_atoms: int | None = None,
    rules: str | None = None,
    max_conformers_per_amon: int | None = None,
    labeler: Any = None,
    protocol: str = "global",
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    echo: bool = False,
) -> Any:
    """Predict the energies of ``queries`` (a file, a list of SMILES/Molecules, or None for the
    workspace's own queries) from their amons; returns an xarray Dataset indexed by query id
    (its attrs: ``summary``, the stages' reports as text, and ``stage_seconds``, {stage: s}).

    ``max_conformers_per_amon``: a cap on the conformers stored per amon (see
    :func:`amondask.pipeline.extract.extract_workspace`). ``labeler``: a Labeler or a registry
    name (default GFN2-xTB). ``protocol``: ``"global"``
    (one model on all labeled amons) or ``"per-query"`` (the paper's: each query's model uses
    its own amons only; written as ``predictions/per-query``). ``client``: a distributed
    Client, :data:`~amondask.pipeline.tasks.SERIAL`, or None for the embedded LocalCluster (or
    ``scheduler``). With ``echo``, each stage's report is printed as it finishes.
    """
    from amondask.cluster import get_client
    from amondask.label import get_labeler
    from amondask.pipeline.extract import (
        check_max_conformers_per_amon,
        check_max_heavy_atoms,
        extract_workspace,
    )
    from amondask.pipeline.kernel import kernel_workspace
    from amondask.pipeline.label import label_workspace
    from amondask.pipeline.represent import represent_workspace
    from amondask.pipeline.train import predict_per_query, predict_workspace, train_workspace
    from amondask.store.ingest import read_into_workspace
    from amondask.store.lock import workspace_lock

    if protocol not in ("global", "per-query"):
        raise ValueError(f"protocol must be 'global' or 'per-query', not {protocol!r}")
    check_max_heavy_atoms(max_heavy_atoms)  # before anything is written
    check_max_conformers_per_amon(max_conformers_per_amon)
    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)
    if labeler is None or isinstance(labeler, str):
        labeler = get_labeler(labeler)
    level = labeler.level_of_theory
    summary = RunSummary(workspace=workspace.location)

    def stage(name: str, started: float, report: Any) -> float:
        now = time.perf_counter()
        summary.seconds[name] = summary.seconds.get(name, 0.0) + now - started
        text = report if isinstance(report, str) else report.format()
        summary.lines.append(text)
        if echo:
            print(text, file=sys.stdout, flush=True)
        return now

    with (
        workspace_lock(workspace),
        get_client(client, scheduler=scheduler, n_workers=n_workers, quiet=not progress) as active,
    ):
        distributed = None if active is SERIAL else active
        clock = time.perf_counter()
        if queries is not None:
            report = read_into_workspace(queries, workspace, progress=progress, client=distributed)
            clock = stage("read", clock, report)
            if report.n_errors and not workspace.queries.n_rows:
                raise InputError(
                    f"no query could be read: all {report.n_errors} records failed, the first "
                    f"with {report.first_error}; fix the input (`amondask info "
                    f"{workspace.location} --errors` lists every record's message)"
                )
        report = extract_workspace(
            workspace,
            max_heavy_atoms=max_heavy_atoms,
            rules=rules,
            max_conformers_per_amon=max_conformers_per_amon,
            client=active,
            progress=progress,
        )
        clock = stage("extract", clock, report)
        report = label_workspace(workspace, labeler, client=active, progress=progress)
        clock = stage("label", clock, report)
        report = represent_workspace(
            workspace, target="amons", level=level, client=active, progress=progress
        )
        report_queries = represent_workspace(
            workspace, target="queries", client=active, progress=progress
        )
        clock = stage("represent", clock, f"{report.format()}; {report_queries.format()}")
        amon_kernel = kernel_workspace(workspace, cols="amons", client=active, progress=progress)
        query_kernel = kernel_workspace(workspace, cols="queries", client=active, progress=progress)
        clock = stage("kernel", clock, f"{amon_kernel.format()}; {query_kernel.format()}")
        if protocol == "per-query":
            dataset = predict_per_query(workspace, level, client=active)
        else:
            clock = stage("train", clock, train_workspace(workspace, level))
            dataset = predict_workspace(workspace)
        covered = int(dataset["covered"].values.sum())
        stage(
            "predict",
            clock,
            f"predicted {dataset.sizes['query_id']} queries ({covered} covered by their amons); "
            f"results in {workspace.location} (predictions/{dataset.attrs['model']}), export "
            f"with `amondask export {workspace.location} --model {dataset.attrs['model']}`",
        )
    dataset.attrs["summary"] = summary.format()
    dataset.attrs["stage_seconds"] = dict(summary.seconds)
    return dataset
