"""The small run that the cluster and deployment tests repeat on other clusters, and its
reference result from an embedded LocalCluster (computed once per test session)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

# Four queries whose amons (N_I = 2) label in seconds with GFN2-xTB.
TINY_QUERIES = "CCO ethanol\nCC=O acetaldehyde\nCCN ethylamine\nCOC dimethylether\n"
TINY_MAX_HEAVY_ATOMS = 2


def write_tiny_queries(directory: Path) -> Path:
    path = Path(directory) / "tiny.smi"
    path.write_text(TINY_QUERIES)
    return path


def predictions(workspace_path: str | Path) -> dict[str, float]:
    """Predicted energies (hartree) by query id, read back from a workspace."""
    from amondask.pipeline.train import predictions_frame
    from amondask.store import Workspace

    frame = predictions_frame(Workspace(str(workspace_path), mode="r"))
    return dict(zip(frame["id"], frame["energy_hartree"], strict=True))


@functools.cache
def local_cluster_predictions() -> dict[str, float]:
    """The tiny run on an embedded LocalCluster of 2 worker processes (the reference)."""
    from amondask.cluster import get_client
    from amondask.pipeline.run import run

    directory = Path(tempfile.mkdtemp(prefix="amondask-reference-"))
    atexit.register(shutil.rmtree, directory, True)
    with get_client(cluster="local", n_workers=2, quiet=True) as client:
        run(
            write_tiny_queries(directory),
            directory / "reference.zarr",
            max_heavy_atoms=TINY_MAX_HEAVY_ATOMS,
            client=client,
            progress=False,
        )
    return predictions(directory / "reference.zarr")


def assert_same_predictions(workspace_path: str | Path) -> None:
    """The workspace's predictions equal the LocalCluster reference: same queries, energies
    within 1e-8 hartree (the labels, kernels and solve are deterministic; only summation
    order may differ between clusters)."""
    reference = local_cluster_predictions()
    got = predictions(workspace_path)
    assert sorted(got) == sorted(reference)
    ids = sorted(reference)
    np.testing.assert_allclose(
        [got[i] for i in ids], [reference[i] for i in ids], rtol=0, atol=1e-8
    )
