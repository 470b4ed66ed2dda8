"""Nothing in a workspace is unpickled or evaluated: payloads planted in a workspace (a pickle
behind a pickle codec, a zarr v2 object array with a pickle filter, Python and YAML expressions
in attributes and metadata, a .pkl file) never run, whatever command reads the workspace.

Each payload, if executed, would create a marker file; the test runs `amondask info`, `info
--errors`, `verify`, `export` and `extract` (which reads every query and its metadata) and the
Python API's readers on the planted workspace, then checks that no marker exists.

Audit (grep of amondask/ for pickle, eval, exec, yaml.load, allow_pickle, literal_eval): the
workspace is read only through zarr v3 arrays (numeric and UTF-8 string dtypes; zarr 3 has no
pickle codec), JSON attributes (``zarr.json``) and JSON text columns (``json.loads``); the config
is read with ``yaml.safe_load``; the one ``ast.literal_eval`` parses the QM9 table labeler's own
data files, not the workspace. Pickle is used only by Dask to move tasks between the client and
its workers (the cluster's own traffic; TLS for it: deploy/README.md).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from amondask.errors import ErrorRecord
from amondask.pipeline import SERIAL, extract_workspace
from amondask.store import Workspace
from amondask.store.ingest import read_into_workspace


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _expression(marker: Path) -> str:
    return f"__import__('os').system('touch {marker}')"


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path]:
    """A workspace (queries read, amons extracted at N_I = 2) with payloads planted; and the
    directory the markers would appear in."""
    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "ws.zarr"
    workspace = Workspace(path)
    read_into_workspace(["CCO", "CC(=O)N", "C1CC1"], workspace, progress=False)
    extract_workspace(workspace, max_heavy_atoms=2, client=SERIAL, progress=False)
    root = workspace.root

    # 1. a zarr v2 object array with a pickle filter inside the v3 hierarchy
    v2 = path / "queries" / "legacy"
    v2.mkdir()
    (v2 / ".zarray").write_text(
        json.dumps(
            {"zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "compressor": None,
             "fill_value": None, "filters": [{"id": "pickle"}], "order": "C"}
        )
    )  # fmt: skip
    (v2 / "0").write_bytes(pickle.dumps(_Payload(markers / "v2-pickle")))
    # 2. expressions where amondask reads text: attributes, parameters, metadata, errors
    meta = dict(root.attrs["amondask"])
    meta["parameters"] = {**meta["parameters"], "note": _expression(markers / "param")}
    root.attrs["amondask"] = meta
    root["queries"].attrs["comment"] = _expression(markers / "attr")
    yaml_bomb = f"!!python/object/apply:os.system ['touch {markers / 'yaml'}']"
    workspace.add_errors(
        [ErrorRecord("x", "read", "ParseError", _expression(markers / "error"), yaml_bomb)]
    )
    metadata = root["queries"]["metadata"]
    metadata[0] = json.dumps({"note": _expression(markers / "metadata"), "yaml": yaml_bomb})
    # 3. a v3 array whose codec chain names a pickle codec, with a pickled payload as its chunk
    array = root.create_array("amons/planted", shape=(1,), dtype="int64", chunks=(1,))
    array[:] = [0]
    meta_path = path / "amons" / "planted" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"] = [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "numcodecs.pickle", "configuration": {}},
    ]
    meta_path.write_text(json.dumps(meta))
    for chunk in (path / "amons" / "planted" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(pickle.dumps(_Payload(markers / "v3-codec")))
    # 4. a pickle file lying in the workspace
    (path / "model.pkl").write_bytes(pickle.dumps(_Payload(markers / "pkl")))
    return path, markers


def _amondask(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amondask", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )


def test_planted_payloads_never_run(planted, tmp_path):
    path, markers = planted
    for arguments in (
        ["info", str(path)],
        ["info", str(path), "--errors", "--json"],
        ["verify", str(path)],
        ["export", str(path), "--output", str(tmp_path / "out.csv")],
        ["extract", "--workspace", str(path), "--workers", "0", "--no-progress"],
    ):
        result = _amondask(*arguments)
        # Commands may fail on the planted parts (an unknown codec is an error); none runs them.
        assert not list(markers.iterdir()), (arguments, result.stderr, list(markers.iterdir()))
    # The Python API's readers too.
    workspace = Workspace(path, mode="r")
    assert len(workspace.queries.molecules()) == 3
    assert workspace.queries.molecules()[0].metadata["yaml"].startswith("!!python")  # as text
    assert not list(markers.iterdir())


def test_verify_names_the_planted_pickle_codec(planted, capsys):
    from amondask.cli import main

    path, markers = planted
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "numcodecs.pickle" in out, out
    assert not list(markers.iterdir())
