import dask.config
import pytest

from amondask import config
from amondask.errors import ConfigError


def test_packaged_defaults():
    assert config.get("max-heavy-atoms") == 7
    assert config.get("amon-rules") == "paper"
    assert "Si" in config.get("elements")


def test_override_argument_and_dask_config_set():
    assert config.get("max-heavy-atoms", 5) == 5
    with dask.config.set({"amondask.max-heavy-atoms": 4}):
        assert config.get("max-heavy-atoms") == 4
    assert config.get("max-heavy-atoms") == 7


def test_environment_variables_are_parsed():
    settings = config.env_overrides(
        {"AMONDASK_MAX_HEAVY_ATOMS": "5", "AMONDASK_GEOMETRY__SEED": "11", "OTHER": "x"}
    )
    assert settings == {"amondask.max-heavy-atoms": 5, "amondask.geometry.seed": 11}


def test_environment_variable_applies_on_refresh(monkeypatch):
    monkeypatch.setenv("AMONDASK_READ__ALLOW_CHARGED", "true")
    try:
        config.refresh()
        assert config.get("read.allow-charged") is True
        from amondask.chem import read_molecules

        assert len(read_molecules(["C[NH3+]"]).molecules) == 1
    finally:
        monkeypatch.delenv("AMONDASK_READ__ALLOW_CHARGED")
        dask.config.refresh()
        config.refresh()
    assert config.get("read.allow-charged") is False


def test_unknown_key_is_explained():
    with pytest.raises(ConfigError, match="no configuration value"):
        config.get("no-such-key")


def test_config_file_applies_known_options_only(tmp_path, examples_dir):
    from amondask import config as amondask_config
    from amondask.errors import ConfigError

    every = amondask_config.read_file(examples_dir / "amondask.yaml")
    assert every["amondask.max-heavy-atoms"] == 7 and "amondask.geometry.seed" in every
    settings = tmp_path / "settings.yaml"
    settings.write_text("amondask:\n  max-heavy-atoms: 2\n  geometry: {seed: 7}\n")
    with amondask_config.load_file(settings):
        assert amondask_config.get("max-heavy-atoms") == 2
        assert amondask_config.get("geometry.seed") == 7
        assert amondask_config.get("geometry.max-attempts") == 3  # untouched neighbours kept
    assert amondask_config.get("max-heavy-atoms") == 7
    typo = tmp_path / "typo.yaml"
    typo.write_text("amondask:\n  max-heavy-atom: 2\n")
    with pytest.raises(ConfigError, match="max-heavy-atom "):
        amondask_config.read_file(typo)
    with pytest.raises(ConfigError, match="does not exist"):
        amondask_config.read_file(tmp_path / "missing.yaml")


def test_cli_config_option_sets_the_run_parameters(tmp_path, capsys):
    from amondask import config as amondask_config
    from amondask.cli import main
    from amondask.store import Workspace

    settings = tmp_path / "settings.yaml"
    settings.write_text("max-heavy-atoms: 2\n")  # without the amondask: level
    queries = tmp_path / "q.smi"
    queries.write_text("CCO ethanol\n")
    workspace = tmp_path / "ws.zarr"
    arguments = ["extract", str(queries), "-w", str(workspace), "--workers", "0"]
    assert main([*arguments, "--config", str(settings)]) == 0
    # ethanol at N_I = 2: methane, water, ethane, methanol
    keys = Workspace(workspace, mode="r").amons.amons.read_text("key")
    assert sorted(keys) == ["C", "CC", "CO", "O"]
    assert amondask_config.get("max-heavy-atoms") == 7  # only for that command
    assert main(["info", str(workspace), "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bare_file_of_other_dask_settings_passes_through(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("jobqueue:\n  slurm:\n    queue: short\nmax-heavy-atoms: 3\n")
    settings = config.read_file(site)
    assert settings == {"jobqueue.slurm.queue": "short", "amondask.max-heavy-atoms": 3}
    typo = tmp_path / "typo.yaml"
    typo.write_text("max-heavy-atom: 3\n")  # neither an amondask option nor a dask namespace
    with pytest.raises(ConfigError, match="max-heavy-atom "):
        config.read_file(typo)


def test_leaving_a_loaded_file_keeps_distributed_defaults(tmp_path):
    """Applied before distributed is imported, the file's undo must not delete distributed.*."""
    import subprocess
    import sys

    tls = tmp_path / "tls.yaml"
    tls.write_text("distributed:\n  comm:\n    timeouts:\n      connect: 61s\n")
    script = (
        "from amondask import config\n"
        "import dask.config, sys\n"
        "assert 'distributed' not in sys.modules\n"
        f"with config.load_file({str(tls)!r}):\n"
        "    import distributed  # a Client started inside the block\n"
        "    assert dask.config.get('distributed.comm.timeouts.connect') == '61s'\n"
        "print(dask.config.get('distributed.comm.timeouts.connect'),"
        " dask.config.get('distributed.worker.memory.target'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    connect, target = done.stdout.split()
    assert connect != "61s" and float(target) == 0.6
