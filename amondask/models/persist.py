"""Save a fitted :class:`AmonKRR` to a zarr group and load it back (``models/<name>/``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from amondask.errors import ModelError
from amondask.kernels.blocked import open_element_blocks, write_element_blocks
from amondask.represent import ElementBlock

ARRAYS = ("dual_coef", "baseline_coef", "train_element_totals", "train_factor", "elements")
TRAIN_GROUP = "train"


def _write(group: zarr.Group, name: str, values: np.ndarray | None) -> None:
    if values is None:
        return
    values = np.asarray(values)
    chunks = values.shape if values.ndim < 2 else (min(values.shape[0], 2048), values.shape[1])
    array = group.create_array(
        name, shape=values.shape, dtype=values.dtype, chunks=chunks or (1,), overwrite=True
    )
    array[...] = values


def save_model(model: Any, group: zarr.Group, *, overwrite: bool = False) -> None:
    from amondask.models.krr import MODEL_ATTRIBUTE, MODEL_FORMAT, _json_params

    if MODEL_ATTRIBUTE in group.attrs and not overwrite:
        raise ModelError(
            f"zarr group {group.path!r} already holds a model; pass overwrite=True to replace it "
            "or save under another name"
        )
    # The attribute is what marks a model as saved: drop it before touching the arrays and
    # write it last, so a save killed midway leaves "no model" (refit), never a mismatch.
    if MODEL_ATTRIBUTE in group.attrs:
        del group.attrs[MODEL_ATTRIBUTE]
    for name in (*ARRAYS, TRAIN_GROUP):
        if name in group:
            del group[name]
    _write(group, "dual_coef", model.dual_coef_)
    _write(group, "baseline_coef", model.baseline_coef_)
    _write(group, "train_element_totals", model.train_element_totals_)
    _write(group, "train_factor", model.train_factor_)
    _write(group, "elements", model.elements_)
    if model.train_blocks_ is not None:
        write_element_blocks(
            group.require_group(TRAIN_GROUP), model.train_blocks_, n_molecules=model.n_train_
        )
    group.attrs[MODEL_ATTRIBUTE] = {
        "class": type(model).__name__,
        "format": MODEL_FORMAT,
        "params": _json_params(model.get_params()),
        "mbtypes": model.mbtypes_,
        "sigma": None
        if model.sigma_ is None
        else {str(z): float(s) for z, s in model.sigma_.items()},
        "n_train": int(model.n_train_),
        "signal_variance_hartree2": float(model.signal_variance_),
        "solve": model.solve_info_,
        "energy_units": "hartree",
    }


def load_model(cls: type, group: zarr.Group) -> Any:
    from amondask.models.krr import MODEL_ATTRIBUTE, MODEL_FORMAT

    meta = group.attrs.get(MODEL_ATTRIBUTE)
    if meta is None:
        raise ModelError(
            f"zarr group {group.path!r} holds no saved model (no attrs[{MODEL_ATTRIBUTE!r}]); "
            "save one with AmonKRR.save(group)"
        )
    if meta.get("format") != MODEL_FORMAT or meta.get("class") != cls.__name__:
        raise ModelError(
            f"group {group.path!r} holds a {meta.get('class')} model of format "
            f"{meta.get('format')}; this amondask reads {cls.__name__} format {MODEL_FORMAT}: "
            "refit and save the model again"
        )
    params = dict(meta["params"])
    for name in ("slatm_sigmas", "dgrid"):
        params[name] = tuple(params[name])
    if isinstance(params.get("sigma"), dict):
        params["sigma"] = {int(z): float(s) for z, s in params["sigma"].items()}
    model = cls(**params)

    def read(name: str) -> np.ndarray | None:
        return np.asarray(group[name][...]) if name in group else None

    model.dual_coef_ = read("dual_coef").astype(np.float64)
    model.baseline_coef_ = read("baseline_coef")
    model.train_element_totals_ = read("train_element_totals")
    model.train_factor_ = read("train_factor")
    model.elements_ = read("elements")
    model.mbtypes_ = meta["mbtypes"]
    model.sigma_ = None if meta["sigma"] is None else {int(z): s for z, s in meta["sigma"].items()}
    model.n_train_ = int(meta["n_train"])
    model.signal_variance_ = float(meta["signal_variance_hartree2"])
    model.solve_info_ = dict(meta["solve"])
    model.train_blocks_ = None
    if TRAIN_GROUP in group:
        blocks, _ = open_element_blocks(group[TRAIN_GROUP])
        model.train_blocks_ = {
            z: ElementBlock(np.asarray(b.x[...]), np.asarray(b.molecule_index[...]))
            for z, b in blocks.items()
        }
    return model
