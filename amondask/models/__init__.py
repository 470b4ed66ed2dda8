"""Kernel ridge regression of energies from amons: the :class:`AmonKRR` estimator, its
cross-validation, the global and per-query protocols, and the prediction Dataset.

Energies are in hartree everywhere; errors are reported in kcal/mol.
"""

from amondask.models.baseline import element_count_matrix, fit_element_baseline
from amondask.models.basis import Basis, cross_kernel_with_similarity, self_kernel
from amondask.models.cv import CrossValidation, cross_validate, fold_assignment
from amondask.models.dataset import prediction_dataset
from amondask.models.krr import AmonKRR
from amondask.models.metrics import (
    KCAL_PER_MOL_PER_HARTREE,
    mean_absolute_error_kcal_per_mol,
    r2_score,
)
from amondask.models.protocols import global_protocol, per_query_molecules, per_query_protocol

__all__ = [
    "KCAL_PER_MOL_PER_HARTREE",
    "AmonKRR",
    "Basis",
    "CrossValidation",
    "cross_kernel_with_similarity",
    "cross_validate",
    "element_count_matrix",
    "fit_element_baseline",
    "fold_assignment",
    "global_protocol",
    "mean_absolute_error_kcal_per_mol",
    "per_query_molecules",
    "per_query_protocol",
    "prediction_dataset",
    "r2_score",
    "self_kernel",
]
