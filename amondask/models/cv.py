"""k-fold cross-validation of AmonKRR over sigma scale factors and lambdas.

The grid is (sigma scale s) x (lambda): the model with widths s * sigma_Z (sigma_Z the base
model's widths, e.g. the authors' per-element rule on the whole training set: it depends on the
representations only, not on the labels) and ridge lambda. Errors are mean absolute errors of
the held-out energies in kcal/mol, baseline included (the baseline is refitted on each training
fold). A held-out molecule with an element absent from its fold's training part is left out of
the error (and counted in ``n_excluded``): the model cannot predict it at any grid point (no
baseline energy for that element) and its error of ~100 hartree would hide every difference.

Reuse, so that a grid costs little more than one fit:

* distances: each element's atom-atom distance matrix (squared L2 for the Gaussian, L1 for the
  Laplacian) is computed once; every sigma only re-exponentiates it and sums onto molecules.
  When the matrices do not fit in ``amondask.models.cv-distance-cache-bytes``, K is recomputed
  per sigma (:func:`amondask.kernels.local_kernel`) instead;
* lambdas: per (sigma, fold) one symmetric eigendecomposition K_train = V diag(w) V^T, then
  every lambda is alpha = V diag(1 / (w + lambda)) V^T y at O(n^2) cost.

With ``kernel="precomputed"`` the grid is over lambda only (the kernel's widths are fixed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from amondask import config
from amondask.errors import ModelError
from amondask.kernels.local import element_sigmas, l1_distances, local_kernel
from amondask.models.baseline import element_count_matrix, fit_element_baseline
from amondask.models.basis import molecule_arrays
from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE
from amondask.represent import ElementBlock, slatm_mbtypes

DEFAULT_SIGMA_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
DEFAULT_ALPHAS = (1e-10, 1e-8, 1e-6, 1e-4, 1e-2)


@dataclass
class CrossValidation:
    """Outcome of :func:`cross_validate`.

    Attributes:
        table: one row per grid point: ``sigma_scale``, ``alpha``, ``mae_kcal_per_mol`` (mean
            over folds), ``mae_std_kcal_per_mol`` (spread over folds), ``n_excluded`` (held-out
            molecules left out as not covered, see below) and ``fold_<k>`` columns.
        best_sigma_scale, best_alpha: the grid point with the lowest mean MAE.
        best_sigma: {Z: sigma_Z} of the best point (None with a precomputed kernel).
        best_estimator: the base estimator with the best sigma and alpha, refitted on all data
            (None with ``refit=False``).
        folds: (n,) int fold of each training molecule.
    """

    table: pd.DataFrame
    best_sigma_scale: float
    best_alpha: float
    best_sigma: dict[int, float] | None
    best_estimator: Any
    folds: np.ndarray


def fold_assignment(n: int, n_folds: int, seed: int | None = 0) -> np.ndarray:
    """(n,) int fold index of each sample: a seeded random permutation cut into ``n_folds``
    nearly equal parts (unshuffled order for ``seed=None``)."""
    if not 2 <= n_folds <= n:
        raise ModelError(f"n_folds must be between 2 and the number of samples {n}, got {n_folds}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    for fold, members in enumerate(np.array_split(order, n_folds)):
        folds[members] = fold
    return folds


class _ElementDistances:
    """Per element, the atom-atom distance matrix of all training atoms, kept in memory."""

    def __init__(self, blocks: Mapping[int, ElementBlock], kernel: str):
        self.kernel = kernel
        self.owners = {}
        self.distances = {}
        for z, block in blocks.items():
            x = np.asarray(block.x, dtype=np.float64)
            if kernel == "gaussian":
                norms = np.einsum("ij,ij->i", x, x)
                squared = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
                np.maximum(squared, 0.0, out=squared)
                self.distances[z] = squared
            else:
                self.distances[z] = l1_distances(np.ascontiguousarray(x), np.ascontiguousarray(x))
            self.owners[z] = np.asarray(block.molecule_index, dtype=np.int64)

    def kernel_matrix(self, sigma: Mapping[int, float], n_molecules: int) -> np.ndarray:
        """(n_molecules, n_molecules) local kernel for widths ``sigma``."""
        out = np.zeros((n_molecules, n_molecules))
        for z, distances in self.distances.items():
            if self.kernel == "gaussian":
                values = np.exp(distances * (-0.5 / sigma[z] ** 2))
            else:
                values = np.exp(distances * (-1.0 / sigma[z]))
            owner = self.owners[z]
            starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            summed = np.add.reduceat(np.add.reduceat(values, starts, axis=0), starts, axis=1)
            molecules = owner[starts]
            out[np.ix_(molecules, molecules)] += summed
        return 0.5 * (out + out.T)


def _distance_bytes(blocks: Mapping[int, ElementBlock]) -> int:
    return sum(8 * len(b.molecule_index) ** 2 for b in blocks.values())


def _fold_errors(
    kernel: np.ndarray,
    energies: np.ndarray,
    counts: np.ndarray | None,
    folds: np.ndarray,
    alphas: Sequence[float],
    use_baseline: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(n_alphas, n_folds) MAE (kcal/mol) of each lambda on each held-out fold, and (n_folds,)
    the number of held-out molecules left out of it.

    A held-out molecule with an element that no molecule of the fold's training part has is
    left out (it is not covered: its baseline has no energy for that element, an error of
    ~100 hartree per atom that would swamp every grid point alike).
    """
    n_folds = int(folds.max()) + 1
    errors = np.empty((len(alphas), n_folds))
    excluded = np.zeros(n_folds, dtype=np.int64)
    for fold in range(n_folds):
        train, held_out = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if counts is not None:
            missing = counts[train].sum(axis=0) == 0
            covered = ~np.any(counts[held_out][:, missing] > 0, axis=1)
            excluded[fold] = int(np.sum(~covered))
            held_out = held_out[covered]
        if len(held_out) == 0:
            errors[:, fold] = np.nan
            continue
        targets = energies[train]
        baseline_train = np.zeros(len(train))
        baseline_held_out = np.zeros(len(held_out))
        if use_baseline:
            coefficients = fit_element_baseline(counts[train], targets)
            baseline_train = counts[train] @ coefficients
            baseline_held_out = counts[held_out] @ coefficients
        eigenvalues, eigenvectors = np.linalg.eigh(kernel[np.ix_(train, train)])
        projected = eigenvectors.T @ (targets - baseline_train)
        held_out_basis = kernel[np.ix_(held_out, train)] @ eigenvectors
        for a, alpha in enumerate(alphas):
            predicted = held_out_basis @ (projected / (eigenvalues + alpha)) + baseline_held_out
            errors[a, fold] = np.mean(np.abs(predicted - energies[held_out]))
    return errors * KCAL_PER_MOL_PER_HARTREE, excluded


