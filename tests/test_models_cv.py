"""Cross-validation of AmonKRR against a brute-force loop: one fit per (sigma, lambda, fold)
with kernels computed from scratch by amondask.kernels.local_kernel."""

from __future__ import annotations

import dask.config
import numpy as np
import pytest
from test_models_data import qm9_split

from amondask.errors import ModelError
from amondask.kernels import element_sigmas, local_kernel
from amondask.models import KCAL_PER_MOL_PER_HARTREE, AmonKRR, fold_assignment
from amondask.models.baseline import element_count_matrix
from amondask.represent import element_blocks, slatm_mbtypes

SCALES = (0.5, 1.0, 4.0)
ALPHAS = (1e-8, 1e-5, 1e-2)
N_FOLDS = 3


@pytest.fixture(scope="module")
def data():
    train, y, _, _ = qm9_split(45, 0, seed=3)
    return train, y


def brute_force_table(molecules, y, kernel_name, folds):
    """{(scale, alpha): mean MAE} from independent fits of AmonKRR(kernel='precomputed')."""
    mbtypes = slatm_mbtypes([n for n, _ in molecules])
    blocks = element_blocks(molecules, mbtypes, dgrid=(0.04, 0.04))
    base = element_sigmas(blocks, kernel=kernel_name)
    elements = sorted({int(z) for n, _ in molecules for z in n})
    counts = element_count_matrix([n for n, _ in molecules], elements)
    table = {}
    for scale in SCALES:
        sigma = {z: scale * s for z, s in base.items()}
        kernel = local_kernel(blocks, sigma=sigma, kernel=kernel_name)
        for alpha in ALPHAS:
            errors = []
            for fold in range(N_FOLDS):
                train, held_out = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
                # held-out molecules with an element the training part lacks are left out
                absent = counts[train].sum(axis=0) == 0
                held_out = [i for i in held_out if not (counts[i][absent] > 0).any()]
                model = AmonKRR(kernel="precomputed", alpha=alpha, solver="scipy")
                model.fit(kernel[np.ix_(train, train)], y[train], element_counts=counts[train])
                predicted = model.predict(
                    kernel[np.ix_(held_out, train)], element_counts=counts[held_out]
                )
                errors.append(np.mean(np.abs(predicted - y[held_out])) * KCAL_PER_MOL_PER_HARTREE)
            table[(scale, alpha)] = float(np.mean(errors))
    return table


@pytest.mark.parametrize("kernel_name", ["gaussian", "laplacian"])
def test_cv_table_and_choice_equal_a_brute_force_loop(data, kernel_name):
    molecules, y = data
    result = AmonKRR(kernel=kernel_name).cv(
        molecules, y, sigma_scales=SCALES, alphas=ALPHAS, n_folds=N_FOLDS, seed=5
    )
    folds = fold_assignment(len(y), N_FOLDS, seed=5)
    np.testing.assert_array_equal(result.folds, folds)
    expected = brute_force_table(molecules, y, kernel_name, folds)
    got = {(row.sigma_scale, row.alpha): row.mae_kcal_per_mol for row in result.table.itertuples()}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    best = min(expected, key=expected.get)
    assert (result.best_sigma_scale, result.best_alpha) == best
    assert len(set(np.round(list(expected.values()), 6))) > 3  # the grid really differs
    # the refitted best model has the chosen widths and lambda
    refit = result.best_estimator
    assert refit.alpha == best[1]
    base = AmonKRR(kernel=kernel_name).fit(molecules, y).sigma_
    assert refit.sigma_ == pytest.approx({z: best[0] * s for z, s in base.items()}, rel=1e-12)
    assert {f"fold_{k}" for k in range(N_FOLDS)} <= set(result.table.columns)


def test_cv_without_the_distance_cache_gives_the_same_table(data):
    molecules, y = data
    options = {"sigma_scales": SCALES, "alphas": ALPHAS, "n_folds": N_FOLDS, "refit": False}
    cached = AmonKRR().cv(molecules, y, **options)
    with dask.config.set({"amondask.models.cv-distance-cache-bytes": 0}):
        recomputed = AmonKRR().cv(molecules, y, **options)
    np.testing.assert_allclose(
        cached.table.mae_kcal_per_mol, recomputed.table.mae_kcal_per_mol, rtol=1e-8
    )
    assert cached.best_estimator is None


def test_cv_with_a_precomputed_kernel_is_over_lambda(data):
    molecules, y = data
    model = AmonKRR().fit(molecules, y)
    blocks = element_blocks(molecules, model.mbtypes_, dgrid=(0.04, 0.04))
    kernel = local_kernel(blocks, sigma=model.sigma_)
    counts = element_count_matrix([n for n, _ in molecules], model.elements_)
    from_kernel = AmonKRR(kernel="precomputed").cv(
        kernel, y, sigma_scales=(1.0,), alphas=ALPHAS, n_folds=N_FOLDS, element_counts=counts
    )
    from_molecules = AmonKRR().cv(
        molecules, y, sigma_scales=(1.0,), alphas=ALPHAS, n_folds=N_FOLDS, refit=False
    )
    np.testing.assert_allclose(
        from_kernel.table.mae_kcal_per_mol, from_molecules.table.mae_kcal_per_mol, rtol=1e-8
    )
    assert from_kernel.best_estimator.alpha == from_kernel.best_alpha
    with pytest.raises(ModelError, match="fixed widths"):
        AmonKRR(kernel="precomputed").cv(kernel, y, sigma_scales=(1.0, 2.0), element_counts=counts)


def test_molecules_with_an_element_absent_from_the_training_folds_are_left_out(data):
    molecules, y = data
    from test_models_data import qm9_small

    all_molecules, all_energies = qm9_small()
    fluorine = [i for i, (n, _) in enumerate(all_molecules) if 9 in n][:1]
    keep = [i for i, (n, _) in enumerate(molecules) if 9 not in n]
    with_one_f = [molecules[i] for i in keep] + [all_molecules[fluorine[0]]]
    energies = np.r_[y[keep], all_energies[fluorine]]
    result = AmonKRR().cv(
        with_one_f, energies, sigma_scales=(1.0,), alphas=ALPHAS, n_folds=N_FOLDS, refit=False
    )
    assert (result.table.n_excluded == 1).all()
    assert result.table.mae_kcal_per_mol.max() < 100  # not swamped by the lone F molecule
    without = AmonKRR().cv(
        with_one_f[:-1],
        energies[:-1],
        sigma_scales=(1.0,),
        alphas=ALPHAS,
        n_folds=N_FOLDS,
        refit=False,
    )
    assert (without.table.n_excluded == 0).all()


def test_fold_assignment():
    folds = fold_assignment(10, 3, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [3, 3, 4]
    np.testing.assert_array_equal(fold_assignment(6, 3, seed=None), [0, 0, 1, 1, 2, 2])
    with pytest.raises(ModelError, match="n_folds"):
        fold_assignment(3, 5)
