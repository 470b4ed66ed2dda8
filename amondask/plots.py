"""Figures of an evaluation: the parity plot and the learning curve (PNG, matplotlib).

matplotlib is an optional dependency (``pip install "amondask[plot]"``); without it
:func:`plot_evaluation` raises a :class:`~amondask.errors.InputError` saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from amondask.errors import InputError
from amondask.models.metrics import KCAL_PER_MOL_PER_HARTREE

CHEMICAL_ACCURACY_KCAL_MOL = 1.0


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise InputError(
            'the plots need matplotlib: pip install "amondask[plot]" (or pass --no-plots)'
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_parity(dataset: Any, path: str | Path) -> Path:
    """Predicted against reference energy, both minus the per-element baseline (kcal/mol), one
    point per evaluated query; uncovered queries marked. Returns the PNG's path."""
    plt = _pyplot()
    baseline = dataset["baseline_energy"].values
    reference = (dataset["reference_energy"].values - baseline) * KCAL_PER_MOL_PER_HARTREE
    predicted = (dataset["predicted_energy"].values - baseline) * KCAL_PER_MOL_PER_HARTREE
    covered = dataset["covered"].values.astype(bool)
    shown = np.isfinite(reference) & np.isfinite(predicted)
    figure, axes = plt.subplots(figsize=(4.8, 4.6), dpi=120)
    for mask, label, marker in ((covered, "covered", "o"), (~covered, "not covered", "x")):
        chosen = shown & mask
        if chosen.any():
            axes.scatter(reference[chosen], predicted[chosen], s=16, marker=marker, label=label)
    if shown.any():
        lo = float(min(reference[shown].min(), predicted[shown].min()))
        hi = float(max(reference[shown].max(), predicted[shown].max()))
        pad = 0.05 * (hi - lo or 1.0)
        axes.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=0.8)
    a = dataset.attrs
    axes.set_xlabel("reference - baseline (kcal/mol)")
    axes.set_ylabel("predicted - baseline (kcal/mol)")
    axes.set_title(
        f"{a.get('protocol', '')} protocol: MAE {a.get('mae_kcal_mol', np.nan):.2f} kcal/mol "
        f"(n = {a.get('n_evaluated', int(shown.sum()))})",
        fontsize=9,
    )
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_learning_curve(dataset: Any, path: str | Path) -> Path:
    """MAE (kcal/mol, log scale) against the amon size N_I, with the baseline-only MAE and
    chemical accuracy (1 kcal/mol) for reference. Returns the PNG's path."""
    plt = _pyplot()
    if "n_heavy" not in dataset.coords:
        raise InputError("the evaluation has no learning curve (it was run without one)")
    n_heavy = dataset["n_heavy"].values
    mae = dataset["curve_mae"].values
    figure, axes = plt.subplots(figsize=(4.8, 3.8), dpi=120)
    finite = np.isfinite(mae) & (mae > 0)
    axes.plot(n_heavy[finite], mae[finite], "o-", label="amons of at most N_I heavy atoms")
    n_train = dataset["curve_n_train"].values[finite]
    for x, y, n in zip(n_heavy[finite], mae[finite], n_train, strict=True):
        axes.annotate(f"{n:.0f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    baseline = dataset.attrs.get("baseline_mae_kcal_mol")
    if baseline is not None and np.isfinite(baseline) and baseline > 0:
        axes.axhline(baseline, ls="--", color="grey", lw=0.8, label="per-element baseline alone")
    axes.axhline(CHEMICAL_ACCURACY_KCAL_MOL, ls=":", color="green", lw=0.8, label="1 kcal/mol")
    axes.set_yscale("log")
    axes.set_xticks(n_heavy)
    axes.set_xlabel("N_I (heavy atoms per amon)")
    axes.set_ylabel("MAE (kcal/mol)")
    axes.set_title(
        f"learning curve, {dataset.attrs.get('protocol', '')} protocol (numbers: training amons)",
        fontsize=9,
    )
    axes.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_evaluation(dataset: Any, prefix: str | Path) -> list[str]:
    """Both figures as ``<prefix>_parity.png`` and ``<prefix>_learning_curve.png`` (the latter
    only when the evaluation has a learning curve); returns the paths written."""
    prefix = Path(prefix)
    paths = [plot_parity(dataset, prefix.with_name(prefix.name + "_parity.png"))]
    if "n_heavy" in dataset.coords:
        name = prefix.name + "_learning_curve.png"
        paths.append(plot_learning_curve(dataset, prefix.with_name(name)))
    return [str(p) for p in paths]


def _save(figure: Any, plt: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
