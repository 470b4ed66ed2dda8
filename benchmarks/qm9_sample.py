"""QM9 molecules as (numbers, positions) pairs for the representation and kernel benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def _parse(elements: str, xyz: str) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.array([SYMBOLS[s] for s in ast.literal_eval(elements)], dtype=np.int64)
    # A few QM9 XYZ strings hold a bare "0." (not a Python literal before "]" or ",").
    fixed = xyz.replace("0.]", "0.0]").replace("0.,", "0.0,")
    positions = np.array(ast.literal_eval(fixed), dtype=np.float64)
    return numbers, positions


def qm9_table() -> pd.DataFrame:
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    frames = [
        pd.read_csv(directory / f"qm9_part{part}.csv", usecols=["Index", "Elements", "XYZ_Ang"])
        for part in (1, 2, 3)
    ]
    table = pd.concat(frames, ignore_index=True).sort_values("Index", ignore_index=True)
    table["n_heavy"] = table.Elements.map(lambda s: sum(e != "H" for e in ast.literal_eval(s)))
    return table


def qm9_molecules(
    n: int, *, max_heavy: int | None = None, seed: int | None = 0, table: pd.DataFrame | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` QM9 molecules (at most ``max_heavy`` heavy atoms): a random sample for ``seed``,
    else the first ``n`` by QM9 index."""
    table = qm9_table() if table is None else table
    if max_heavy is not None:
        table = table[table.n_heavy <= max_heavy]
    if len(table) < n:
        raise ValueError(f"only {len(table)} QM9 molecules with <= {max_heavy} heavy atoms")
    if seed is None:
        chosen = table.iloc[:n]
    else:
        chosen = table.sample(n=n, random_state=seed).sort_values("Index")
    return [_parse(e, x) for e, x in zip(chosen.Elements, chosen.XYZ_Ang, strict=True)]


def qm9_query_table(n: int | None, *, n_heavy: int = 9, seed: int = 0) -> pd.DataFrame:
    """A seeded random sample of ``n`` QM9 molecules with exactly ``n_heavy`` heavy atoms.

    Columns: Index (QM9's), SMILES (QM9's, from the relaxed geometry), Elements, XYZ_Ang,
    U0_hartree (InternalEnergy_0K_au), ZPVE_hartree; sorted by Index. ``n=None``: all of them.
    The same ``(n, n_heavy, seed)`` always gives the same molecules (pandas' seeded sample).
    """
    import qm9pack

    directory = Path(qm9pack.__file__).parent / "data"
    columns = ["Index", "SMILES", "Elements", "XYZ_Ang", "InternalEnergy_0K_au", "ZPVE_au"]
    table = pd.concat(
        [pd.read_csv(directory / f"qm9_part{p}.csv", usecols=columns) for p in (1, 2, 3)],
        ignore_index=True,
    ).sort_values("Index", ignore_index=True)
    table = table.rename(columns={"InternalEnergy_0K_au": "U0_hartree", "ZPVE_au": "ZPVE_hartree"})
    table["n_heavy"] = table.Elements.map(lambda s: sum(e != "H" for e in ast.literal_eval(s)))
    table = table[table.n_heavy == n_heavy]
    if n is not None:
        if len(table) < n:
            raise ValueError(f"only {len(table)} QM9 molecules with {n_heavy} heavy atoms")
        table = table.sample(n=n, random_state=seed)
    return table.sort_values("Index", ignore_index=True)


def write_query_extxyz(table: pd.DataFrame, path: str | Path) -> Path:
    """QM9 rows as an extended-XYZ query file (ids ``qm9_<Index>``, QM9's coordinates, Angstrom)."""
    path = Path(path)
    with open(path, "w") as handle:
        for index, elements, xyz in zip(table.Index, table.Elements, table.XYZ_Ang, strict=True):
            numbers, positions = _parse(elements, xyz)
            symbols = ast.literal_eval(elements)
            handle.write(f"{len(numbers)}\nid=qm9_{int(index):06d}\n")
            for symbol, (x, y, z) in zip(symbols, positions, strict=True):
                handle.write(f"{symbol} {x:.8f} {y:.8f} {z:.8f}\n")
    return path


