"""The TLS recipe of deploy/tls: self-signed certificates from its script, its dask config; a
small `amondask run` over tls:// on localhost predicts what a plain LocalCluster predicts, and
a client with another CA's certificate, or without TLS, is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import distributed  # noqa: F401  (its config defaults must exist before the file is applied)
import pytest
from cluster_reference import TINY_MAX_HEAVY_ATOMS, assert_same_predictions, write_tiny_queries

from amondask import config
from amondask.cluster import get_client
from amondask.pipeline.run import run

TLS = Path(__file__).resolve().parent.parent / "deploy" / "tls"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl (for the certificate script) is missing"
)


def _certificates(directory: Path) -> Path:
    subprocess.run(
        ["bash", str(TLS / "make-self-signed-certs.sh"), str(directory)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory


def test_run_over_tls_matches_local_cluster_and_refuses_strangers(tmp_path):
    from distributed import Client
    from distributed.security import Security

    ours = _certificates(tmp_path / "tls")
    theirs = _certificates(tmp_path / "other-ca")
    settings = tmp_path / "tls.yaml"
    settings.write_text((TLS / "tls.yaml").read_text().replace("/etc/amondask/tls", str(ours)))
    stranger = Security(
        tls_ca_file=str(theirs / "ca.pem"),
        tls_client_cert=str(theirs / "cluster.pem"),
        tls_client_key=str(theirs / "cluster-key.pem"),
        require_encryption=True,
    )
    workspace = tmp_path / "tls.zarr"
    with config.load_file(settings):
        with get_client(cluster="local", n_workers=2, quiet=True) as client:
            address = client.scheduler.address
            assert address.startswith("tls://127.0.0.1:")
            workers = client.scheduler_info()["workers"]
            assert workers and all(w.startswith("tls://") for w in workers)
            with pytest.raises(OSError, match="TLS certificate does not match"):
                Client(address, security=stranger, timeout=10)
            plain = Security(require_encryption=False)  # a client that does not ask for TLS
            with pytest.raises(OSError):  # the scheduler drops the connection
                Client(address.replace("tls://", "tcp://"), security=plain, timeout=10)
            run(
                write_tiny_queries(tmp_path),
                workspace,
                max_heavy_atoms=TINY_MAX_HEAVY_ATOMS,
                client=client,
                progress=False,
            )
    assert_same_predictions(workspace)
