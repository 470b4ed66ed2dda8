"""AmonKRR: kernel ridge regression of energies with a local aSLATM kernel, as the authors do.

The model (Huang & von Lilienfeld, Nat. Chem. 12, 945 (2020)): an energy is a per-element
linear baseline plus a kernel expansion over the training molecules,

    E(x) = sum_Z n_Z(x) e_Z + sum_i alpha_i K(x, x_i),
    (K + lambda I) alpha = y - N e,

with K the local kernel (a sum of Gaussian or Laplacian atom kernels over same-element atom
pairs, per-element widths sigma_Z) on aSLATM, N the (n_train, n_elements) element counts and e
the baseline fitted by least squares on the training energies.

Two ways in, as scikit-learn's ``KernelRidge``:

* molecules: ``fit(molecules, energies_hartree)`` computes the representation (in the training
  basis: the mbtypes of the training molecules, or ``mbtypes=`` given) and the kernel;
* ``kernel="precomputed"``: ``fit(K, y, element_counts=N)`` and ``predict(K_test,
  element_counts=N_test)`` with kernels computed elsewhere (out of core by the workspace
  pipeline). K may be a numpy, zarr or dask array; it goes to :func:`amondask.solve.solve`.

Uncertainty (``predict(..., return_dataset=True)``): the Gaussian-process view of KRR, prior
f ~ GP(0, s^2 k) and noise variance s^2 lambda, gives the posterior standard deviation of f(x)

    std(x) = sqrt(s^2 (k(x, x) - k_x^T (K + lambda I)^{-1} k_x))   [hartree],

with the signal variance s^2 set to its maximum-likelihood value (y - N e)^T alpha / n_train
(hartree^2). It needs the Cholesky factor of K + lambda I, kept with the model up to
``amondask.models.uncertainty-max-train`` training molecules (NaN above that), and k(x, x).

Coverage: a query is covered when every atom has an element present in training and, with the
molecule interface, every atom's largest atom-kernel value to a same-element training atom is
at least ``coverage_threshold`` (default ``amondask.models.coverage-threshold`` = 0.9). With the
authors' sigma_Z the two farthest training atoms of one element score 0.5, so these values are
high and the test is strict but rare: on QM9 (<= 7 heavy atoms, 200 training molecules, 500
test) 3 molecules fell below 0.9, all with errors > 2 kcal/mol, out of 99 such errors; the
uncertainty ranks errors better (its top 10% held 28% of them at 200 and 62% at 800 training
molecules). With a precomputed kernel only the element test is possible.

A query with an atom of an element that no training molecule contains gets energy, baseline and
uncertainty NaN (the baseline has no energy for that element: any number would be off by ~100
hartree per atom) and ``covered=False``; it is not an error, so one such query does not stop a
batch.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg

from amondask import config
from amondask.errors import ModelError, NotFittedError
from amondask.kernels.local import element_sigmas, local_kernel
from amondask.models.baseline import element_count_matrix, fit_element_baseline
from amondask.models.basis import (
    Basis,
    cross_kernel_with_similarity,
    molecule_arrays,
    molecule_id,
    self_kernel,
)
from amondask.models.metrics import mean_absolute_error_kcal_per_mol, r2_score
from amondask.represent import ElementBlock, slatm_mbtypes
from amondask.solve import solve
from amondask.solve.cholesky import blas_thread_guard

KERNELS = ("gaussian", "laplacian", "precomputed")
BASELINES = ("per-element", None)
#: Version of the layout :meth:`AmonKRR.save` writes.
MODEL_FORMAT = 1
MODEL_ATTRIBUTE = "amondask_model"


def _is_lazy(array: Any) -> bool:
    return not isinstance(array, np.ndarray) and hasattr(array, "shape")


def _row_blocks(array: Any, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, rows start:start+block_rows as float64 numpy) of a numpy/zarr/dask 2-D array."""
    if isinstance(array, np.ndarray):
        yield 0, np.asarray(array, dtype=np.float64)
        return
    for start in range(0, int(array.shape[0]), block_rows):
        block = array[start : start + block_rows]
        if hasattr(block, "compute"):
            block = block.compute()
        yield start, np.asarray(block, dtype=np.float64)


