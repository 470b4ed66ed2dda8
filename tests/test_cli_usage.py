"""How the `amondask` command talks to its user: help texts, wrong flags and values, missing
files and workspaces. Errors are one line on stderr (no traceback) with exit code 1; usage
errors are argparse's (usage line, exit code 2). Most run in-process through
``amondask.cli.main``; a few as real subprocesses, where a traceback would show."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amondask.cli import COMMAND_MODULES, build_parser, main
from amondask.store import Workspace


def _commands() -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers, by name, as `amondask --help` lists them."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


COMMANDS = sorted(_commands())
# Commands that open an existing workspace given as the positional W, or as --workspace W.
# (verify reports an unopenable workspace as its one problem, on standard output)
POSITIONAL_WORKSPACE = [c for c in ("info", "export", "evaluate") if c in COMMANDS]
WORKSPACE_READERS = [*POSITIONAL_WORKSPACE, "verify"]


def _usage_error(argv: list[str], capsys) -> str:
    """Run argv in-process, expecting an argparse usage error; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    assert captured.err.startswith(f"usage: amondask {command}".rstrip()), captured.err
    return captured.err


def _assert_one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"amondask {command}: error: "), err
    return lines[0]


# ---- help -----------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: amondask")
    # Every module of COMMAND_MODULES registers the command of its name, listed in the help.
    names = {module.rsplit(".", 1)[1] for module in COMMAND_MODULES}
    assert names <= set(COMMANDS)
    assert {"read", "info", "extract", "label", "run", "export", "amons"} <= set(COMMANDS)
    for name in COMMANDS:
        assert f"    {name} " in out, name
    # No command prints the help and exits 2 (nothing to do).
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_exits_0_and_describes_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: amondask {command}")
    parser = _commands()[command]
    assert parser.description and len(parser.description) > 40, "describe what the command does"
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        shown = action.option_strings or [action.metavar or action.dest]
        for name in shown:
            assert name in out, f"{name} missing from `amondask {command} --help`"


MAIN_ARGUMENTS = {
    "run": ["QUERIES", "--workspace", "--max-heavy-atoms", "--labeler", "--protocol", "--workers"],
    "extract": ["QUERIES", "--workspace", "--max-heavy-atoms", "--rules", "--workers"],
    "label": ["--workspace", "--labeler", "--queries", "--workers"],
    "read": ["QUERIES", "--workspace", "--format"],
    "export": ["W", "--format", "--output", "--model"],
    "info": ["W", "--json", "--errors"],
    "amons": ["SMILES_OR_FILE", "--max-heavy-atoms", "--format"],
}


