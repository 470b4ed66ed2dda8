"""`amondask verify W` on a real small workspace (a full serial run) and on copies of it, each
corrupted in one way: every corruption is found, named in one precise line, and exits 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from amondask.cli import main
from amondask.pipeline import SERIAL
from amondask.pipeline.run import run
from amondask.store import Workspace
from amondask.store.verify import verify, verify_workspace

QUERIES = ["CCO", "CC(=O)C", "CCN", "C1CC1", "OCC=O"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A finished workspace: read, extract (N_I = 3), label (GFN2-xTB), represent, kernels,
    model, predictions; plus one bad query (an error row)."""
    path = tmp_path_factory.mktemp("verify") / "ws.zarr"
    run([*QUERIES, "C1=CC=CC=C1=X"], str(path), max_heavy_atoms=3, client=SERIAL, progress=False)
    return path


@pytest.fixture
def copy(clean, tmp_path) -> Path:
    target = tmp_path / "ws.zarr"
    shutil.copytree(clean, target)
    return target


def _open(path: Path) -> zarr.Group:
    return zarr.open_group(str(path), mode="r+", zarr_format=3)


def _problems(path: Path) -> list[str]:
    return verify_workspace(Workspace(path, mode="r"))


def test_clean_workspace_verifies(clean, capsys):
    report = verify(Workspace(clean, mode="r"))
    assert report.ok, report.problems
    assert {"queries", "amons", "amons/conformers", "query_amons", "errors"} <= set(report.checked)
    assert any(path.startswith("labels/") for path in report.checked)
    assert any(path.startswith("kernels/") for path in report.checked)
    assert "models/global" in report.checked
    assert main(["verify", str(clean)]) == 0
    assert "OK" in capsys.readouterr().out


def _level(group: zarr.Group) -> str:
    (slug,) = list(group["labels"].group_keys())
    return slug


def _set(array: zarr.Array, index, value) -> None:
    values = array[:]
    values[index] = value
    array[:] = values


CORRUPTIONS = {
    "offsets not monotone": (
        lambda g: _set(g["queries/offsets"], 2, int(g["queries/offsets"][3]) + 1),
        "queries/offsets: decreases at row 2",
    ),
    "offsets beyond the atoms": (
        lambda g: _set(g["amons/conformers/offsets"], -1, 10**6),
        "amons/conformers/offsets: ends at 1000000, beyond the",
    ),
    "n_rows beyond the data": (
        lambda g: g["query_amons"].attrs.update({"n_rows": 10**4}),
        "query_amons/query: has",
    ),
    "duplicate query id": (
        lambda g: _set(g["queries/id"], 1, str(g["queries/id"][0])),
        "queries/id: query id '0' appears 2 times",
    ),
    "duplicate amon key": (
        lambda g: _set(g["amons/key"], 1, str(g["amons/key"][0])),
        "amons/key: amon key",
    ),
    "amon index out of range": (
        lambda g: _set(g["query_amons/amon"], 0, 999),
        "query_amons/amon: row 0 refers to amon 999",
    ),
    "conformer id not contiguous": (
        lambda g: _set(g["amons/conformers/id"], 3, "0:0"),
        "amons/conformers/id: row 3 has id '0:0'",
    ),
    "more conformers than the cap": (
        lambda g: (
            g.attrs.update(
                {
                    "amondask": {
                        **g.attrs["amondask"],
                        "parameters": {
                            **g.attrs["amondask"]["parameters"],
                            "max_conformers_per_amon": 1,
                        },
                    }
                }
            ),
            _set(g["amons/conformers/amon"], 1, int(g["amons/conformers/amon"][0])),
        ),
        "conformers, more than max_conformers_per_amon=1",
    ),
    "extracted count too large": (
        lambda g: g.attrs.update({"amondask": {**g.attrs["amondask"], "extracted_queries": 99}}),
        "/: extracted_queries is 99",
    ),
    "label of a missing conformer": (
        lambda g: _set(g[f"labels/{_level(g)}/amons/source_row"], 0, 10**5),
        "amons/source_row: row 0 refers to conformer 100000",
    ),
    "ok label without energy": (
        lambda g: _set(g[f"labels/{_level(g)}/amons/energy_hartree"], 1, np.nan),
        "is 'ok' with energy nan",
    ),
    "kernel done-markers of the wrong shape": (
        lambda g: g["kernels/amons-amons/K_done"].resize((3, 3)),
        "kernels/amons-amons/K_done: shape (3, 3)",
    ),
    "model coefficients vs n_train": (
        lambda g: g["models/global/dual_coef"].resize((2,)),
        "models/global/dual_coef: 2 coefficients, n_train is",
    ),
    "model parameters vs workspace": (
        lambda g: g["models/global"].attrs.update(
            {
                "amondask_model": {
                    **g["models/global"].attrs["amondask_model"],
                    "params": {**g["models/global"].attrs["amondask_model"]["params"], "rcut": 3.0},
                }
            }
        ),
        "models/global: model rcut=3.0 but the workspace's representation has 4.8",
    ),
    "prediction of a missing query": (
        lambda g: _set(g["predictions/global/query"], 1, 77),
        "predictions/global/query: row 1 refers to query 77",
    ),
    "bond outside its molecule": (
        lambda g: _set(g["queries/bonds"], (0, 1), 50),
        "queries/bonds: bond 0 of molecule 0 joins atoms",
    ),
    "bad atomic number": (
        lambda g: _set(g["queries/numbers"], 0, 0),
        "queries/numbers: atom 0 has atomic number 0",
    ),
    "unknown group": (
        lambda g: g.create_group("mystery"),
        "mystery: unknown group",
    ),
    "schema from the future": (
        lambda g: g.attrs.update({"amondask": {**g.attrs["amondask"], "schema_version": 99}}),
        "schema version 99",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_reported(copy, name, capsys):
    corrupt, expected = CORRUPTIONS[name]
    corrupt(_open(copy))
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert problems, out
    assert any(expected in line for line in problems), (expected, out)


def test_a_damaged_chunk_is_a_problem_not_a_crash(copy, capsys):
    chunk = next(p for p in (copy / "amons" / "key" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"\x00garbage" * 3)
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "problem: amons: cannot be read" in out, out


def test_damaged_root_metadata(copy, capsys):
    (copy / "zarr.json").write_text("{not json")
    assert main(["verify", str(copy)]) == 1
    assert "problem: /:" in capsys.readouterr().out


def test_stale_kernels_and_predictions_are_notes(copy, capsys):
    """After new queries, the kernels and predictions are stale until the next run: notes."""
    group = _open(copy)
    group["kernels/amons-queries/K"].resize((group["kernels/amons-queries/K"].shape[0], 3))
    group["predictions/global"].attrs["n_rows"] = 2
    assert main(["verify", str(copy), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("kernels/amons-queries/K: shape" in note for note in notes), notes
    assert any("predictions/global: 2 predictions for 5 queries" in note for note in notes)


def test_staging_of_a_killed_run_is_a_note(copy, capsys):
    _open(copy).create_group("staging_extract")
    assert main(["verify", str(copy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and any("staging_extract" in note for note in report["notes"])
