"""Shared fixtures. Tests import amondask from the installed package (pip install -e .[test])."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One BLAS/OpenMP thread per process: the CI machine has 2 cores and tests run beside workers.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture
def data_dir() -> Path:
    return DATA
