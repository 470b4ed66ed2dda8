"""How long labeling a molecule takes: a fitted cost model, and tasks sized by it.

The model is a power law per labeler, ``seconds = prefactor * size ** exponent`` on one core,
with ``size`` the number of atoms (hydrogens included) for xTB and the number of basis
functions for PySCF. The coefficients live in ``amondask.label.cost-model`` and were fitted by
``benchmarks/bench_label.py`` (QM9 molecules of 1-7 heavy atoms as stand-ins for amons); a
site can put its own fit there. Relaxation multiplies a single point by the expected number of
steps, ``steps-per-atom * n_atoms``; table look-ups cost a constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from amondask import config
from amondask.chem.molecule import Molecule

TABLE_SECONDS = 1e-3
"""Cost of one table look-up (canonical key + dict look-up), seconds."""


def _model(name: str) -> dict[str, float]:
    model = config.get(f"label.cost-model.{name}")
    return {key: float(value) for key, value in model.items()}


@lru_cache(maxsize=4096)
def basis_functions_per_element(basis: str, atomic_number: int) -> int:
    """Number of (spherical) basis functions of ``basis`` on one atom of ``atomic_number``."""
    from pyscf import gto

    mol = gto.M(
        atom=[(int(atomic_number), (0.0, 0.0, 0.0))],
        basis=basis,
        spin=int(atomic_number) % 2,
        verbose=0,
    )
    return int(mol.nao_nr())


def n_basis_functions(molecule: Molecule, basis: str) -> int:
    """Number of basis functions of ``molecule`` in ``basis`` (no coordinates needed)."""
    return int(sum(basis_functions_per_element(basis, int(z)) for z in molecule.numbers))


def estimated_cost_seconds(molecule: Molecule, labeler: object) -> float:
    """Expected wall time (seconds, one core) for ``labeler.label(molecule)``.

    Known labelers: ``xtb`` (relaxed or single point), ``pyscf`` (by basis functions; relaxed
    runs multiply by the expected step count), ``table`` and ``qm9`` (constant). A labeler of
    another kind may define ``estimated_cost_seconds(molecule)``; otherwise 1 second.
    """
    name = getattr(labeler, "name", "")
    own = getattr(labeler, "estimated_cost_seconds", None)
    if callable(own):
        return float(own(molecule))
    if name in ("table", "qm9"):
        return TABLE_SECONDS
    if name == "xtb":
        model = _model("xtb")
        seconds = model["prefactor-s"] * molecule.n_atoms ** model["exponent"]
        if getattr(labeler, "relax", True):
            return seconds
        # the relaxed fit includes the steps; a single point is one of them
        return seconds / max(1.0, model["steps-per-atom"] * molecule.n_atoms)
    if name == "pyscf":
        model = _model("pyscf")
        size = n_basis_functions(molecule, getattr(labeler, "basis", "6-31G(2df,p)"))
        seconds = model["prefactor-s"] * size ** model["exponent"]
        if getattr(labeler, "relax", False):
            seconds *= max(1.0, model["steps-per-atom"] * molecule.n_atoms)
        return seconds
    return 1.0


def plan_tasks(costs_seconds: Sequence[float], target_seconds: float) -> list[np.ndarray]:
    """Split items into consecutive tasks of about ``target_seconds`` each.

    ``costs_seconds`` (n_items,) estimated costs in input order; returns a list of index arrays
    covering 0..n_items-1 in order. An item costlier than the target gets a task of its own.
    """
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be > 0, got {target_seconds}")
    tasks: list[np.ndarray] = []
    start, running = 0, 0.0
    costs = np.asarray(costs_seconds, dtype=np.float64)
    for index, cost in enumerate(costs):
        if index > start and running + cost > target_seconds:
            tasks.append(np.arange(start, index))
            start, running = index, 0.0
        running += cost
    if start < len(costs):
        tasks.append(np.arange(start, len(costs)))
    return tasks