def cross_validate(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    sigma_scales: Sequence[float] = DEFAULT_SIGMA_SCALES,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
    seed: int | None = 0,
    element_counts: Any = None,
    elements: Sequence[int] | None = None,
    refit: bool = True,
) -> CrossValidation:
    """k-fold cross-validation of ``estimator`` (an :class:`AmonKRR`) over a grid.

    Args:
        estimator: the base model; its kernel, sigma, baseline and representation parameters
            are used, and its sigma_Z are multiplied by each scale.
        X, y: as in ``estimator.fit`` (molecules, or the (n, n) kernel with
            ``kernel="precomputed"``) and (n,) energies in hartree.
        sigma_scales: factors multiplying the widths (must be ``(1.0,)`` for a precomputed
            kernel).
        alphas: lambdas to try.
        n_folds, seed: the k-fold split (:func:`fold_assignment`).
        element_counts, elements: precomputed kernel only, as in ``fit``.
        refit: refit the best grid point on all of X and return it.

    Returns:
        :class:`CrossValidation`; ties go to the first grid point in (sigma_scale, alpha) order.
    """
    estimator._validate_params()
    energies = np.asarray(y, dtype=np.float64).reshape(-1)
    folds = fold_assignment(energies.shape[0], n_folds, seed)
    alphas = [float(a) for a in alphas]
    sigma_scales = [float(s) for s in sigma_scales]
    if not alphas or not sigma_scales or min(alphas) < 0 or min(sigma_scales) <= 0:
        raise ModelError("give at least one alpha >= 0 and one sigma scale > 0")
    use_baseline = estimator.baseline == "per-element"
    base_sigma: dict[int, float] | None = None

    if estimator.kernel == "precomputed":
        if sigma_scales != [1.0]:
            raise ModelError(
                "a precomputed kernel has fixed widths: cross-validate sigma by computing one "
                "kernel per sigma, or pass sigma_scales=(1.0,)"
            )
        kernel = np.asarray(
            X.compute() if hasattr(X, "compute") else X[...] if hasattr(X, "shape") else X,
            dtype=np.float64,
        )
        counts = None if element_counts is None else np.asarray(element_counts, np.float64)
        if use_baseline and counts is None:
            raise ModelError("baseline='per-element' needs element_counts with a precomputed K")
        errors = {1.0: _fold_errors(kernel, energies, counts, folds, alphas, use_baseline)}
    else:
        molecules = list(X)
        numbers_list = [molecule_arrays(m)[0] for m in molecules]
        mbtypes = estimator.mbtypes
        if mbtypes is None:
            mbtypes = slatm_mbtypes(numbers_list)
        probe = type(estimator)(**{**estimator.get_params(), "mbtypes": mbtypes})
        probe.mbtypes_ = [[int(z) for z in t] for t in mbtypes]
        blocks, _, _ = probe._basis().represent(molecules)
        training_elements = sorted({int(z) for numbers in numbers_list for z in numbers})
        blocks = {z: b for z, b in blocks.items() if z in training_elements}
        base_sigma = (
            element_sigmas(blocks, kernel=estimator.kernel)
            if isinstance(estimator.sigma, str)
            else probe._resolve_sigma(blocks)
        )
        counts = element_count_matrix(numbers_list, training_elements)
        limit = int(config.get("models.cv-distance-cache-bytes"))
        cache = None
        if _distance_bytes(blocks) <= limit:
            cache = _ElementDistances(blocks, estimator.kernel)
        errors = {}
        for scale in sigma_scales:
            sigma = {z: scale * s for z, s in base_sigma.items()}
            if cache is not None:
                kernel = cache.kernel_matrix(sigma, len(molecules))
            else:
                kernel = local_kernel(
                    blocks, sigma=sigma, kernel=estimator.kernel, n_row_molecules=len(molecules)
                )
            errors[scale] = _fold_errors(kernel, energies, counts, folds, alphas, use_baseline)
            del kernel

    rows = []
    for scale in sigma_scales if estimator.kernel != "precomputed" else [1.0]:
        for a, alpha in enumerate(alphas):
            fold_errors, excluded = errors[scale]
            per_fold = fold_errors[a]
            row = {
                "sigma_scale": scale,
                "alpha": alpha,
                "mae_kcal_per_mol": float(np.nanmean(per_fold)),
                "mae_std_kcal_per_mol": float(np.nanstd(per_fold)),
                "n_excluded": int(excluded.sum()),
            }
            row.update({f"fold_{k}": float(v) for k, v in enumerate(per_fold)})
            rows.append(row)
    table = pd.DataFrame(rows)
    mean_errors = table["mae_kcal_per_mol"].to_numpy()
    if np.all(np.isnan(mean_errors)):
        raise ModelError(
            "no held-out molecule is covered by its training folds; use fewer folds or more data"
        )
    best = table.iloc[int(np.nanargmin(mean_errors))]
    best_scale, best_alpha = float(best["sigma_scale"]), float(best["alpha"])
    best_sigma = None if base_sigma is None else {z: best_scale * s for z, s in base_sigma.items()}
    best_estimator = None
    if refit:
        params = {**estimator.get_params(), "alpha": best_alpha}
        if best_sigma is not None:
            params["sigma"] = best_sigma
        best_estimator = type(estimator)(**params)
        if estimator.kernel == "precomputed":
            best_estimator.fit(X, energies, element_counts=element_counts, elements=elements)
        else:
            best_estimator.fit(molecules, energies)
    return CrossValidation(table, best_scale, best_alpha, best_sigma, best_estimator, folds)
