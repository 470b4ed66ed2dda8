"""The `amondask` command, run in-process and once as a real subprocess."""

import json
import shutil
import subprocess
import sys

from amondask.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "read" in out and "info" in out


def test_read_then_info(tmp_path, capsys, examples_dir):
    workspace = tmp_path / "ws.zarr"
    bad = tmp_path / "bad.smi"
    bad.write_text("CCO ok\nC1CC broken\n[Na+].[Cl-] salt\n")
    code = main(
        ["read", str(examples_dir / "queries.smi"), str(bad), "-w", str(workspace), "--no-progress"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "read 30 records" in out and "30 added" in out
    assert "read 3 records" in out and "2 failed" in out
    assert "ParseError" in out
    assert main(["info", str(workspace), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"]["molecules"] == 31
    assert summary["errors"]["total"] == 2
    assert main(["info", str(workspace), "--errors"]) == 0
    listing = capsys.readouterr().out
    assert "broken [bad.smi:2] read ParseError" in listing


def test_errors_go_to_stderr_with_exit_code_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere.zarr")]) == 1
    err = capsys.readouterr().err
    assert "no workspace at" in err and "amondask read QUERIES --workspace" in err
    assert main(["read", str(tmp_path / "missing.smi"), "-w", str(tmp_path / "w")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_all_bad_input_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.smi"
    bad.write_text("C1CC\n")
    assert main(["read", str(bad), "-w", str(tmp_path / "w.zarr"), "--no-progress"]) == 1


def test_rebuild_discards_content(tmp_path, capsys):
    workspace = tmp_path / "ws.zarr"
    first = tmp_path / "a.smi"
    first.write_text("CCO a\n")
    second = tmp_path / "b.smi"
    second.write_text("CCC b\n")
    main(["read", str(first), "-w", str(workspace), "--no-progress"])
    main(["read", str(second), "-w", str(workspace), "--no-progress", "--rebuild"])
    capsys.readouterr()
    main(["info", str(workspace), "--json"])
    assert json.loads(capsys.readouterr().out)["queries"]["molecules"] == 1


def test_console_script_and_module_run():
    script = shutil.which("amondask")
    assert script, "the amondask console script is not installed (pip install -e .)"
    for command in ([script, "--version"], [sys.executable, "-m", "amondask", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.startswith("amondask "), result


def test_extract_command_serial_then_info(tmp_path, capsys, examples_dir):
    workspace = tmp_path / "ws.zarr"
    code = main(
        [
            "extract",
            str(examples_dir / "qm9_sample.sdf"),
            "-w",
            str(workspace),
            "-k",
            "3",
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "read 12 records" in out and "extracted 12 queries" in out
    assert main(["info", str(workspace), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] == {
        "amon_rules": "paper",
        "max_heavy_atoms": 3,
        "max_conformers_per_amon": None,
        "amon_relax": True,
        "noncovalent_amons": None,
        "periodic_amons": {"shells": 2, "max_heavy_atoms": None},
    }
    amons = summary["amons"]
    assert amons["queries_extracted"] == 12
    assert sum(amons["amons_by_n_heavy"].values()) == amons["amons"]
    assert set(amons["amons_by_n_heavy"]) <= {"1", "2", "3"}
    # Re-running with another N_I is refused with the way out.
    assert main(["extract", "-w", str(workspace), "-k", "4", "--workers", "0"]) == 1
    assert "max_heavy_atoms=3 in the workspace" in capsys.readouterr().err
