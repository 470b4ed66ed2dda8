"""AmonKRR against independent references: scikit-learn's KernelRidge on the same kernel, an
explicit least-squares baseline, the GP posterior formula with an explicit inverse, and a real
accuracy check on QM9 (U0 of molecules with <= 6 heavy atoms)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from test_models_data import qm9_small, qm9_split

from amondask.errors import ModelError, NotFittedError
from amondask.kernels import element_sigmas, local_kernel
from amondask.models import KCAL_PER_MOL_PER_HARTREE, AmonKRR
from amondask.represent import element_blocks, slatm_mbtypes

sklearn_kernel_ridge = pytest.importorskip("sklearn.kernel_ridge")
AUTHORS_DGRID = (0.04, 0.04)


@pytest.fixture(scope="module")
def small_set():
    """60 training and 15 test QM9 molecules with the authors' kernel, computed here with the
    representation and kernel modules directly (not through AmonKRR)."""
    train, y_train, test, y_test = qm9_split(60, 15, seed=1)
    mbtypes = slatm_mbtypes([n for n, _ in train])
    train_blocks = element_blocks(train, mbtypes, dgrid=AUTHORS_DGRID)
    sigma = element_sigmas(train_blocks)
    k_train = local_kernel(train_blocks, sigma=sigma)
    test_blocks = element_blocks(test, mbtypes, dgrid=AUTHORS_DGRID)
    k_test = local_kernel(test_blocks, train_blocks, sigma=sigma, n_row_molecules=len(test))
    k_test_self = np.diag(local_kernel(test_blocks, sigma=sigma))
    return {
        "train": train,
        "y_train": y_train,
        "test": test,
        "y_test": y_test,
        "mbtypes": mbtypes,
        "sigma": sigma,
        "k_train": k_train,
        "k_test": k_test,
        "k_test_self": k_test_self,
    }


def explicit_counts(molecules, elements):
    return np.array([[list(n).count(z) for z in elements] for n, _ in molecules], dtype=float)


def test_precomputed_equals_sklearn_kernel_ridge(small_set):
    k_train, k_test, y = small_set["k_train"], small_set["k_test"], small_set["y_train"]
    reference = sklearn_kernel_ridge.KernelRidge(alpha=1e-4, kernel="precomputed").fit(k_train, y)
    model = AmonKRR(kernel="precomputed", baseline=None, solver="scipy").fit(k_train, y)
    np.testing.assert_allclose(model.dual_coef_, reference.dual_coef_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.predict(k_test), reference.predict(k_test), rtol=1e-8)


def test_molecules_equal_precomputed_and_sklearn(small_set):
    """The molecule path computes the same kernel (authors' sigma_Z, dgrid 0.04) itself."""
    y = small_set["y_train"]
    model = AmonKRR(baseline=None).fit(small_set["train"], y)
    assert model.sigma_ == pytest.approx(small_set["sigma"], rel=1e-12)
    reference = sklearn_kernel_ridge.KernelRidge(alpha=1e-4, kernel="precomputed")
    reference.fit(small_set["k_train"], y)
    np.testing.assert_allclose(
        model.predict(small_set["test"]), reference.predict(small_set["k_test"]), rtol=1e-8
    )


def test_baseline_is_the_explicit_least_squares_fit(small_set):
    train, y = small_set["train"], small_set["y_train"]
    model = AmonKRR().fit(train, y)
    elements = sorted({int(z) for n, _ in train for z in n})
    assert model.elements_.tolist() == elements
    counts = explicit_counts(train, elements)
    coefficients = np.linalg.lstsq(counts, y, rcond=None)[0]
    np.testing.assert_allclose(model.baseline_coef_, coefficients, rtol=1e-10)
    # the kernel part is sklearn's KRR on what the baseline leaves
    residual_model = sklearn_kernel_ridge.KernelRidge(alpha=1e-4, kernel="precomputed")
    residual_model.fit(small_set["k_train"], y - counts @ coefficients)
    expected = residual_model.predict(small_set["k_test"]) + (
        explicit_counts(small_set["test"], elements) @ coefficients
    )
    np.testing.assert_allclose(model.predict(small_set["test"]), expected, rtol=1e-10)


def test_precomputed_with_baseline_equals_molecules(small_set):
    elements = sorted({int(z) for n, _ in small_set["train"] for z in n})
    model = AmonKRR(kernel="precomputed").fit(
        small_set["k_train"],
        small_set["y_train"],
        element_counts=explicit_counts(small_set["train"], elements),
        elements=elements,
    )
    from_molecules = AmonKRR().fit(small_set["train"], small_set["y_train"])
    np.testing.assert_allclose(
        model.predict(
            small_set["k_test"], element_counts=explicit_counts(small_set["test"], elements)
        ),
        from_molecules.predict(small_set["test"]),
        rtol=1e-10,
    )


def test_laplacian_and_fixed_sigma_equal_sklearn(small_set):
    train, test, y = small_set["train"], small_set["test"], small_set["y_train"]
    sigma = {z: 3.0 * s for z, s in small_set["sigma"].items()}
    model = AmonKRR(kernel="laplacian", sigma=sigma, baseline=None, alpha=1e-6).fit(train, y)
    train_blocks = element_blocks(train, small_set["mbtypes"], dgrid=AUTHORS_DGRID)
    test_blocks = element_blocks(test, small_set["mbtypes"], dgrid=AUTHORS_DGRID)
    k_train = local_kernel(train_blocks, sigma=sigma, kernel="laplacian")
    k_test = local_kernel(
        test_blocks, train_blocks, sigma=sigma, kernel="laplacian", n_row_molecules=len(test)
    )
    reference = sklearn_kernel_ridge.KernelRidge(alpha=1e-6, kernel="precomputed").fit(k_train, y)
    np.testing.assert_allclose(model.predict(test), reference.predict(k_test), rtol=1e-8)


def test_precomputed_zarr_and_dask_kernels_equal_numpy(small_set):
    k_train, k_test, y = small_set["k_train"], small_set["k_test"], small_set["y_train"]
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    stored = group.create_array("K", shape=k_train.shape, dtype="float64", chunks=(16, 16))
    stored[...] = k_train
    dense = AmonKRR(kernel="precomputed", baseline=None, solver="scipy").fit(k_train, y)
    from_zarr = AmonKRR(kernel="precomputed", baseline=None, solver="scipy").fit(stored, y)
    lazy_test = da.from_array(k_test, chunks=(4, 16))
    np.testing.assert_allclose(from_zarr.dual_coef_, dense.dual_coef_, rtol=1e-10)
    np.testing.assert_allclose(from_zarr.predict(lazy_test), dense.predict(k_test), rtol=1e-10)


def test_uncertainty_is_the_gp_posterior_std(small_set):
    k_train, k_test, y = small_set["k_train"], small_set["k_test"], small_set["y_train"]
    model = AmonKRR().fit(small_set["train"], y)
    dataset = model.predict(small_set["test"], return_dataset=True)
    # explicit formula with an explicit inverse
    elements = model.elements_.tolist()
    residual = y - explicit_counts(small_set["train"], elements) @ model.baseline_coef_
    inverse = np.linalg.inv(k_train + 1e-4 * np.eye(len(y)))
    signal_variance = residual @ inverse @ residual / len(y)
    variance = small_set["k_test_self"] - np.einsum("qi,ij,qj->q", k_test, inverse, k_test)
    assert model.signal_variance_ == pytest.approx(signal_variance, rel=1e-8)
    # k(x,x) - k^T (K + lambda I)^-1 k cancels digits of k(x,x) (~100 here): compare on that scale
    ours = dataset.uncertainty.values**2 / model.signal_variance_
    np.testing.assert_allclose(ours, variance, atol=1e-9 * small_set["k_test_self"].max())
    assert (variance > 1e-6 * small_set["k_test_self"]).all()  # the check is not vacuous
    assert dataset.uncertainty.attrs["units"] == "hartree"
    # at a training point k - k^T (K + lambda I)^-1 k = lambda e^T K (K + lambda I)^-1 e <= lambda
    on_train = model.predict(small_set["train"][:10], return_dataset=True).uncertainty.values
    assert (on_train <= np.sqrt(model.signal_variance_ * 1e-4) * (1 + 1e-6)).all()
    assert on_train.max() < np.median(dataset.uncertainty.values)


def test_uncertainty_factor_limit_and_one_thread_blas_above_the_threshold(small_set, monkeypatch):
    """With a solver that keeps no factor (PCG), the model factors K + lambda I itself: skipped
    above ``uncertainty-max-train`` (NaN uncertainty, same energies); above
    ``solve.single-thread-blas-above`` with BLAS limited to one thread (the threaded OpenBLAS
    Cholesky has segfaulted at n >= 16000); the uncertainty is the same."""
    import dask
    import scipy.linalg
    from threadpoolctl import threadpool_info, threadpool_limits

    from amondask.models import krr

    threads_seen, inside_factor = [], []
    cholesky = scipy.linalg.cholesky
    own_factor = krr.AmonKRR._factor

    def recording_cholesky(*args, **kwargs):  # PCG's preconditioner factors too: not counted
        if inside_factor:
            blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
            threads_seen.append(max(blas))
        return cholesky(*args, **kwargs)

    def recording_factor(self, train_kernel):
        inside_factor.append(True)
        try:
            return own_factor(self, train_kernel)
        finally:
            inside_factor.clear()

    monkeypatch.setattr(scipy.linalg, "cholesky", recording_cholesky)
    monkeypatch.setattr(krr.AmonKRR, "_factor", recording_factor)
    elements = sorted({int(z) for numbers, _ in small_set["train"] for z in numbers})
    n = len(small_set["y_train"])
    settings = {
        "guarded": {"uncertainty-max-train": n, "single-thread-blas-above": n - 1},
        "unguarded": {"uncertainty-max-train": n, "single-thread-blas-above": n},
        "skipped": {"uncertainty-max-train": n - 1, "single-thread-blas-above": n},
    }
    threads, predictions = {}, {}
    for name, values in settings.items():
        threads_seen.clear()
        with (
            threadpool_limits(limits=2, user_api="blas"),
            dask.config.set(
                {
                    "amondask.models.uncertainty-max-train": values["uncertainty-max-train"],
                    "amondask.solve.single-thread-blas-above": values["single-thread-blas-above"],
                }
            ),
        ):
            model = AmonKRR(kernel="precomputed", solver="pcg").fit(
                small_set["k_train"],
                small_set["y_train"],
                element_counts=explicit_counts(small_set["train"], elements),
            )
        threads[name] = list(threads_seen)
        predictions[name] = model.predict(
            small_set["k_test"],
            element_counts=explicit_counts(small_set["test"], elements),
            self_kernel_values=small_set["k_test_self"],
            return_dataset=True,
        )
    assert threads["guarded"] == [1]
    assert threads["unguarded"] == [2] and threads["skipped"] == []
    guarded = predictions["guarded"].uncertainty.values
    assert (guarded > 0).all()
    np.testing.assert_allclose(guarded, predictions["unguarded"].uncertainty.values, rtol=1e-8)
    assert np.isnan(predictions["skipped"].uncertainty.values).all()
    np.testing.assert_allclose(
        predictions["skipped"].energy.values, predictions["guarded"].energy.values, rtol=1e-12
    )


def test_the_in_memory_solves_factor_is_reused_for_the_uncertainty(small_set, monkeypatch):
    """The scipy solve keeps its Cholesky factor (upper triangle zero, L L^T = K + lambda I);
    the model uses it instead of factoring K + lambda I a second time."""
    from amondask.solve import solve

    k_train, y = small_set["k_train"], small_set["y_train"]
    result = solve(k_train, y, 1e-4, method="scipy", keep_factor=True)
    lower = result.factor
    assert lower is not None
    np.testing.assert_array_equal(np.triu(lower, 1), 0.0)
    np.testing.assert_allclose(lower @ lower.T, k_train + 1e-4 * np.eye(len(y)), atol=1e-9)
    assert solve(k_train, y, 1e-4, method="scipy").factor is None  # not asked: not kept
    assert solve(k_train, y, 1e-4, method="pcg", keep_factor=True).factor is None

    from amondask.models import krr

    calls = []
    own_factor = krr.AmonKRR._factor
    monkeypatch.setattr(
        krr.AmonKRR, "_factor", lambda self, kernel: calls.append(1) or own_factor(self, kernel)
    )
    reused = AmonKRR(kernel="precomputed", baseline=None, solver="scipy").fit(k_train, y)
    assert calls == []
    own = AmonKRR(kernel="precomputed", baseline=None, solver="pcg").fit(k_train, y)
    assert calls == [1]
    np.testing.assert_allclose(reused.train_factor_, own.train_factor_, rtol=1e-10, atol=1e-12)


def test_uncertainty_factor_that_does_not_fit_in_memory_is_skipped_with_a_warning(
    small_set, monkeypatch
):
    import psutil

    class Tight:
        available = 8 * len(small_set["y_train"]) ** 2  # needs 2x that (K is kept intact)

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())
    with pytest.warns(UserWarning, match="no posterior uncertainty.*GiB"):
        model = AmonKRR(kernel="precomputed", baseline=None, solver="pcg").fit(
            small_set["k_train"], small_set["y_train"]
        )
    assert model.train_factor_ is None
    monkeypatch.setattr(Tight, "available", 10**12)
    assert (
        AmonKRR(kernel="precomputed", baseline=None, solver="pcg")
        .fit(small_set["k_train"], small_set["y_train"])
        .train_factor_
        is not None
    )


