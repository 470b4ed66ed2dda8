"""Outlier flags: which predictions not to trust, and why.

A prediction is *flagged* when one of these holds (its ``flag_reason`` lists all that do,
separated by ``,``):

``ring-system``
    the query has a ring system (fused, bridged or spiro rings) with more heavy atoms than N_I
    that no amon contains whole (:func:`amondask.amons.ring_systems.uncontained_ring_systems`):
    the strain of that ring system is never in training. On QM9 the large errors at N_I = 7 are
    such polycyclic cages.
``uncertainty``
    the posterior standard deviation is above ``uncertainty_threshold`` (kcal/mol;
    ``amondask.models.flags.uncertainty-threshold-kcal-mol``; null: this test is off);
``coverage``
    the query is not covered (an element, or with molecules an atom environment, unlike every
    training atom; see :class:`amondask.models.AmonKRR`).

The flags are a chemistry test plus the model's own two; the numbers that chose them are in
``benchmarks/results/qm9_remedy.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from amondask import config
from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE

FLAG_REASONS = ("ring-system", "uncertainty", "coverage")
FLAG_DESCRIPTION = (
    "the prediction is suspect: 'ring-system' (a ring system with more heavy atoms than N_I "
    "that no amon contains), 'uncertainty' (posterior sd above the threshold), 'coverage' "
    "(not covered); see amondask.models.flags"
)


def _rdkit(molecule: Any) -> Any:
    return molecule.rdkit_mol if hasattr(molecule, "rdkit_mol") else molecule


def ring_system_flags(
    molecules: Iterable[Any],
    max_heavy_atoms: int,
    occurrences: Sequence[Iterable[Sequence[int]] | None] | None = None,
) -> np.ndarray:
    """(n,) bool: the molecule has a ring system that no amon of at most ``max_heavy_atoms``
    heavy atoms (or, given per molecule, none of its amon ``occurrences``) contains whole.
    ``molecules``: :class:`~amondask.chem.Molecule` or RDKit molecules, any iterable (a
    stream: only the flags are kept)."""
    from amondask.amons.ring_systems import uncontained_ring_systems

    flags = [
        bool(
            uncontained_ring_systems(
                _rdkit(molecule), max_heavy_atoms, None if occurrences is None else occurrences[k]
            )
        )
        for k, molecule in enumerate(molecules)
    ]
    return np.array(flags, dtype=bool)


def outlier_flags(
    *,
    ring_system: np.ndarray,
    uncertainty_hartree: np.ndarray,
    covered: np.ndarray,
    uncertainty_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Combine the three tests into ``(flagged, reason)``, both (n,).

    Args:
        ring_system: (n,) bool, from :func:`ring_system_flags`.
        uncertainty_hartree: (n,) posterior sd (hartree; NaN counts as not above).
        covered: (n,) bool.
        uncertainty_threshold: kcal/mol; None: ``amondask.models.flags.
            uncertainty-threshold-kcal-mol`` (null there: the uncertainty test is off).

    Returns:
        ``flagged`` (bool) and ``reason`` (str: the reasons joined by ``,``; ``""`` when not
        flagged).
    """
    threshold = config.get("models.flags.uncertainty-threshold-kcal-mol", uncertainty_threshold)
    ring_system = np.asarray(ring_system, dtype=bool)
    covered = np.asarray(covered, dtype=bool)
    sd_kcal = np.asarray(uncertainty_hartree, dtype=np.float64) * KCAL_PER_MOL_PER_HARTREE
    uncertain = np.zeros(len(ring_system), dtype=bool)
    if threshold is not None:
        with np.errstate(invalid="ignore"):
            uncertain = np.nan_to_num(sd_kcal, nan=-np.inf) > float(threshold)
    tests = {"ring-system": ring_system, "uncertainty": uncertain, "coverage": ~covered}
    reason = np.array(
        [",".join(name for name in FLAG_REASONS if tests[name][k]) for k in range(len(covered))],
        dtype=str,
    )
    return ring_system | uncertain | ~covered, reason


def add_outlier_flags(
    dataset: Any,
    molecules: Iterable[Any],
    max_heavy_atoms: int,
    *,
    occurrences: Sequence[Iterable[Sequence[int]] | None] | None = None,
    uncertainty_threshold: float | None = None,
) -> Any:
    """The prediction Dataset with ``flagged`` (bool) and ``flag_reason`` (str) added;
    ``molecules`` are the queries in the Dataset's order, any iterable (see
    :func:`outlier_flags`)."""
    ring_system = ring_system_flags(molecules, max_heavy_atoms, occurrences)
    flagged, reason = outlier_flags(
        ring_system=ring_system,
        uncertainty_hartree=dataset["uncertainty"].values,
        covered=dataset["covered"].values,
        uncertainty_threshold=uncertainty_threshold,
    )
    threshold = config.get("models.flags.uncertainty-threshold-kcal-mol", uncertainty_threshold)
    dataset["flagged"] = ("query_id", flagged, {"description": FLAG_DESCRIPTION})
    dataset["flag_reason"] = ("query_id", reason, {"values": ", ".join(FLAG_REASONS)})
    dataset.attrs["flag_uncertainty_threshold_kcal_mol"] = (
        "off" if threshold is None else float(threshold)
    )
    dataset.attrs["flag_max_heavy_atoms"] = int(max_heavy_atoms)
    return dataset
