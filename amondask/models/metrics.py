"""Energy units and error measures of the models.

Energies are stored and passed in hartree; errors are reported in kcal/mol, where chemists
read them (chemical accuracy is 1 kcal/mol).
"""

from __future__ import annotations

import numpy as np

#: kcal/mol per hartree (CODATA 2018: 1 hartree = 4.3597447222071e-18 J; N_A; 4184 J/kcal).
KCAL_PER_MOL_PER_HARTREE = 627.5094740631


def mean_absolute_error_kcal_per_mol(
    true_hartree: np.ndarray, predicted_hartree: np.ndarray
) -> float:
    """Mean absolute error in kcal/mol of two (n,) energy arrays given in hartree."""
    true_hartree = np.asarray(true_hartree, dtype=np.float64).reshape(-1)
    predicted_hartree = np.asarray(predicted_hartree, dtype=np.float64).reshape(-1)
    if true_hartree.shape != predicted_hartree.shape:
        raise ValueError(
            f"{true_hartree.shape[0]} true and {predicted_hartree.shape[0]} predicted energies; "
            "pass one prediction per molecule"
        )
    return float(np.mean(np.abs(true_hartree - predicted_hartree)) * KCAL_PER_MOL_PER_HARTREE)


def r2_score(true: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination 1 - sum (y - f)^2 / sum (y - mean y)^2 of (n,) arrays."""
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    residual = float(np.sum((true - predicted) ** 2))
    total = float(np.sum((true - true.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total
