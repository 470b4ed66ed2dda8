"""Every bundled example input is read without errors and holds what its README says."""

import re
import subprocess
import sys

import pytest

from amondask.chem import read_molecules

EXPECTED = {"queries.smi": 30, "qm9_sample.extxyz": 24, "qm9_sample.sdf": 12}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_inputs_read_cleanly(examples_dir, name):
    result = read_molecules(examples_dir / name)
    assert not result.errors
    assert len(result.molecules) == EXPECTED[name]


def test_example_geometries_agree_with_their_smiles(examples_dir):
    """Bonds perceived from the QM9 XYZ geometries give the SMILES listed in queries.smi."""
    smiles = dict(
        (line.split()[1], line.split()[0])
        for line in (examples_dir / "queries.smi").read_text().splitlines()
        if line and not line.startswith("#")
    )
    from_xyz = read_molecules(examples_dir / "qm9_sample.extxyz").molecules
    from_sdf = {m.id: m for m in read_molecules(examples_dir / "qm9_sample.sdf").molecules}
    from_smiles = {m.id: m for m in read_molecules(examples_dir / "queries.smi").molecules}
    for molecule in from_xyz:
        assert molecule.key == from_smiles[molecule.id].key, (molecule.id, smiles[molecule.id])
        if molecule.id in from_sdf:
            assert from_sdf[molecule.id].key == molecule.key
            assert abs(from_sdf[molecule.id].positions - molecule.positions).max() < 1e-3


def test_quickstart_script(tmp_path, examples_dir):
    result = subprocess.run(
        [sys.executable, str(examples_dir / "quickstart.py"), str(tmp_path / "ws.zarr")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "aspirin: " in result.stdout and "predicted 30 queries" in result.stdout
    evaluated = re.search(r"evaluated (\d+) of 30 queries", result.stdout)
    assert evaluated and int(evaluated.group(1)) >= 25, result.stdout
    mae = float(re.search(r"MAE ([0-9.]+) kcal/mol", result.stdout).group(1))
    baseline = float(re.search(r"baseline\s+alone: MAE ([0-9.]+)", result.stdout).group(1))
    assert mae < 0.5 * baseline


def test_batch_job_script_on_a_local_cluster(tmp_path, examples_dir):
    queries = tmp_path / "few.smi"
    queries.write_text("CCO ethanol\nCC=O acetaldehyde\nCCN ethylamine\nC1CC broken\n")
    result = subprocess.run(
        [
            sys.executable,
            str(examples_dir / "batch_job.py"),
            str(queries),
            str(tmp_path / "ws.zarr"),
            "--max-heavy-atoms",
            "2",
            "--workers",
            "2",
            "--evaluate",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "predicted 3 queries" in result.stdout
    assert "MAE " in result.stdout and "over 3 queries" in result.stdout
    for name in ("ethanol", "acetaldehyde", "ethylamine"):
        assert name in result.stdout


def test_example_config_lists_every_option(examples_dir):
    import yaml

    from amondask.config import _DEFAULTS_FILE

    def keys(tree, prefix=""):
        out = set()
        for key, value in tree.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= keys(value, prefix + key + ".")
        return out

    packaged = yaml.safe_load(open(_DEFAULTS_FILE))
    example = yaml.safe_load(open(examples_dir / "amondask.yaml"))
    assert keys(example) == keys(packaged)