def test_precomputed_uncertainty_and_coverage(small_set):
    elements = sorted({int(z) for n, _ in small_set["train"] for z in n})
    model = AmonKRR(kernel="precomputed").fit(
        small_set["k_train"],
        small_set["y_train"],
        element_counts=explicit_counts(small_set["train"], elements),
    )
    counts = explicit_counts(small_set["test"], elements)
    dataset = model.predict(
        small_set["k_test"],
        element_counts=counts,
        self_kernel_values=small_set["k_test_self"],
        return_dataset=True,
        query_ids=[f"q{i}" for i in range(len(counts))],
    )
    from_molecules = AmonKRR().fit(small_set["train"], small_set["y_train"])
    expected = from_molecules.predict(small_set["test"], return_dataset=True)
    np.testing.assert_allclose(dataset.uncertainty.values, expected.uncertainty.values, rtol=1e-8)
    assert list(dataset.query_id.values[:2]) == ["q0", "q1"]
    assert np.isnan(dataset.atom_similarity.values).all()
    # an element with no training atom makes the query uncovered
    counts_with_new = np.column_stack([counts, np.zeros(len(counts))])
    counts_with_new[0, -1] = 1
    model_new = AmonKRR(kernel="precomputed").fit(
        small_set["k_train"],
        small_set["y_train"],
        element_counts=np.column_stack(
            [explicit_counts(small_set["train"], elements), np.zeros(len(small_set["train"]))]
        ),
    )
    flags = model_new.predict(
        small_set["k_test"], element_counts=counts_with_new, return_dataset=True
    ).covered.values
    assert not flags[0] and flags[1:].all()


