"""AmonKRR.save / AmonKRR.load through a directory store and a memory store: identical
predictions, uncertainties and coverage; precomputed models too; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from test_models_data import qm9_small, qm9_split

from amondask.errors import ModelError
from amondask.models import AmonKRR


@pytest.fixture(scope="module")
def fitted():
    train, y_train, test, _ = qm9_split(50, 12, seed=2)
    molecules, _ = qm9_small()
    fluorine = next(m for m in molecules if 9 in m[0])
    if any(9 in n for n, _ in train):  # keep one query with an element training lacks
        keep = [i for i, (n, _) in enumerate(train) if 9 not in n]
        train, y_train = [train[i] for i in keep], y_train[keep]
    model = AmonKRR(sigma="auto", alpha=1e-5).fit(train, y_train)
    return model, test + [fluorine]


def stores(tmp_path):
    return {
        "directory": zarr.storage.LocalStore(str(tmp_path / "workspace.zarr")),
        "memory": zarr.storage.MemoryStore(),
    }


@pytest.mark.parametrize("kind", ["directory", "memory"])
def test_round_trip_gives_identical_predictions(fitted, tmp_path, kind):
    model, queries = fitted
    root = zarr.open_group(stores(tmp_path)[kind], mode="w")
    model.save(root.require_group("models/default"))
    if kind == "directory":  # reopen from disk: nothing kept in memory
        root = zarr.open_group(str(tmp_path / "workspace.zarr"), mode="r")
    loaded = AmonKRR.load(root["models/default"])
    assert loaded.get_params() == model.get_params()
    assert loaded.sigma_ == model.sigma_ and loaded.mbtypes_ == model.mbtypes_
    expected = model.predict(queries, return_dataset=True)
    got = loaded.predict(queries, return_dataset=True)
    np.testing.assert_array_equal(got.energy.values, expected.energy.values)
    np.testing.assert_array_equal(got.uncertainty.values, expected.uncertainty.values)
    np.testing.assert_array_equal(got.covered.values, expected.covered.values)
    assert not got.covered.values[-1]  # the fluorine query
    assert got.attrs == expected.attrs


def test_precomputed_model_round_trip(tmp_path):
    train, y, test, _ = qm9_split(30, 5, seed=4)
    model = AmonKRR().fit(train, y)
    from amondask.kernels import local_kernel
    from amondask.models.baseline import element_count_matrix
    from amondask.represent import element_blocks

    blocks = element_blocks(train, model.mbtypes_, dgrid=(0.04, 0.04))
    test_blocks = element_blocks(test, model.mbtypes_, dgrid=(0.04, 0.04))
    kernel = local_kernel(blocks, sigma=model.sigma_)
    test_kernel = local_kernel(test_blocks, blocks, sigma=model.sigma_, n_row_molecules=5)
    counts = element_count_matrix([n for n, _ in train], model.elements_)
    test_counts = element_count_matrix([n for n, _ in test], model.elements_)
    precomputed = AmonKRR(kernel="precomputed").fit(
        kernel, y, element_counts=counts, elements=model.elements_
    )
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="w")
    precomputed.save(group)
    loaded = AmonKRR.load(zarr.open_group(str(tmp_path / "m.zarr"), mode="r"))
    assert loaded.train_blocks_ is None and loaded.elements_.tolist() == model.elements_.tolist()
    np.testing.assert_array_equal(
        loaded.predict(test_kernel, element_counts=test_counts),
        precomputed.predict(test_kernel, element_counts=test_counts),
    )


def test_save_refuses_to_overwrite_and_load_explains(fitted):
    model, _ = fitted
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    model.save(group)
    with pytest.raises(ModelError, match="overwrite=True"):
        model.save(group)
    model.save(group, overwrite=True)
    empty = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    with pytest.raises(ModelError, match="save one with"):
        AmonKRR.load(empty)
    with pytest.raises(ModelError, match="not fitted"):
        AmonKRR().save(empty)


def test_a_save_over_a_model_that_dies_midway_leaves_no_model(fitted, tmp_path, monkeypatch):
    """Overwriting: killed after the old arrays are gone, the group must not claim a model."""
    from amondask.models import persist

    model, _ = fitted
    root = zarr.open_group(str(tmp_path / "w.zarr"), mode="w")
    model.save(root.require_group("models/m"))
    real_write, calls = persist._write, []

    def dies_on_second_array(group, name, values):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while saving")
        real_write(group, name, values)

    monkeypatch.setattr(persist, "_write", dies_on_second_array)
    with pytest.raises(KeyboardInterrupt):
        persist.save_model(model, root["models/m"], overwrite=True)
    reopened = zarr.open_group(str(tmp_path / "w.zarr"), mode="r")
    with pytest.raises(ModelError, match="holds no saved model"):
        AmonKRR.load(reopened["models/m"])