def machine_record(workers: int | None, load_start: tuple[float, ...]) -> dict:
    """Where a benchmark ran: cores, workers, Python, load average at start and now."""
    import os
    import platform

    return {
        "cpus": os.cpu_count(),
        "workers": workers,
        "python": platform.python_version(),
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
    }


def run_and_evaluate(
    queries, path, labeler, *, max_heavy_atoms: int, client, quiet: bool, plots_prefix=None
) -> tuple[dict, dict[str, float]]:
    """``amondask.run`` (global protocol) on ``queries`` into workspace ``path``, then
    ``amondask.evaluate`` for the global and the per-query protocol, each printed. Returns the
    evaluations by protocol and the wall time of every stage (s). ``plots_prefix``: a path
    prefix for each protocol's PNGs (``<prefix>_<protocol>_...``), None for none."""
    import time

    import amondask
    from amondask.pipeline.evaluate import format_evaluation

    predictions = amondask.run(
        queries,
        str(path),
        max_heavy_atoms=max_heavy_atoms,
        labeler=labeler,
        protocol="global",
        client=client,
        progress=not quiet,
        echo=True,
    )
    stage_seconds = dict(predictions.attrs["stage_seconds"])
    evaluations = {}
    for protocol in ("global", "per-query"):
        clock = time.perf_counter()
        evaluations[protocol] = amondask.evaluate(
            str(path),
            labeler,
            protocol=protocol,
            client=client,
            progress=not quiet,
            plots=f"{plots_prefix}_{protocol}" if plots_prefix else None,
        )
        stage_seconds[f"evaluate {protocol}"] = time.perf_counter() - clock
        print(format_evaluation(evaluations[protocol]))
    return evaluations, stage_seconds


def number_text(value: float | None, digits: int = 2) -> str:
    """A table cell: the number with ``digits`` decimals, or ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def evaluation_record(
    evaluations: dict, stage_seconds: dict[str, float], started: float
) -> dict[str, Any]:
    """The MAE of each protocol's evaluation (kcal/mol, None when not finite), the stage times
    and the wall time since ``started`` (``time.perf_counter()``), for a benchmark's JSON."""
    import time

    maes = {}
    for protocol, evaluation in evaluations.items():
        value = float(evaluation.attrs["mae_kcal_mol"])
        maes[protocol] = value if np.isfinite(value) else None
    return {
        "mae_kcal_mol": maes,
        "stage_seconds": stage_seconds,
        "wall_seconds": time.perf_counter() - started,
    }


def write_result(out: Path, result: dict, markdown_text: str) -> None:
    """Write a benchmark's result as JSON to ``out`` and its table beside it (``.md``), and
    print the table."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown_text)
    print(markdown_text)


def run_with_settings(
    settings: dict[str, Any],
    load_queries: Any,
    path: Path,
    *,
    max_heavy_atoms: int,
    workers: int | None,
    quiet: bool,
    labeler_name: str = "xtb",
) -> tuple[Any, dict, dict[str, float]]:
    """:func:`run_and_evaluate` with the labeler ``labeler_name`` (its settings from
    ``settings``; GFN2-xTB by default) on a LocalCluster of ``workers``,
    all under the dask config ``settings`` (the queries are read by ``load_queries()`` inside
    it, as reading may depend on it, e.g. ``read.allow-fragments``). Returns (labeler,
    evaluations by protocol, stage seconds)."""
    import dask.config

    from amondask.cluster import get_client
    from amondask.label import get_labeler

    with dask.config.set(settings):
        molecules = load_queries()
        labeler = get_labeler(labeler_name)
        with get_client(None, n_workers=workers, quiet=True) as client:
            evaluations, stage_seconds = run_and_evaluate(
                molecules,
                path,
                labeler,
                max_heavy_atoms=max_heavy_atoms,
                client=client,
                quiet=quiet,
            )
    return labeler, evaluations, stage_seconds