def test_query_with_an_element_absent_from_training_is_flagged_not_a_crash():
    molecules, energies = qm9_small()
    without_fluorine = [i for i, (n, _) in enumerate(molecules) if 9 not in n][:80]
    with_fluorine = [i for i, (n, _) in enumerate(molecules) if 9 in n and 6 in n][:3]
    train = [molecules[i] for i in without_fluorine]
    model = AmonKRR().fit(train, energies[without_fluorine])
    assert 9 not in model.elements_
    queries = [molecules[i] for i in with_fluorine] + [molecules[without_fluorine[0]]]
    dataset = model.predict(queries, return_dataset=True)
    assert dataset.covered.values.tolist() == [False, False, False, True]
    for name in ("energy", "uncertainty", "baseline_energy"):
        values = dataset[name].values
        assert np.isnan(values[:3]).all() and np.isfinite(values[3]), name
    assert np.isnan(model.predict(queries)[:3]).all()
    # the known atoms are represented as if the F atoms were not there (blocks without F only
    # see the other atoms): the same rows as the molecules with F removed
    blocks, unknown, _ = model._basis().represent(queries)
    assert unknown.tolist() == [int(np.sum(n == 9)) for n, _ in queries]
    stripped = [(n[n != 9], p[n != 9]) for n, p in queries]
    expected = element_blocks(stripped, model.mbtypes_, dgrid=AUTHORS_DGRID)
    for z in model.elements_.tolist():
        np.testing.assert_array_equal(blocks[z].molecule_index, expected[z].molecule_index)
        np.testing.assert_allclose(blocks[z].x, expected[z].x, rtol=1e-12, atol=1e-300)