def _dense(array: Any) -> np.ndarray:
    if hasattr(array, "compute"):
        array = array.compute()
    return np.asarray(array[...] if not isinstance(array, np.ndarray) else array, np.float64)


class AmonKRR:
    """Kernel ridge regression of molecular energies on local aSLATM kernels.

    Parameters
    ----------
    kernel
        ``"gaussian"`` exp(-|a - b|^2 / (2 sigma_Z^2)), ``"laplacian"`` exp(-|a - b|_1 /
        sigma_Z) between same-element atoms, or ``"precomputed"`` (``fit``/``predict`` take
        kernel matrices).
    sigma
        Kernel width(s): ``"auto"`` (the authors' sigma_Z: the farthest pair of training atoms
        of element Z scores 0.5, :func:`amondask.kernels.element_sigmas`), one float for every
        element, or {Z: sigma_Z}. Ignored with ``kernel="precomputed"``.
    alpha
        lambda, added to K's diagonal (1e-4 as the authors).
    baseline
        ``"per-element"``: energies minus a least-squares fit on element counts are learned;
        None: the energies themselves.
    rcut, slatm_sigmas, dgrid, rpower
        aSLATM parameters (:func:`amondask.represent.slatm`): cut-off (angstrom), smearing
        widths (angstrom, radian), grid spacings (the authors use 0.04; qmllib's default is
        0.03) and the power of the two-body potential.
    mbtypes
        The many-body types of the representation basis; None: from the training molecules.
        Give the workspace's mbtypes to share one basis with stored representations.
    solver
        ``method`` of :func:`amondask.solve.solve` (``"auto"``, ``"scipy"``,
        ``"dask-cholesky"``, ``"pcg"``).
    coverage_threshold
        Smallest atom-kernel value to the nearest same-element training atom for a query atom
        to count as covered (None: ``amondask.models.coverage-threshold``).
    uncertainty
        Keep the Cholesky factor of K + lambda I for the posterior standard deviation.

    Attributes (after ``fit``)
    --------------------------
    dual_coef_ : (n_train,) alpha, hartree per kernel unit.
    baseline_coef_ : (n_elements,) hartree per atom of each of ``elements_``, or None.
    elements_ : (n_elements,) atomic numbers of the baseline columns (molecule mode; with a
        precomputed kernel the ``elements`` given to fit, or None).
    sigma_ : {Z: sigma_Z} used (None with a precomputed kernel).
    mbtypes_ : the representation basis (None with a precomputed kernel).
    train_blocks_ : {Z: ElementBlock} training representation (molecule mode).
    train_element_totals_ : (n_elements,) atoms of each element in training, or None.
    signal_variance_ : s^2 (hartree^2) of the GP view.
    train_factor_ : (n_train, n_train) lower Cholesky factor of K + lambda I, or None.
    n_train_ : number of training molecules.
    solve_info_ : how the system was solved (method, residual, iterations, choice).
    """

    def __init__(
        self,
        kernel: str = "gaussian",
        sigma: str | float | Mapping[int, float] = "auto",
        alpha: float = 1e-4,
        baseline: str | None = "per-element",
        *,
        rcut: float = 4.8,
        slatm_sigmas: tuple[float, float] = (0.05, 0.05),
        dgrid: tuple[float, float] = (0.04, 0.04),
        rpower: float = 6,
        mbtypes: Sequence[Sequence[int]] | None = None,
        solver: str = "auto",
        coverage_threshold: float | None = None,
        uncertainty: bool = True,
    ):
        self.kernel = kernel
        self.sigma = sigma
        self.alpha = alpha
        self.baseline = baseline
        self.rcut = rcut
        self.slatm_sigmas = slatm_sigmas
        self.dgrid = dgrid
        self.rpower = rpower
        self.mbtypes = mbtypes
        self.solver = solver
        self.coverage_threshold = coverage_threshold
        self.uncertainty = uncertainty

    # ---- scikit-learn protocol ---------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters as a dict (scikit-learn's contract)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> AmonKRR:
        """Set constructor parameters; returns self. Takes effect at the next ``fit``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ModelError(f"AmonKRR has no parameter {name!r}; valid parameters: {valid}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's estimator tags (scikit-learn >= 1.6 asks for them in
        ``cross_val_score``/``GridSearchCV``): a regressor that validates its own input; with
        ``kernel="precomputed"`` the input is pairwise, so scikit-learn slices K's rows and
        columns when it splits."""
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, one_d_labels=True),
            regressor_tags=RegressorTags(),
            input_tags=InputTags(pairwise=self.kernel == "precomputed"),
            no_validation=True,
        )

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not _same(value, defaults.get(name))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ---- validation --------------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.kernel not in KERNELS:
            raise ModelError(f"kernel={self.kernel!r} is unknown; use one of {KERNELS}")
        if self.baseline not in BASELINES:
            raise ModelError(f"baseline={self.baseline!r} is unknown; use 'per-element' or None")
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ModelError(f"alpha (lambda) must be finite and >= 0, got {self.alpha!r}")
        if self.kernel != "precomputed":
            sigma = self.sigma
            if isinstance(sigma, str):
                if sigma != "auto":
                    raise ModelError(f"sigma={sigma!r}: use 'auto', a float or a dict {{Z: s}}")
            elif isinstance(sigma, Mapping):
                bad = {z: s for z, s in sigma.items() if not float(s) > 0}
                if bad:
                    raise ModelError(f"sigma must be > 0 for every element, got {bad}")
            elif not float(sigma) > 0:
                raise ModelError(f"sigma must be > 0, got {sigma!r}")
            for name in ("slatm_sigmas", "dgrid"):
                value = getattr(self, name)
                if len(value) != 2 or not all(float(v) > 0 for v in value):
                    raise ModelError(f"{name} must be two positive floats, got {value!r}")
            if not float(self.rcut) > 0:
                raise ModelError(f"rcut must be > 0 angstrom, got {self.rcut!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError(
                "this AmonKRR is not fitted yet; call fit(...) or AmonKRR.load(group) first"
            )

    def _basis(self) -> Basis:
        return Basis(
            self.mbtypes_,
            rcut=self.rcut,
            sigmas=tuple(self.slatm_sigmas),
            dgrid=tuple(self.dgrid),
            rpower=self.rpower,
        )

    def _resolve_sigma(self, blocks: Mapping[int, ElementBlock]) -> dict[int, float]:
        if isinstance(self.sigma, str):
            return element_sigmas(blocks, kernel=self.kernel)
        if isinstance(self.sigma, Mapping):
            sigma = {int(z): float(s) for z, s in self.sigma.items()}
            missing = sorted(set(blocks) - set(sigma))
            if missing:
                raise ModelError(
                    f"sigma has no width for elements {missing} of the training data; add them "
                    "or use sigma='auto'"
                )
            return {z: sigma[z] for z in blocks}
        return {int(z): float(self.sigma) for z in blocks}

    # ---- fit ---------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        element_counts: Any = None,
        elements: Sequence[int] | None = None,
    ) -> AmonKRR:
        """Fit the model.

        Parameters
        ----------
        X
            Training molecules (:class:`amondask.chem.Molecule` with positions, or ``(numbers,
            positions)`` pairs); with ``kernel="precomputed"`` the (n, n) training kernel
            (numpy, zarr or dask array).
        y
            (n,) energies in hartree.
        element_counts
            Precomputed kernel only: (n, n_elements) element counts of the training molecules
            (needed for the baseline and the coverage flag).
        elements
            Precomputed kernel only: the atomic numbers of the ``element_counts`` columns.

        Returns
        -------
        self
        """
        self._validate_params()
        energies = np.asarray(y, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(energies)):
            raise ModelError("energies contain NaN or inf; drop the failed labels before fit")
        if self.kernel == "precomputed":
            train_kernel, counts = self._fit_inputs_precomputed(X, energies, element_counts)
            self.elements_ = None if elements is None else np.asarray(elements, np.int64)
            self.mbtypes_ = None
            self.sigma_ = None
            self.train_blocks_ = None
        else:
            if element_counts is not None or elements is not None:
                raise ModelError(
                    "element_counts/elements are only for kernel='precomputed'; with molecules "
                    "the counts come from the molecules"
                )
            train_kernel, counts = self._fit_inputs_molecules(X, energies)
        n = energies.shape[0]
        self.n_train_ = n
        self.train_element_totals_ = None if counts is None else counts.sum(axis=0)
        if self.baseline == "per-element":
            self.baseline_coef_ = fit_element_baseline(counts, energies)
            residual_targets = energies - counts @ self.baseline_coef_
        else:
            self.baseline_coef_ = None
            residual_targets = energies
        wants_factor = self.uncertainty and n <= int(config.get("models.uncertainty-max-train"))
        result = solve(
            train_kernel,
            residual_targets,
            float(self.alpha),
            method=self.solver,
            keep_factor=wants_factor,
        )
        self.dual_coef_ = np.asarray(result.x, dtype=np.float64).reshape(-1)
        self.solve_info_ = {
            "method": result.method,
            "residual": float(result.residual),
            "iterations": int(result.iterations),
            "converged": bool(result.converged),
            "choice": str(result.info.get("choice", "")),
        }
        self.signal_variance_ = max(float(residual_targets @ self.dual_coef_) / max(n, 1), 0.0)
        # the in-memory solve's own factor when it kept one; else factor K + lambda I here
        self.train_factor_ = result.factor
        if self.train_factor_ is None and wants_factor:
            self.train_factor_ = self._factor(train_kernel)
        return self

    def _fit_inputs_precomputed(
        self, X: Any, energies: np.ndarray, element_counts: Any
    ) -> tuple[Any, np.ndarray | None]:
        shape = tuple(int(s) for s in getattr(X, "shape", np.shape(X)))
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] != energies.shape[0]:
            raise ModelError(
                f"kernel='precomputed' needs the square training kernel K (n, n) with n = "
                f"{energies.shape[0]} energies, got shape {shape}"
            )
        train_kernel = X if _is_lazy(X) else np.asarray(X, dtype=np.float64)
        counts = None
        if element_counts is not None:
            counts = np.asarray(element_counts, dtype=np.float64)
            if counts.ndim != 2 or counts.shape[0] != energies.shape[0]:
                raise ModelError(
                    f"element_counts must be (n, n_elements) with n = {energies.shape[0]}, got "
                    f"{counts.shape}"
                )
        elif self.baseline == "per-element":
            raise ModelError(
                "baseline='per-element' with kernel='precomputed' needs fit(K, y, "
                "element_counts=(n, n_elements) counts); or set baseline=None"
            )
        return train_kernel, counts

    def _fit_inputs_molecules(self, X: Any, energies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind == "f":
            raise ModelError(
                "fit got a float matrix, not molecules; for a kernel matrix use "
                "AmonKRR(kernel='precomputed')"
            )
        molecules = list(X)
        if len(molecules) != energies.shape[0]:
            raise ModelError(f"{len(molecules)} molecules but {energies.shape[0]} energies")
        if not molecules:
            raise ModelError("no training molecules")
        numbers_list = [molecule_arrays(m)[0] for m in molecules]
        self.mbtypes_ = (
            slatm_mbtypes(numbers_list)
            if self.mbtypes is None
            else [[int(z) for z in t] for t in self.mbtypes]
        )
        basis = self._basis()
        blocks, unknown, _ = basis.represent(molecules)
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            raise ModelError(
                f"training molecule {molecule_id(molecules[first], first)} has elements outside "
                f"the given mbtypes (elements {basis.elements}); build mbtypes with "
                "slatm_mbtypes over all training molecules or leave mbtypes=None"
            )
        training_elements = sorted({int(z) for numbers in numbers_list for z in numbers})
        self.elements_ = np.asarray(training_elements, dtype=np.int64)
        blocks = {z: b for z, b in blocks.items() if z in training_elements}
        self.sigma_ = self._resolve_sigma(blocks)
        self.train_blocks_ = blocks
        counts = element_count_matrix(numbers_list, self.elements_)
        train_kernel = local_kernel(
            blocks, sigma=self.sigma_, kernel=self.kernel, n_row_molecules=len(molecules)
        )
        return train_kernel, counts

    def _factor(self, train_kernel: Any) -> np.ndarray | None:
        n = self.n_train_
        import psutil

        need = 8 * n * n * (2 if isinstance(train_kernel, np.ndarray) else 1)
        available = int(psutil.virtual_memory().available)
        if need > float(config.get("solve.memory-fraction")) * available:
            warnings.warn(
                f"no posterior uncertainty (NaN): its Cholesky factor (n={n}) needs "
                f"{need / 2**30:.1f} GiB, more than amondask.solve.memory-fraction of the "
                f"{available / 2**30:.1f} GiB available; train where there is more memory, or "
                "lower amondask.models.uncertainty-max-train to skip it silently",
                stacklevel=3,
            )
            return None
        # a loaded (zarr/dask) K is ours to overwrite; a numpy K is the caller's
        matrix = np.array(_dense(train_kernel), copy=isinstance(train_kernel, np.ndarray))
        matrix[np.diag_indices(n)] += float(self.alpha)
        try:
            with blas_thread_guard(n):  # threaded OpenBLAS Cholesky has segfaulted at large n
                return scipy.linalg.cholesky(
                    matrix, lower=True, overwrite_a=True, check_finite=False
                )
        except np.linalg.LinAlgError:
            warnings.warn(
                f"K + lambda I (n={n}, lambda={self.alpha:g}) is not positive definite: no "
                "posterior uncertainty (NaN); increase alpha to get one",
                stacklevel=3,
            )
            return None

    # ---- predict -----------------------------------------------------------------------------
    def predict(
        self,
        X: Any,
        *,
        element_counts: Any = None,
        self_kernel_values: Any = None,
        return_dataset: bool = False,
        query_ids: Sequence[Any] | None = None,
    ) -> Any:
        """Predicted energies (hartree) of the query molecules.

        Parameters
        ----------
        X
            Query molecules (as in ``fit``); with ``kernel="precomputed"`` the (n_query,
            n_train) kernel between queries and training molecules (numpy, zarr or dask; read
            ``amondask.models.predict-block-rows`` rows at a time).
        element_counts
            Precomputed kernel only: (n_query, n_elements) counts, columns as in ``fit``.
        self_kernel_values
            Precomputed kernel only: (n_query,) k(x, x) of each query, for the uncertainty.
        return_dataset
            Return an :class:`xarray.Dataset` (see :func:`amondask.models.prediction_dataset`)
            with energy, uncertainty, coverage and provenance instead of the (n_query,) array.
        query_ids
            Ids of the queries in the dataset (default: the molecules' ``id`` or positions).
        """
        self._check_fitted()
        if self.kernel == "precomputed":
            parts = self._predict_precomputed(X, element_counts, self_kernel_values, return_dataset)
            ids = list(range(parts["energy"].shape[0])) if query_ids is None else query_ids
        else:
            if element_counts is not None or self_kernel_values is not None:
                raise ModelError(
                    "element_counts/self_kernel_values are only for kernel='precomputed'"
                )
            molecules = list(X)
            parts = self._predict_molecules(molecules, return_dataset)
            ids = (
                [molecule_id(m, i) for i, m in enumerate(molecules)]
                if query_ids is None
                else query_ids
            )
        if not return_dataset:
            return parts["energy"]
        from amondask.models.dataset import prediction_dataset

        return prediction_dataset(
            query_ids=[str(i) for i in ids],
            energy_hartree=parts["energy"],
            uncertainty_hartree=parts["uncertainty"],
            covered=parts["covered"],
            n_train=np.full(parts["energy"].shape[0], self.n_train_),
            protocol="global",
            baseline_hartree=parts["baseline"],
            atom_similarity=parts.get("similarity"),
            attrs=self._dataset_attrs(),
        )

    def _dataset_attrs(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "alpha": float(self.alpha),
            "baseline": str(self.baseline),
            "coverage_threshold": float(
                config.get("models.coverage-threshold", self.coverage_threshold)
            ),
        }

    def _baseline_part(self, counts: np.ndarray | None, n_query: int) -> np.ndarray:
        if self.baseline_coef_ is None:
            return np.zeros(n_query)
        return counts @ self.baseline_coef_

    def _posterior_variance(self, query_kernel: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
        """(n_query,) s^2 (k(x, x) - k_x^T (K + lambda I)^-1 k_x), clipped at 0; NaN without a
        factor or k(x, x)."""
        n_query = query_kernel.shape[0]
        if self.train_factor_ is None or diagonal is None:
            return np.full(n_query, np.nan)
        half = scipy.linalg.solve_triangular(
            self.train_factor_, query_kernel.T, lower=True, check_finite=False
        )
        reduced = diagonal - np.einsum("ij,ij->j", half, half)
        return self.signal_variance_ * np.maximum(reduced, 0.0)

    def _predict_precomputed(
        self, X: Any, element_counts: Any, diagonal: Any, with_details: bool
    ) -> dict[str, np.ndarray]:
        shape = tuple(int(s) for s in getattr(X, "shape", np.shape(X)))
        if len(shape) != 2 or shape[1] != self.n_train_:
            raise ModelError(
                f"predict needs the query kernel K (n_query, n_train = {self.n_train_}), got "
                f"shape {shape}"
            )
        n_query = shape[0]
        counts = None
        if element_counts is not None:
            counts = np.asarray(element_counts, dtype=np.float64)
            totals = self.train_element_totals_
            n_columns = None if totals is None else len(totals)
            wrong_width = n_columns is not None and counts.shape[1] != n_columns
            if counts.ndim != 2 or counts.shape[0] != n_query or wrong_width:
                raise ModelError(
                    f"element_counts must be (n_query = {n_query}, n_elements = {n_columns}) "
                    f"with the columns of fit, got {counts.shape}"
                )
        elif self.baseline_coef_ is not None:
            raise ModelError(
                "this model has a per-element baseline: predict(K_test, element_counts=...) "
                "needs the queries' element counts"
            )
        if diagonal is not None:
            diagonal = np.asarray(diagonal, dtype=np.float64).reshape(-1)
            if diagonal.shape[0] != n_query:
                raise ModelError(f"self_kernel_values must be ({n_query},), got {diagonal.shape}")
        X = X if _is_lazy(X) else np.asarray(X, dtype=np.float64)
        kernel_part = np.empty(n_query)
        variance = np.full(n_query, np.nan)
        block_rows = int(config.get("models.predict-block-rows"))
        for start, rows in _row_blocks(X, block_rows):
            stop = start + rows.shape[0]
            kernel_part[start:stop] = rows @ self.dual_coef_
            if with_details and diagonal is not None:
                variance[start:stop] = self._posterior_variance(rows, diagonal[start:stop])
        baseline = self._baseline_part(counts, n_query)
        covered = np.ones(n_query, dtype=bool)
        if counts is not None and self.train_element_totals_ is not None:
            covered = ~np.any((counts > 0) & (self.train_element_totals_[None, :] == 0), axis=1)
        energy = kernel_part + baseline
        uncertainty = np.sqrt(variance)
        for values in (energy, baseline, uncertainty):
            values[~covered] = np.nan  # an element without training atoms: no prediction
        return {
            "energy": energy,
            "baseline": baseline,
            "uncertainty": uncertainty,
            "covered": covered,
        }

    def _predict_molecules(self, molecules: list[Any], with_details: bool) -> dict[str, np.ndarray]:
        basis = self._basis()
        blocks, unknown, numbers_list = basis.represent(molecules)
        blocks = {z: b for z, b in blocks.items() if z in self.sigma_}
        n_query = len(molecules)
        query_kernel, similarity = cross_kernel_with_similarity(
            blocks,
            self.train_blocks_,
            sigma=self.sigma_,
            kernel=self.kernel,
            n_row_molecules=n_query,
            n_col_molecules=self.n_train_,
        )
        # atoms of a basis element that training lacks (given mbtypes wider than training)
        extra = np.zeros(n_query, dtype=np.int64)
        for numbers_index, numbers in enumerate(numbers_list):
            extra[numbers_index] = int(np.sum(~np.isin(numbers, self.elements_)))
        similarity[extra > 0] = 0.0
        counts = element_count_matrix(numbers_list, self.elements_)
        baseline = self._baseline_part(counts, n_query)
        energy = query_kernel @ self.dual_coef_ + baseline
        missing_element = (unknown > 0) | (extra > 0)
        energy[missing_element] = np.nan  # an element without training atoms: no prediction
        baseline[missing_element] = np.nan
        parts = {"energy": energy, "baseline": baseline}
        if with_details:
            diagonal = self_kernel(
                blocks, sigma=self.sigma_, kernel=self.kernel, n_molecules=n_query
            )
            uncertainty = np.sqrt(self._posterior_variance(query_kernel, diagonal))
            uncertainty[missing_element] = np.nan
            threshold = float(config.get("models.coverage-threshold", self.coverage_threshold))
            parts.update(
                uncertainty=uncertainty,
                covered=~missing_element & (similarity >= threshold),
                similarity=similarity,
            )
        return parts

    # ---- scores ------------------------------------------------------------------------------
    def score(self, X: Any, y: Any, **predict_options: Any) -> float:
        """R^2 of the predicted energies (scikit-learn's regressor score: higher is better, so
        ``cross_val_score`` and ``GridSearchCV`` work unchanged); see
        :meth:`mae_kcal_per_mol` for the error chemists read."""
        return r2_score(y, self.predict(X, **predict_options))

    def mae_kcal_per_mol(self, X: Any, y: Any, **predict_options: Any) -> float:
        """Mean absolute error of the predicted energies in kcal/mol (y in hartree)."""
        return mean_absolute_error_kcal_per_mol(y, self.predict(X, **predict_options))

    # ---- hyperparameters ---------------------------------------------------------------------
    def cv(self, X: Any, y: Any, **options: Any):
        """k-fold cross-validation over sigma scale factors and lambdas; see
        :func:`amondask.models.cross_validate` (this estimator's parameters are the base)."""
        from amondask.models.cv import cross_validate

        return cross_validate(self, X, y, **options)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, group: Any, *, overwrite: bool = False) -> None:
        """Write the fitted model into a zarr group (e.g. ``models/<name>/`` of the workspace).

        Stored: ``attrs["amondask_model"]`` (format, parameters, mbtypes, sigmas, elements,
        n_train, signal variance, solve info), arrays ``dual_coef``, ``baseline_coef``,
        ``train_element_totals``, ``train_factor`` (when kept) and the training representation
        in ``train/`` (:func:`amondask.kernels.write_element_blocks` layout).
        """
        from amondask.models.persist import save_model

        self._check_fitted()
        save_model(self, group, overwrite=overwrite)

    @classmethod
    def load(cls, group: Any) -> AmonKRR:
        """The model saved in ``group`` by :meth:`save`, ready to predict."""
        from amondask.models.persist import load_model

        return load_model(cls, group)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else False
    except (ValueError, TypeError):
        return False


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON values: tuples become lists, a sigma dict gets string keys."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, Mapping):
            value = {str(int(k)): float(v) for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[name] = value
    json.dumps(out)  # fail here, not inside zarr, when a value is not JSON
    return out
