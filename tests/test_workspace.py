"""The Zarr workspace: round trips through a directory and a memory store, parameters, errors."""

import numpy as np
import pytest
import zarr
import zarr.storage

from amondask.chem import read_molecules
from amondask.errors import ErrorRecord, WorkspaceError, WorkspaceParameterError
from amondask.store import SCHEMA_VERSION, Workspace
from amondask.store.ingest import read_into_workspace


@pytest.fixture(params=["directory", "memory"])
def new_store(request, tmp_path):
    if request.param == "directory":
        return lambda: str(tmp_path / "ws.zarr")
    store = zarr.storage.MemoryStore()
    return lambda: store


def _example_molecules(examples_dir):
    return read_molecules(examples_dir / "qm9_sample.extxyz").molecules


def test_queries_round_trip(new_store, examples_dir):
    molecules = _example_molecules(examples_dir)
    workspace = Workspace(new_store())
    assert workspace.add_queries(molecules[:10]) == (10, 0, [])
    assert workspace.add_queries(molecules[10:]) == (len(molecules) - 10, 0, [])
    reopened = Workspace(new_store(), mode="r")
    table = reopened.queries
    assert table.n_rows == len(molecules)
    assert table.n_atoms == sum(m.n_atoms for m in molecules)
    back = table.molecules()
    for original, stored in zip(molecules, back, strict=True):
        assert stored.id == original.id
        assert stored.same_structure(original)  # numbers, bonds, charges, positions exactly
        assert dict(stored.metadata) == dict(original.metadata)
    # CSR layout as documented: offsets delimit atoms, n_rows + 1 entries.
    offsets = table.offsets()
    np.testing.assert_array_equal(np.diff(offsets), [m.n_atoms for m in molecules])
    assert table.read_text("key") == [m.key for m in molecules]
    # Slicing from the middle reads the same molecules.
    middle = table.molecules(5, 8)
    assert [m.id for m in middle] == [m.id for m in molecules[5:8]]
    assert middle[1].same_structure(molecules[6])


def test_graph_only_molecules_round_trip_without_positions(new_store):
    molecules = read_molecules(["CCO", "c1ccccc1"]).molecules
    workspace = Workspace(new_store())
    workspace.add_queries(molecules)
    back = Workspace(new_store()).queries.molecules()
    assert [m.positions for m in back] == [None, None]
    assert back[1].same_structure(molecules[1])
    assert workspace.queries.read_text("coordinates") == ["none", "none"]


def test_repeat_and_append_keep_rows_stable(new_store):
    workspace = Workspace(new_store())
    first = read_molecules([("CCO", "a"), ("CCN", "b")]).molecules
    workspace.add_queries(first)
    assert workspace.add_queries(first) == (0, 2, [])  # a repeated run changes nothing
    added, present, errors = workspace.add_queries(
        read_molecules([("CCO", "a"), ("CCC", "c"), ("CO", "b")]).molecules
    )
    assert (added, present) == (1, 1)
    assert [e.record_id for e in errors] == ["b"] and errors[0].error_type == "DuplicateIdError"
    assert workspace.queries.read_text("id") == ["a", "b", "c"]
    assert len(workspace.error_records()) == 1


def test_errors_table_round_trip_and_dedup(new_store):
    workspace = Workspace(new_store())
    rows = [
        ErrorRecord("r1", "read", "ParseError", "bad SMILES 'x'; fix it", "f.smi:1"),
        ErrorRecord("r2", "geometry", "GeometryError", "no embedding", "f.smi:2"),
    ]
    assert workspace.add_errors(rows, source="f.smi") == 2
    assert workspace.add_errors(rows, source="f.smi") == 0
    assert Workspace(new_store(), mode="r").error_records() == rows
    frame = workspace.errors.to_pandas()
    assert frame["source"].tolist() == ["f.smi", "f.smi"]


def test_uncommitted_rows_are_invisible_and_overwritten(new_store):
    workspace = Workspace(new_store())
    workspace.add_queries(read_molecules([("CCO", "a")]).molecules)
    table = workspace.queries
    # Simulate a writer killed after writing data but before the commit counter.
    table.group["id"].resize((3,))
    table.group["id"][1:3] = np.array(["ghost1", "ghost2"], dtype=np.dtypes.StringDType())
    reopened = Workspace(new_store())
    assert reopened.queries.read_text("id") == ["a"]
    reopened.add_queries(read_molecules([("CCC", "b")]).molecules)
    assert Workspace(new_store()).queries.read_text("id") == ["a", "b"]
    assert [m.key for m in Workspace(new_store()).queries.molecules()] == ["CCO", "CCC"]


