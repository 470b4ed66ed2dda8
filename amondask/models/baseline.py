"""The per-element linear baseline: E ~ sum over elements Z of n_Z e_Z.

The authors subtract from every energy a linear model in the element counts, fitted by least
squares on the training labels, and learn only the remainder with the kernel (it is much
smaller and smoother than the total energy). Without an intercept: a molecule with no atoms
has no energy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def element_count_matrix(
    numbers_per_molecule: Iterable[Sequence[int] | np.ndarray], elements: Sequence[int]
) -> np.ndarray:
    """(n_molecules, n_elements) float64 counts of each element of ``elements`` (atomic numbers,
    H included) per molecule; atoms of other elements are not counted."""
    elements = np.asarray(elements, dtype=np.int64)
    rows = []
    for numbers in numbers_per_molecule:
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        rows.append((numbers[:, None] == elements[None, :]).sum(axis=0))
    if not rows:
        return np.zeros((0, len(elements)))
    return np.asarray(rows, dtype=np.float64)


def fit_element_baseline(element_counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Per-element energies e (n_elements,) minimizing |counts @ e - energies|_2.

    Args:
        element_counts: (n_molecules, n_elements) counts.
        energies: (n_molecules,) energies (hartree).

    Returns:
        (n_elements,) float64 energy per atom of each element (hartree); the minimum-norm
        solution (``numpy.linalg.lstsq``) when the counts do not determine it, so an element no
        training molecule contains gets 0.
    """
    counts = np.asarray(element_counts, dtype=np.float64)
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    if counts.ndim != 2 or counts.shape[0] != energies.shape[0]:
        raise ValueError(
            f"element counts {counts.shape} do not match {energies.shape[0]} energies; pass "
            "(n_molecules, n_elements) counts, one row per energy"
        )
    if counts.shape[0] == 0:
        return np.zeros(counts.shape[1])
    coefficients, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return coefficients
