"""Hand-made nasty files (tests/data/fuzz/, expectations in MANIFEST.json) through the readers and
through `amondask run` on a 2-worker LocalCluster; and the size limit on queries.

MANIFEST.json maps each file to what reading it must give: ``good`` (ids read as molecules),
``bad`` (id -> error type), ``n_bad`` (number of error rows), ``input_error`` (a phrase of the
InputError that refuses the whole file) or ``any`` (no crash, no hang is all that is asked).
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.config
import numpy as np
import pytest
from fuzz_helpers import TRIED, hang_guard, read_checked

from amondask.chem import read_molecules
from amondask.errors import InputError

CORPUS = Path(__file__).resolve().parent / "data" / "fuzz"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def report_count():
    yield
    print(f"\nfuzz_corpus: {sum(TRIED.values())} inputs tried {dict(sorted(TRIED.items()))}")


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file(name):
    expected = MANIFEST[name]
    result = read_checked(CORPUS / name, "corpus")
    if "input_error" in expected:
        assert isinstance(result, InputError), result
        assert expected["input_error"] in str(result)
        return
    if expected.get("any"):
        return
    assert not isinstance(result, InputError), result
    assert sorted(m.id for m in result.molecules) == sorted(expected["good"])
    errors = [(e.record_id, e.error_type) for e in result.errors]
    if "bad" in expected:
        assert sorted(errors) == sorted(expected["bad"].items()), errors
    if "n_bad" in expected:
        assert len(errors) == expected["n_bad"], errors


# ---- limits -------------------------------------------------------------------------------------
def test_a_query_of_thousands_of_heavy_atoms_is_refused_at_once():
    """5,000 heavy atoms (SMILES) and 3,000 (XYZ): error rows within seconds, naming the limit
    and the way out; not an embedding or a bond perception that runs for hours."""
    polymer = "C" * 5000
    with hang_guard(60):
        result = read_molecules([(polymer, "polymer"), ("CCO", "ethanol")], geometry=True)
    assert [m.id for m in result.molecules] == ["ethanol"]
    (error,) = result.errors
    assert error.error_type == "MoleculeTooLargeError" and error.stage == "read"
    assert "5000 heavy atoms" in error.message and "max-heavy-atoms = 500" in error.message
    assert "split it" in error.message and "AMONDASK_READ__MAX_HEAVY_ATOMS" in error.message
    # A 3,000-carbon XYZ frame on a line, 1.5 angstrom apart.
    lines = ["3000", "id=chain"] + [f"C {1.5 * k:.1f} 0 0" for k in range(3000)]
    text = "\n".join(lines) + "\n"
    path = Path(pytest.importorskip("tempfile").mkdtemp()) / "chain.xyz"
    path.write_text(text)
    with hang_guard(60):
        result = read_molecules(path)
    assert [e.error_type for e in result.errors] == ["MoleculeTooLargeError"]


def test_the_limit_is_a_config_option():
    smiles = "C" * 12  # 12 heavy atoms
    with dask.config.set({"amondask.read.max-heavy-atoms": 10}):
        result = read_molecules([smiles])
        assert result.errors[0].error_type == "MoleculeTooLargeError"
        assert "max-heavy-atoms = 10" in result.errors[0].message
    with dask.config.set({"amondask.read.max-heavy-atoms": None}):
        assert len(read_molecules([smiles]).molecules) == 1


def test_extraction_refuses_stored_queries_above_the_limit(tmp_path):
    """Queries already in a workspace (read under a higher limit, or added as Molecules) are
    checked again before their amons are extracted: an error row, the others extracted."""
    from amondask.pipeline import SERIAL, extract_workspace
    from amondask.store import Workspace
    from amondask.store.ingest import read_into_workspace

    workspace = Workspace(tmp_path / "ws.zarr")
    read_into_workspace([("CCO", "small"), ("CCCCCC", "hexane")], workspace, progress=False)
    with dask.config.set({"amondask.read.max-heavy-atoms": 4}):
        extract_workspace(workspace, max_heavy_atoms=2, client=SERIAL, progress=False)
    (error,) = workspace.error_records()
    assert (error.record_id, error.error_type) == ("hexane", "MoleculeTooLargeError")
    assert set(workspace.amons.query_amons.read("query").tolist()) == {0}


# ---- through `amondask run` ---------------------------------------------------------------------
def test_mixed_file_through_amondask_run(tmp_path, capsys):
    """Good and bad records (mixed.smi, damaged.sdf, overlap.xyz, huge.smi) through a whole run
    on 2 worker processes at N_I = 3: every good record is predicted, every bad one is an error
    row with its id, stage, type and a message that says what to do."""
    from fuzz_helpers import check_error_row

    from amondask.cli import main
    from amondask.pipeline.train import predictions_frame
    from amondask.store import Workspace
    from amondask.store.verify import verify_workspace

    files = ["mixed.smi", "damaged.sdf", "overlap.xyz", "huge.smi"]
    workspace = tmp_path / "ws.zarr"
    code = main(
        ["run", *(str(CORPUS / f) for f in files), "--workspace", str(workspace)]
        + ["--max-heavy-atoms", "3", "--workers", "2", "--no-progress"]
    )
    out = capsys.readouterr()
    assert code == 0, out
    TRIED["amondask run (files)"] += len(files)
    opened = Workspace(workspace, mode="r")
    predicted = predictions_frame(opened)
    good = [i for f in files for i in MANIFEST[f]["good"]]
    assert sorted(predicted["id"]) == sorted(good)
    assert np.isfinite(predicted["energy_hartree"]).all()
    errors = opened.error_records()
    bad = {i: t for f in files for i, t in MANIFEST[f]["bad"].items()}
    assert sorted((e.record_id, e.error_type) for e in errors) == sorted(bad.items())
    for error in errors:
        check_error_row(error)
        assert error.location  # file and line or record
    assert verify_workspace(opened) == []