def test_sklearn_conventions(small_set):
    sklearn_base = pytest.importorskip("sklearn.base")
    model = AmonKRR(alpha=1e-3, sigma=2.0)
    assert model.get_params()["alpha"] == 1e-3
    assert model.set_params(alpha=1e-2) is model and model.alpha == 1e-2
    clone = sklearn_base.clone(model)
    assert clone.get_params() == model.get_params() and clone is not model
    assert "alpha=0.01" in repr(model)
    with pytest.raises(NotFittedError, match="fit"):
        model.predict(small_set["test"])
    with pytest.raises(ModelError, match="no parameter"):
        model.set_params(lamda=1.0)
    with pytest.raises(ModelError, match="kernel"):
        AmonKRR(kernel="rbf").fit(small_set["train"], small_set["y_train"])
    with pytest.raises(ModelError, match="precomputed"):
        AmonKRR().fit(small_set["k_train"], small_set["y_train"])
    with pytest.raises(ModelError, match="element_counts"):
        AmonKRR(kernel="precomputed").fit(small_set["k_train"], small_set["y_train"])
    fitted = AmonKRR().fit(small_set["train"], small_set["y_train"])
    assert fitted.fit(small_set["train"], small_set["y_train"]) is fitted


def test_score_is_r2_and_mae_in_kcal_per_mol(small_set):
    metrics = pytest.importorskip("sklearn.metrics")
    model = AmonKRR().fit(small_set["train"], small_set["y_train"])
    predicted = model.predict(small_set["test"])
    y = small_set["y_test"]
    assert model.score(small_set["test"], y) == pytest.approx(metrics.r2_score(y, predicted))
    assert model.mae_kcal_per_mol(small_set["test"], y) == pytest.approx(
        metrics.mean_absolute_error(y, predicted) * KCAL_PER_MOL_PER_HARTREE
    )