@pytest.mark.parametrize("command", sorted(MAIN_ARGUMENTS))
def test_help_names_the_main_arguments(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    for argument in MAIN_ARGUMENTS[command]:
        assert argument in out, f"{argument} missing from `amondask {command} --help`"


# ---- wrong flags and values -------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_flag_is_named_with_the_usage_line(command, capsys):
    err = _usage_error([command, "--bogus"], capsys)
    assert "unrecognized arguments: --bogus" in err
    assert f"amondask {command} --help" in err


def test_an_unknown_flag_is_named_beside_complete_arguments(tmp_path, capsys):
    argv = ["run", str(tmp_path / "q.smi"), "-w", str(tmp_path / "w"), "--bogus", "--workspce=x"]
    err = _usage_error(argv, capsys)
    assert "usage: amondask run" in err and "amondask run: error:" in err
    assert "unrecognized arguments: --bogus --workspce=x" in err
    assert not (tmp_path / "w").exists()


def test_a_misspelt_required_flag_is_named(tmp_path, capsys):
    err = _usage_error(["run", "q.smi", "--workspce", str(tmp_path / "w")], capsys)
    assert "required: --workspace" in err and "unrecognized arguments: --workspce" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "q.smi", "-w", "W", "--protocol", "nope"], "argument --protocol: invalid choice"),
        (["run", "q.smi", "-w", "W", "--max-heavy-atoms", "0"], "must be a positive integer"),
        (["run", "q.smi", "-w", "W", "-k", "-3"], "must be a positive integer, not -3"),
        (["run", "q.smi", "-w", "W", "-k", "seven"], "invalid integer: 'seven'"),
        (["run", "q.smi", "-w", "W", "--workers", "-1"], "argument --workers: must be 0 or a"),
        (["run", "q.smi", "-w", "W", "--rules", "loose"], "argument --rules: invalid choice"),
        (["extract", "-w", "W", "-k", "0"], "argument --max-heavy-atoms/-k: must be a positive"),
        (["extract", "-w", "W", "--partition-size", "0"], "--partition-size: must be a positive"),
        (["extract", "-w", "W", "--workers", "-2"], "argument --workers: must be 0 or a"),
        (["label", "-w", "W", "--workers", "-1"], "argument --workers: must be 0 or a"),
        (["amons", "CCO", "--max-heavy-atoms", "-1"], "must be a positive integer, not -1"),
        (["export", "W", "--format", "xlsx"], "argument --format: invalid choice"),
        (["run", "q.smi", "--workers", "2", "--scheduler", "tcp://h:1", "-w", "W"], "not allowed"),
    ],
)
def test_a_wrong_value_is_refused_before_anything_runs(argv, expected, tmp_path, capsys):
    argv = [str(tmp_path / a) if a == "W" else a for a in argv]
    err = _usage_error(argv, capsys)
    assert expected in err
    assert not (tmp_path / "W").exists()


def test_boundary_values_are_accepted():
    parser = build_parser()
    args = parser.parse_args(["run", "q.smi", "-w", "W", "-k", "1", "--workers", "0"])
    assert (args.max_heavy_atoms, args.workers) == (1, 0)  # 0: in-process, no Dask
    assert parser.parse_args(["amons", "CCO", "--max-heavy-atoms", "1"]).max_heavy_atoms == 1


# ---- missing files and workspaces -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "MISSING", "-w", "W", "--workers", "0"],
        ["run", "EXISTING", "MISSING", "-w", "W", "--workers", "0"],
        ["extract", "MISSING", "-w", "W", "--workers", "0"],
        ["read", "MISSING", "-w", "W"],
    ],
    ids=lambda argv: "-".join(a.lower() for a in argv[:3] if a != "-w"),
)
def test_a_missing_input_file_is_one_line_and_creates_no_workspace(argv, tmp_path, capsys):
    missing = tmp_path / "missing.smi"
    workspace = tmp_path / "ws.zarr"
    existing = tmp_path / "q.smi"
    existing.write_text("CCO ethanol\n")
    paths = {"MISSING": str(missing), "EXISTING": str(existing), "W": str(workspace)}
    command = argv[0]
    code = main([paths.get(a, a) for a in argv])
    assert code == 1
    line = _assert_one_line_error(capsys.readouterr().err, command)
    assert str(missing) in line and "does not exist" in line
    assert not workspace.exists()


def test_read_rebuild_with_a_missing_file_keeps_the_workspace(tmp_path, capsys):
    workspace = tmp_path / "ws.zarr"
    source = tmp_path / "q.smi"
    source.write_text("CCO ethanol\n")
    assert main(["read", str(source), "-w", str(workspace), "--no-progress"]) == 0
    capsys.readouterr()
    missing = str(tmp_path / "missing.smi")
    assert main(["read", missing, "-w", str(workspace), "--rebuild"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "read")
    assert Workspace(workspace, mode="r").queries.n_rows == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "-w", "W", "--workers", "0"],  # no QUERIES: the workspace's own
        ["extract", "-w", "W", "--workers", "0"],
        ["label", "-w", "W", "--workers", "0"],
        *[[command, "W"] for command in POSITIONAL_WORKSPACE],
        *[[command, "-w", "W"] for command in POSITIONAL_WORKSPACE],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_missing_workspace_is_one_line_and_not_created(argv, tmp_path, capsys):
    workspace = tmp_path / "nowhere.zarr"
    argv = [str(workspace) if a == "W" else a for a in argv]
    assert main(argv) == 1
    line = _assert_one_line_error(capsys.readouterr().err, argv[0])
    assert f"no workspace at {workspace}" in line
    assert not workspace.exists()


