"""``amondask amons``: table, JSON and SDF output for a SMILES or a file."""

from __future__ import annotations

import json

from rdkit import Chem

from amondask.amons import extract_amons
from amondask.cli import main


def test_table_for_a_smiles(capsys):
    assert main(["amons", "CC(=O)O", "--max-heavy-atoms", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "5 amons" in out[0]
    rows = [line.split() for line in out[2:]]
    assert rows == [
        ["1", "1", "C"],
        ["1", "1", "O"],
        ["2", "1", "C=O"],
        ["3", "1", "CC=O"],
        ["3", "1", "O=CO"],
    ]


def test_json_matches_extract_amons(tmp_path, capsys):
    source = tmp_path / "queries.smi"
    source.write_text("CCO ethanol\nC1CC1 cyclopropane\nnot_a_smiles bad\n")
    code = main(
        ["amons", str(source), "--format", "json", "--rules", "plain", "--max-heavy-atoms", "2"]
    )
    captured = capsys.readouterr()
    assert code == 0  # one bad record does not fail the run
    assert "bad" in captured.err and "ParseError" in captured.err
    payload = json.loads(captured.out)
    assert [entry["id"] for entry in payload] == ["ethanol", "cyclopropane"]
    expected = extract_amons("C1CC1", 2, rules="plain", geometry=False)
    assert [(a["key"], a["count"]) for a in payload[1]["amons"]] == [
        (a.key, a.count) for a in expected
    ]
    assert payload[1]["amons"][1]["occurrences"] == [list(o) for o in expected[1].occurrences]


def test_sdf_holds_one_record_per_conformer(tmp_path):
    out = tmp_path / "amons.sdf"
    assert (
        main(
            [
                "amons",
                "OCC#N",
                "--format",
                "sdf",
                "--max-heavy-atoms",
                "3",
                "--seed",
                "5",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    records = [m for m in Chem.SDMolSupplier(str(out), removeHs=False)]
    amons = extract_amons("OCC#N", 3, seed=5)
    assert len(records) == sum(len(a.conformers) for a in amons)
    assert [r.GetProp("amon_key") for r in records] == [a.key for a in amons for _ in a.conformers]
    for record in records:
        assert record.GetConformer().Is3D()
        assert record.GetNumAtoms() > record.GetNumHeavyAtoms()


def test_missing_file_is_an_error_that_says_so(capsys):
    assert main(["amons", "no/such/file.smi"]) == 1
    assert "does not exist" in capsys.readouterr().err