def test_defining_parameters_are_recorded_and_enforced(new_store):
    Workspace(new_store(), parameters={"max_heavy_atoms": 7, "amon_rules": "paper"})
    workspace = Workspace(new_store(), parameters={"max_heavy_atoms": 7})
    assert workspace.parameters == {"max_heavy_atoms": 7, "amon_rules": "paper"}
    with pytest.raises(WorkspaceParameterError) as info:
        Workspace(new_store(), parameters={"max_heavy_atoms": 5})
    message = str(info.value)
    assert "max_heavy_atoms=7 in the workspace" in message and "5 in this run" in message
    assert "--workspace NEW" in message and "--max-heavy-atoms 7" in message
    assert "--rebuild" not in message  # run and extract have no such flag
    assert workspace.meta["schema_version"] == SCHEMA_VERSION


def test_opening_problems_are_explained(tmp_path):
    with pytest.raises(WorkspaceError, match="no workspace at"):
        Workspace(tmp_path / "missing.zarr", mode="r")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WorkspaceError, match="not an amondask workspace"):
        Workspace(other)
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").create_array("x", shape=(1,), dtype="i4")
    with pytest.raises(WorkspaceError, match="not an amondask workspace"):
        Workspace(plain)
    Workspace(tmp_path / "ws.zarr")
    with pytest.raises(WorkspaceError, match="read-only"):
        Workspace(tmp_path / "ws.zarr", mode="r").add_queries(read_molecules(["C"]).molecules)


def test_newer_schema_is_refused(tmp_path):
    workspace = Workspace(tmp_path / "ws.zarr")
    meta = workspace.meta
    meta["schema_version"] = SCHEMA_VERSION + 1
    workspace.root.attrs["amondask"] = meta
    with pytest.raises(WorkspaceError, match="upgrade amondask"):
        Workspace(tmp_path / "ws.zarr")


def test_ingest_report_and_summary(tmp_path):
    path = tmp_path / "q.smi"
    path.write_text("CCO a\nC1CC b\nC[NH3+] c\nC1CC d\nc1ccccc1 e\n")
    workspace = Workspace(tmp_path / "ws.zarr")
    report = read_into_workspace(path, workspace, progress=False)
    assert (report.n_records, report.n_added, report.n_errors) == (5, 2, 3)
    reasons = dict(report.most_common_reasons())
    assert reasons["ParseError: RDKit cannot parse SMILES '...'"] == 2
    summary = workspace.summary()
    assert summary["queries"]["molecules"] == 2
    assert summary["queries"]["with_input_coordinates"] == 0
    assert summary["errors"]["by_type"] == {"ParseError": 2, "ChargedMoleculeError": 1}
    # Graph-only input got generated 3D coordinates, recorded as such.
    assert workspace.queries.read_text("coordinates") == ["etkdg+mmff94"] * 2
    assert all(m.positions is not None for m in workspace.queries.molecules())
    again = read_into_workspace(path, workspace, progress=False)
    assert (again.n_added, again.n_already_present) == (0, 2)
    assert len(workspace.error_records()) == 3


def test_reasons_group_numbers_but_keep_names():
    from amondask.store.ingest import _reason

    assert _reason("ParseError", "line 12 is not valid UTF-8 text; save it") == (
        "ParseError: line N is not valid UTF-8 text"
    )
    assert _reason("ChargedMoleculeError", "net formal charge +1; x") == (
        "ChargedMoleculeError: net formal charge +N"
    )


def test_resolve_parameter_prefers_given_then_recorded_then_config(tmp_path):
    workspace = Workspace(tmp_path / "ws.zarr")
    assert workspace.resolve_parameter("max_heavy_atoms", None, "max-heavy-atoms") == 7
    workspace.require_parameters({"max_heavy_atoms": 4})
    assert workspace.resolve_parameter("max_heavy_atoms", None, "max-heavy-atoms") == 4
    assert workspace.resolve_parameter("max_heavy_atoms", 5, "max-heavy-atoms") == 5


def test_lists_and_files_without_ids_do_not_collide(tmp_path):
    workspace = Workspace(tmp_path / "ws.zarr")
    read_into_workspace(["CCO", "CCC"], workspace, progress=False, geometry=False)
    read_into_workspace(["CCN"], workspace, progress=False, geometry=False)
    for name, smiles in (("a.smi", "CO\n"), ("b.smi", "CN\n")):
        (tmp_path / name).write_text(smiles)
        read_into_workspace(tmp_path / name, workspace, progress=False, geometry=False)
    assert workspace.queries.read_text("id") == ["0", "1", "2", "a:L1", "b:L1"]
    assert workspace.queries.read_text("key") == ["CCO", "CCC", "CCN", "CO", "CN"]
    assert not workspace.error_records()


def test_fsspec_urls(tmp_path):
    memory = Workspace("memory://amondask-test-ws.zarr")
    memory.add_queries(read_molecules([("CCO", "a")]).molecules)
    assert Workspace("memory://amondask-test-ws.zarr", mode="r").queries.read_text("id") == ["a"]
    url = f"file://{tmp_path}/ws.zarr"
    Workspace(url).add_queries(read_molecules([("CO", "b")]).molecules)
    assert Workspace(tmp_path / "ws.zarr", mode="r").queries.read_text("key") == ["CO"]
