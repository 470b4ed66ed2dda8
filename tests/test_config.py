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