@pytest.mark.parametrize("command", WORKSPACE_READERS)
def test_a_workspace_is_asked_for_once(command, capsys):
    """W or --workspace W (as `run` takes it): neither, or two different ones, is a one-line
    usage error with exit code 2 that says what to give."""
    assert main([command]) == 2
    assert "give the workspace" in _assert_one_line_error(capsys.readouterr().err, command)
    assert main([command, "a.zarr", "-w", "b.zarr"]) == 2
    line = _assert_one_line_error(capsys.readouterr().err, command)
    assert "two workspaces given" in line


def test_run_stops_when_no_record_could_be_read(tmp_path, capsys):
    """A file whose every record fails (here: a water dimer without allow-fragments) stops
    the run after the read, naming the first record's problem, not at training."""
    dimer = tmp_path / "dimer.xyz"
    dimer.write_text(
        "6\nid=dimer\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
        "O 2.9 0 0\nH 3.3 0.8 0.3\nH 3.3 -0.8 0.3\n"
    )
    assert main(["run", str(dimer), "-w", str(tmp_path / "ws.zarr"), "--workers", "0"]) == 1
    captured = capsys.readouterr()
    line = _assert_one_line_error(captured.err, "run")
    assert "no query could be read" in line and "dimer: the record holds 2" in line
    assert "allow-fragments" in line and "extracted" not in captured.out


def test_run_on_a_workspace_without_queries_asks_for_them(tmp_path, capsys):
    workspace = tmp_path / "empty.zarr"
    Workspace(workspace)
    assert main(["run", "-w", str(workspace), "--workers", "0"]) == 1
    line = _assert_one_line_error(capsys.readouterr().err, "run")
    assert "holds no queries" in line and "amondask run QUERIES --workspace" in line


def test_run_refuses_another_max_heavy_atoms_before_reading(tmp_path, capsys):
    workspace = tmp_path / "ws.zarr"
    first = tmp_path / "first.smi"
    first.write_text("CCO ethanol\n")
    second = tmp_path / "second.smi"
    second.write_text("CCN ethylamine\n")
    argv = ["extract", str(first), "-w", str(workspace), "-k", "2", "--workers", "0"]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(second), "-w", str(workspace), "-k", "3", "--workers", "0"]) == 1
    line = _assert_one_line_error(capsys.readouterr().err, "run")
    assert "max_heavy_atoms=2 in the workspace, 3 in this run" in line
    # Nothing was read into the workspace by the refused run.
    assert Workspace(workspace, mode="r").queries.read_text("id") == ["ethanol"]


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "amons.txt"
    assert main(["amons", "CCO", "--max-heavy-atoms", "2", "-o", str(target)]) == 1
    line = _assert_one_line_error(capsys.readouterr().err, "amons")
    assert str(target) in line


# ---- as real subprocesses: no traceback reaches the user --------------------------------------


def _amondask(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    script = shutil.which("amondask")
    command = [script] if script else [sys.executable, "-m", "amondask"]
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_subprocess_wrong_flag_exits_2_with_usage(tmp_path):
    result = _amondask("run", "--bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: amondask run")
    assert "--bogus" in result.stderr and "amondask run --help" in result.stderr
    assert result.stdout == ""


def test_subprocess_missing_file_and_workspace_exit_1_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "amondask", "run", "missing.smi", "-w", "ws.zarr", "-k", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "amondask run: error: input file missing.smi does not exist; check the path\n"
    )
    assert not (tmp_path / "ws.zarr").exists()
    result = _amondask("export", "nowhere.zarr", cwd=tmp_path)
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, "export")
    assert "no workspace at nowhere.zarr" in result.stderr
    result = _amondask("info", "nowhere.zarr", "--json", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    _assert_one_line_error(result.stderr, "info")