def test_qm9_accuracy_well_below_the_baseline_alone():
    """200 QM9 molecules (<= 6 heavy atoms) predict 50 others far better than the per-element
    baseline alone (measured: KRR 2.0 kcal/mol vs baseline 14.5)."""
    train, y_train, test, y_test = qm9_split(200, 50, seed=0)
    model = AmonKRR().fit(train, y_train)
    dataset = model.predict(test, return_dataset=True)
    krr_error = np.abs(dataset.energy.values - y_test) * KCAL_PER_MOL_PER_HARTREE
    baseline_error = np.abs(dataset.baseline_energy.values - y_test) * KCAL_PER_MOL_PER_HARTREE
    assert krr_error.mean() < 0.3 * baseline_error.mean()
    # the uncertainty ranks the errors: the larger half of it holds most of the error
    ranked = np.argsort(dataset.uncertainty.values)
    assert krr_error[ranked[25:]].sum() > 2 * krr_error[ranked[:25]].sum()


def test_molecule_objects_and_their_ids(small_set):
    from amondask.chem import Molecule

    def as_molecule(pair, name):
        numbers, positions = pair
        return Molecule(id=name, numbers=numbers, bonds=np.zeros((0, 3)), positions=positions)

    train = [as_molecule(p, f"t{i}") for i, p in enumerate(small_set["train"])]
    test = [as_molecule(p, f"qm9-{i}") for i, p in enumerate(small_set["test"])]
    model = AmonKRR().fit(train, small_set["y_train"])
    dataset = model.predict(test, return_dataset=True)
    assert dataset.query_id.values.tolist() == [m.id for m in test]
    np.testing.assert_array_equal(
        dataset.energy.values,
        AmonKRR().fit(small_set["train"], small_set["y_train"]).predict(small_set["test"]),
    )
    graph_only = Molecule(id="no-3d", numbers=[6, 1, 1, 1, 1], bonds=np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no 3D positions"):
        model.predict([graph_only])


def test_scikit_learn_model_selection_accepts_the_estimator(small_set):
    model_selection = pytest.importorskip("sklearn.model_selection")
    k_train, y = small_set["k_train"], small_set["y_train"]
    folds = model_selection.KFold(3)
    # precomputed: scikit-learn must slice rows and columns (pairwise tag), as for KernelRidge
    ours = model_selection.cross_val_score(
        AmonKRR(kernel="precomputed", baseline=None), k_train, y, cv=folds
    )
    reference = model_selection.cross_val_score(
        sklearn_kernel_ridge.KernelRidge(alpha=1e-4, kernel="precomputed"), k_train, y, cv=folds
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-8)
    search = model_selection.GridSearchCV(AmonKRR(), {"alpha": [1e-6, 1e-4]}, cv=folds)
    search.fit(small_set["train"][:30], y[:30])
    assert search.best_params_["alpha"] in (1e-6, 1e-4)
